"""Pool desktops in the L7R (issue 17): a user entitled to a pool sees it in list_of_vm (and
the portal) as one desktop until they hold one of its VMs, which is then listed as their own.

Ids: a pool's entry is the pool's id negated (VM ids are positive serials, so the two never
collide, and a QVD client, which only echoes the id back in connect_to_vm?id=, needs no
change). Connecting to -P hands a VM of pool P out: the user's own VM of the pool if they
have one (persistent assignments stay theirs, on any node), else a spare claimed atomically
(UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED), so two users never get one VM),
else a new VM under the pool's lock when the pool is below max, else 503 "the pool is full".
Starting a pool VM waits its turn under pool.max_preparing (start_in_turn).
"""
from __future__ import annotations

import logging
import time

import psycopg.errors

from qvd.db.runtime import pools as sql
from qvd.db.runtime import vm_commands
from qvd.db.vm_network import AddressError, free_addresses

from .http import HttpError

log = logging.getLogger(__name__)

# The pools shown as one desktop each: the user may use them, they are desktops (not
# applications), and the user holds none of their VMs yet (that VM is listed instead).
ENTRY_POOLS = """
FROM pools p JOIN osfs o ON o.id = p.osf_id
WHERE p.id IN (""" + sql.ENTITLED_POOLS + """) AND NOT o.is_application
  AND NOT EXISTS (SELECT 1 FROM vms v WHERE v.pool_id = p.id AND v.user_id = %(user)s)"""
# The entries list_of_vm adds (the columns of its VM rows).
ENTRIES = "SELECT -p.id AS id, p.name, 'stopped' AS state, p.blocked::int AS blocked" + \
    ENTRY_POOLS

ENTITLED = """
SELECT p.id, p.name, p.tenant_id, p.max, p.blocked FROM pools p
WHERE p.id = %(pool)s AND p.id IN (""" + sql.ENTITLED_POOLS + ")"
ASSIGNED = "SELECT id FROM vms WHERE pool_id = %(pool)s AND user_id = %(user)s"

# A running spare first, then one on its way, then a stopped one; none asked to stop.
CLAIM = """
UPDATE vms SET user_id = %(user)s WHERE id = (
    SELECT v.id FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id
    WHERE v.pool_id = %(pool)s AND v.user_id IS NULL AND NOT r.blocked
      AND r.vm_cmd IS DISTINCT FROM 'stop' AND r.vm_state IN ('running', 'starting', 'stopped')
    ORDER BY r.vm_state = 'running' DESC, r.vm_state = 'starting' OR r.vm_cmd = 'start' DESC,
             v.id
    LIMIT 1 FOR UPDATE OF v SKIP LOCKED)
RETURNING id"""
COUNT = "SELECT count(*) AS n FROM vms WHERE pool_id = %(pool)s"
PREPARING = """
SELECT count(*) AS n FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id
WHERE v.pool_id = %(pool)s AND (r.vm_state = 'starting' OR r.vm_cmd = 'start')"""


def assigned(session, user, pool_id: int) -> int:
    """The user's VM of the pool, without handing one out (stop_vm): else not found."""
    row = session.db.fetchone(ASSIGNED, {"pool": pool_id, "user": user.user_id})
    if row is None:
        raise HttpError(404, "Virtual machine not found\n")
    return row["id"]


def page_id(session, user, pool_id: int) -> int:
    """What the portal's desktop page for the pool's entry opens, handing nothing out (a GET
    must not: a prefetch or a reload would take a VM): the user's VM of the pool, else the
    entry itself, whose tunnel hands one out when the desktop opens."""
    key = {"pool": pool_id, "user": user.user_id}
    if (mine := session.db.fetchone(ASSIGNED, key)) is not None:
        return mine["id"]
    if session.db.fetchone(ENTITLED, key) is None:
        raise HttpError(404, "Virtual machine not found\n")
    return -pool_id


