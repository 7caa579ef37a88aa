"""The node's own life as data: (state, event) -> next state, like the VM machine.

  state      what the node does                                   leaves with
  starting   takes its lease, adopts what runs here               joined | stop
  running    serves: VMs, commands, its L7R                       db_lost | fence | stop
  db-lost    its lease cannot be renewed: keeps its VMs, takes    db_back | fence | stop
             no new work (the database is needed for any)
  fencing    kills every VM here (fence timeout, or declared      fenced | stop
             lost by another node)
  fenced     no VM; waits for the database                        rejoin | stop
  rejoining  a new lease, adoption of what is left                joined | rejoin_failed | stop
  stopping   stops its VMs and leaves                             stopped
  stopped    -

The host row shows what the database can be told: starting, running and stopping (db-lost,
fencing and fenced happen while it cannot be reached); the reason of a fence is written to
the row's last_error when the node rejoins.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

TRANSITIONS: dict[tuple[str, str], str] = {
    ("starting", "joined"): "running",
    ("starting", "stop"): "stopping",
    ("running", "db_lost"): "db-lost",
    ("running", "fence"): "fencing",
    ("running", "stop"): "stopping",
    ("db-lost", "db_back"): "running",
    ("db-lost", "fence"): "fencing",
    ("db-lost", "stop"): "stopping",
    ("fencing", "fenced"): "fenced",
    ("fencing", "stop"): "stopping",
    ("fenced", "rejoin"): "rejoining",
    ("fenced", "stop"): "stopping",
    ("rejoining", "joined"): "running",
    ("rejoining", "rejoin_failed"): "fenced",
    ("rejoining", "stop"): "stopping",
    ("stopping", "stopped"): "stopped",
}

# What the host row may say for each state (None: the database is out of reach then).
ROW_STATE: dict[str, str | None] = {
    "starting": "starting", "running": "running", "db-lost": None, "fencing": None,
    "fenced": None, "rejoining": "starting", "stopping": "stopping", "stopped": "stopped",
}


class BadTransition(Exception):
    pass


class NodeLife:
    def __init__(self, name: str):
        self.name = name
        self.state = "starting"
        self.reason: str | None = None  # why the node is in this state, when it says

    def can(self, event: str) -> bool:
        return (self.state, event) in TRANSITIONS

    def fire(self, event: str, reason: str | None = None) -> str:
        try:
            new = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise BadTransition(f"node {self.name}: no '{event}' from {self.state}") from None
        if new != self.state:
            log.info("node %s: %s -> %s (%s)%s", self.name, self.state, new, event,
                     f": {reason}" if reason else "")
        self.state, self.reason = new, reason
        return new

    @property
    def serving(self) -> bool:
        """Takes new work: VM starts, the L7R."""
        return self.state == "running"

    @property
    def fenced(self) -> bool:
        """Has killed (or is killing) its VMs and holds none until it rejoins."""
        return self.state in ("fencing", "fenced", "rejoining")
