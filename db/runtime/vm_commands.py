"""Commands for a VM's node (vm_cmd) and for its user's connection (user_cmd); the triggers
NOTIFY whoever acts on them. Each write is conditional on the state it was decided on: when it
matches nothing, somebody moved first."""
from __future__ import annotations

from enum import Enum

from qvd.db.config import Config
from qvd.db.placement import CANDIDATES, placement_params
from qvd.db.states import VM_STOPPABLE

# Assign the node and ask it to start in one step: never one without the other.
PLACE_AND_START = """
UPDATE vm_runtimes SET host_id = %(host)s, vm_cmd = 'start', last_error = NULL,
       last_error_at = NULL
WHERE vm_id = %(vm)s AND vm_state = 'stopped' AND vm_cmd IS NULL AND NOT blocked
RETURNING vm_id"""

# Not claimed by its node yet: withdraw the request and the placement.
WITHDRAW_START = """
UPDATE vm_runtimes SET vm_cmd = NULL, host_id = NULL
WHERE vm_id = %(vm)s AND vm_state = 'stopped' AND vm_cmd = 'start' RETURNING vm_id"""

REQUEST_STOP = f"""
UPDATE vm_runtimes SET vm_cmd = 'stop'
WHERE vm_id = %(vm)s AND vm_state IN ({", ".join(f"'{s}'" for s in VM_STOPPABLE)})
RETURNING vm_id"""

# The connection's L7R (on whichever node) ends it; its end marks the user disconnected.
REQUEST_DISCONNECT = """
UPDATE vm_runtimes SET user_cmd = 'abort'
WHERE vm_id = %(vm)s AND user_state <> 'disconnected' AND user_cmd IS NULL RETURNING vm_id"""


class Start(Enum):
    SENT = "sent"
    NO_ROOM = "no running node has room for it"
    CHANGED = "it changed state meanwhile"


def place_and_start(db, cfg: Config, vm_id: int, memory: int) -> Start:
    """Choose the node (db/placement.py) and ask it to start the VM."""
    host = db.fetchone(CANDIDATES, placement_params(cfg, memory))
    if host is None:
        return Start.NO_ROOM
    if db.fetchone(PLACE_AND_START, {"vm": vm_id, "host": host["id"]}) is None:
        return Start.CHANGED
    return Start.SENT


def stop(db, vm_id: int) -> bool:
    """Withdraw a start its node has not claimed, or ask the node to stop the VM; False when
    the VM was in neither state."""
    return (db.fetchone(WITHDRAW_START, {"vm": vm_id}) is not None
            or db.fetchone(REQUEST_STOP, {"vm": vm_id}) is not None)


def disconnect(db, vm_id: int) -> bool:
    """Ask the connection to end; False when nobody is connected or an end is asked already."""
    return db.fetchone(REQUEST_DISCONNECT, {"vm": vm_id}) is not None