def hand_out(session, user, pool_id: int) -> int:
    """The id of the VM of pool_id that is now the user's; HttpError when there is none."""
    db, key = session.db, {"pool": pool_id, "user": user.user_id}
    for attempt in range(3):
        try:
            with db.conn.transaction():
                pool = db.fetchone(ENTITLED, key)
                if pool is None:  # not entitled: no different from a VM of somebody else
                    raise HttpError(404, "Virtual machine not found\n")
                if (mine := db.fetchone(ASSIGNED, key)) is not None:
                    return mine["id"]
                if pool["blocked"]:
                    raise HttpError(403, "The requested virtual machine is offline for "
                                         "maintenance\n")
                if (claimed := _claim(db, key)) is not None:
                    return claimed
                # The count and the new VM: one decision at a time. A keeper's pass held the
                # spares' rows (the claim skipped them): once it is done, claim again.
                db.execute(sql.LOCK, key)
                if (claimed := _claim(db, key)) is not None:
                    return claimed
                if db.fetchone(COUNT, key)["n"] < pool["max"]:
                    return _new_vm(session, pool, user.user_id)
        except psycopg.errors.UniqueViolation as exc:
            # the same user connecting twice at once (one VM per user and pool), or an
            # address taken meanwhile: the next attempt finds what the other one made
            log.info("pool %d, user %d: %s; retrying", pool_id, user.user_id,
                     exc.diag.message_primary)
            continue
        reason = f"full at {time.strftime('%H:%M:%S')}: user {user.login}@{user.tenant} " \
                 f"got no desktop (max {pool['max']}, no spare left)"
        db.execute(sql.REASON, {"pool": pool_id, "reason": reason})
        log.info("pool %d: %s", pool_id, reason)
        raise HttpError(503, f"The requested virtual machine is not available: the pool "
                             f"'{pool['name']}' is full, retry later.\n")
    raise HttpError(503, "The requested virtual machine is not available: the pool is busy, "
                         "retry later.\n")


class _LostRace(Exception):
    """The claim found no spare: its savepoint is rolled back."""


def _claim(db, key: dict) -> int | None:
    # In a savepoint: a claim whose spare another user took while it looked returns nothing
    # but keeps that row locked, and waiting for the pool's lock with it would deadlock with
    # a keeper's pass (which holds the lock and waits for the pool's rows).
    try:
        with db.conn.transaction():
            claimed = db.fetchone(CLAIM, key)
            if claimed is None:
                raise _LostRace
    except _LostRace:
        return None
    db.execute(sql.TAKEN, {"vm": claimed["id"]})
    log.info("pool %d: vm %d given to user %d (a spare)", key["pool"], claimed["id"],
             key["user"])
    return claimed["id"]


def _new_vm(session, pool: dict, user_id: int) -> int:
    db = session.db
    cfg = db.with_tenant(session.cfg, pool["tenant_id"])
    try:
        (ip,) = free_addresses(db, cfg.get("vm.network.ip.start"),
                               cfg.get("vm.network.netmask"), 1)
    except AddressError as exc:
        raise HttpError(503, f"The requested virtual machine is not available: {exc}, "
                             "retry later.\n") from None
    number = db.fetchone(sql.NEXT_NUMBER, {"pool": pool["id"]})
    vm_id = db.fetchone(sql.NEW_VM, {"name": sql.vm_name(number["vm_names"], number["name"],
                                                         number["n"]),
                                     "user": user_id, "pool": pool["id"], "ip": ip})["id"]
    for statement in sql.NEW_VM_ROWS:
        db.execute(statement, {"vm": vm_id})
    log.info("pool %d: vm %d made for user %d", pool["id"], vm_id, user_id)
    return vm_id


def start_in_turn(connect, vm: dict) -> vm_commands.Start | None:
    """Place and start a pool VM once fewer than pool.max_preparing of the pool's VMs are
    starting (counted and started under the pool's lock, so the limit holds across nodes);
    None when its turn did not come within the VM start timeout."""
    db, cfg, key = connect.db, connect.cfg, {"pool": vm["pool_id"]}
    limit = cfg.get_int("pool.max_preparing")
    deadline = time.monotonic() + cfg.get_float("internal.l7r.timeout.vm_start")
    db.execute(f"LISTEN {sql.CHANNEL}")  # a start's end wakes us
    try:
        told = False
        while True:
            with db.conn.transaction():
                db.execute(sql.LOCK, key)
                if db.fetchone(PREPARING, key)["n"] < limit:
                    return vm_commands.place_and_start(db, cfg, vm["id"], vm["memory"])
            if not told:
                connect.progress("Waiting for other desktops of the pool to start")
                told = True
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for _ in db.conn.notifies(timeout=left, stop_after=1):
                pass
    finally:
        db.execute(f"UNLISTEN {sql.CHANNEL}")


# The same entries in the portal's desktop list (l7r/portal/pages.py's columns).
PORTAL_ENTRIES = """
SELECT -p.id AS id, p.name, 'stopped' AS state, p.blocked, 'disconnected' AS user_state,
       NULL::float8 AS expiration_soft, NULL::float8 AS expiration_hard""" + ENTRY_POOLS
