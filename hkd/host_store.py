"""The SQL of the node's own row: its lease (epoch-guarded), its state and its commands."""
from __future__ import annotations

from qvd.db.runtime.vm_release import DISCONNECTED, RELEASE_NODE
from qvd.db.vm_network import ADDRESS_HOLDERS

from .database import Database

FIND = "SELECT id FROM hosts WHERE name = %(name)s"

BEGIN_LEASE = """
UPDATE host_runtimes SET state = 'starting', pid = %(pid)s, ok_ts = now(), cmd = NULL,
       usable_ram = %(ram)s, usable_cpu = %(cpu)s, last_error = NULL
WHERE host_id = %(host)s RETURNING epoch"""

RENEW = """
UPDATE host_runtimes SET ok_ts = now() WHERE host_id = %(host)s AND epoch = %(epoch)s
RETURNING host_id"""

SET_STATE = """
UPDATE host_runtimes SET state = %(state)s WHERE host_id = %(host)s AND epoch = %(epoch)s
RETURNING host_id"""

STOPPED = """
UPDATE host_runtimes SET state = 'stopped', pid = NULL, cmd = NULL
WHERE host_id = %(host)s AND epoch = %(epoch)s"""

COMMAND = "SELECT cmd FROM host_runtimes WHERE host_id = %(host)s"

VM_ADDRESS = "SELECT host(vm_address) AS vm_address FROM hosts WHERE id = %(host)s"

# Why the node refused to start, before it has a lease (the lock keeps any other qvd-hkd of
# this node away, so no epoch guards this one).
REFUSED = """
UPDATE host_runtimes SET last_error = %(error)s, last_error_at = now()
WHERE host_id = %(host)s"""

NOTE_ERROR = """
UPDATE host_runtimes SET last_error = %(error)s, last_error_at = now()
WHERE host_id = %(host)s AND epoch = %(epoch)s"""

# Only the error this node noted itself, when its cause is gone (the L7R listens again).
CLEAR_ERROR = """
UPDATE host_runtimes SET last_error = NULL, last_error_at = now()
WHERE host_id = %(host)s AND epoch = %(epoch)s AND last_error = %(error)s"""

# The cluster monitor: whoever's UPDATE matches first declares the node lost (once), bumps
# its epoch so that the node learns it was fenced, and releases what it held.
# The window: the node's lease must have gone unrenewed for `timeout` seconds *that this
# monitor watched on one connection*: from its renewal or from this connection's start,
# whichever is later. A database restart, a promotion or a reconnect gives every monitor a new
# connection, so an outage never counts against anyone's lease (README: "Fencing").
DECLARE_LOST = """
UPDATE host_runtimes r SET state = 'lost', epoch = epoch + 1, last_error_at = now(),
       last_error = 'lost: no lease renewal for ' || %(timeout)s || 's (seen by ' || %(me_name)s || ')'
FROM hosts h
WHERE h.id = r.host_id AND r.host_id <> %(me)s AND r.state IN ('starting', 'running', 'stopping')
  AND greatest(r.ok_ts, (SELECT backend_start FROM pg_stat_activity
                         WHERE pid = pg_backend_pid()))
      < now() - make_interval(secs => %(timeout)s)
RETURNING r.host_id, h.name"""

RELEASE_VMS = f"""
UPDATE vm_runtimes SET vm_state = 'stopped', vm_state_ts = now(), {RELEASE_NODE},
       last_error = 'released: node ' || %(name)s || ' was lost', last_error_at = now()
WHERE host_id = %(host)s RETURNING vm_id"""

DISCONNECT_USERS = f"""
UPDATE vm_runtimes SET {DISCONNECTED}
WHERE l7r_host_id = %(host)s RETURNING vm_id"""

END_SESSIONS = """
UPDATE sessions SET ended_at = now(), end_reason = 'node ' || %(name)s || ' lost'
WHERE host_id = %(host)s AND ended_at IS NULL"""


class HostStore:
    def __init__(self, db: Database, host_id: int, epoch: int = 0):
        self.db = db
        self.host_id = host_id
        self.epoch = epoch

    @staticmethod
    async def find(db: Database, name: str) -> int | None:
        row = await db.fetchone(FIND, {"name": name})
        return row["id"] if row else None

    async def begin_lease(self, pid: int, ram: int, cpu: float) -> int:
        row = await self.db.fetchone(BEGIN_LEASE, {"host": self.host_id, "pid": pid, "ram": ram,
                                                   "cpu": cpu})
        self.epoch = row["epoch"]
        return self.epoch

    async def renew(self) -> bool:
        """False when the epoch moved: another node declared this one lost."""
        return await self.db.fetchone(RENEW, {"host": self.host_id, "epoch": self.epoch}) \
            is not None

    async def set_state(self, state: str) -> bool:
        return await self.db.fetchone(SET_STATE, {"host": self.host_id, "epoch": self.epoch,
                                                  "state": state}) is not None

    async def note_error(self, error: str) -> None:
        await self.db.fetch(NOTE_ERROR, {"host": self.host_id, "epoch": self.epoch,
                                         "error": error})

    async def clear_error(self, error: str) -> None:
        await self.db.fetch(CLEAR_ERROR, {"host": self.host_id, "epoch": self.epoch,
                                          "error": error})

    async def vm_address(self) -> str | None:
        row = await self.db.fetchone(VM_ADDRESS, {"host": self.host_id})
        return row["vm_address"] if row else None

    async def address_holders(self, address: str) -> list[str]:
        rows = await self.db.fetch(ADDRESS_HOLDERS, {"host": self.host_id, "address": address})
        return [f"{row['kind']} {row['name']}" for row in rows]

    async def refused(self, error: str) -> None:
        await self.db.fetch(REFUSED, {"host": self.host_id, "error": error})

    async def stopped(self) -> None:
        await self.db.fetch(STOPPED, {"host": self.host_id, "epoch": self.epoch})

    async def command(self) -> str | None:
        row = await self.db.fetchone(COMMAND, {"host": self.host_id})
        return row["cmd"] if row else None


async def declare_lost(db: Database, me: int, me_name: str, timeout: float) -> list[tuple]:
    """One transaction: [(host name, VMs released, users disconnected)] for each lost node."""
    found = []
    async with db.transaction():
        for host in await db.fetch(DECLARE_LOST, {"me": me, "me_name": me_name,
                                                  "timeout": timeout}):
            params = {"host": host["host_id"], "name": host["name"]}
            vms = await db.fetch(RELEASE_VMS, params)
            users = await db.fetch(DISCONNECT_USERS, params)
            await db.fetch(END_SESSIONS, params)
            found.append((host["name"], len(vms), len(users)))
    return found
