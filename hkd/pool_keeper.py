"""Pool keeping on every node: make, start, stop and delete pool VMs so that each pool has
its min, its spares up and never more than max (the rules: hkd/pool_plan.py).

Every node runs it; per pool, the node that gets the pool's lock (pg_try_advisory_xact_lock,
db/runtime/pools.py) acts and the others skip that pool, so exactly one node acts on a given
shortfall. A pass is one transaction per pool: the lock, the pool's VMs (locked against a
claim in flight), the decision, its writes and the reason administrators read in
`qvd-admin pool list`. Starts are placed like any VM's (db/placement.py), so spares spread
over the nodes. Woken by qvd_pools notifications (a pool changed, one of its VMs came, went,
was given out or changed state); pool.poll.interval is the safety net.
"""
from __future__ import annotations

import asyncio
import logging
import time

import psycopg

from qvd.db.config import Config
from qvd.db.placement import CANDIDATES, placement_params
from qvd.db.runtime import pools as sql
from qvd.db.runtime.vm_commands import PLACE_AND_START, REQUEST_STOP, WITHDRAW_START
from qvd.db.vm_network import ADDRESS_LOCK, USED, AddressError, pick_free

from .database import Database, DbUnavailable
from .pool_plan import Plan, decide

log = logging.getLogger(__name__)

RETRY = 0.25  # seconds before a pool skipped for another node's pass is looked at again
TENANT_CONFIG = "SELECT key, value FROM configs WHERE tenant_id = %(tenant)s"


class PoolKeeper:
    def __init__(self, node):
        self.node, self.cfg = node, node.cfg
        self.db = Database(node.db.params, f"qvd-hkd {node.name} pools", kind="pools")

    async def run(self) -> None:
        """Listen on qvd_pools; after each wake-up, a pass over the pool it names; every
        pool.poll.interval, over all (a config change, a throw-away VM's user who left long
        enough ago: neither notifies)."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    **dict(self.db.params, application_name=f"qvd-hkd {self.node.name} "
                           "pool listener"), autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {sql.CHANNEL}")
                    woken: set[int] | None = None  # None: every pool
                    while True:
                        if woken is None:
                            last_full = time.monotonic()
                        skipped = await self.keep_all(woken)
                        # the safety net: all of them each poll interval (read each time: a
                        # change of it counts from the last full pass)
                        due = last_full + self.cfg.get_float("pool.poll.interval")
                        # a pool another node was at: looked at again soon, in case the
                        # change that woke us came after that node read the pool
                        wait = RETRY if skipped else max(0.0, due - time.monotonic())
                        woken = set(skipped)
                        async for note in conn.notifies(timeout=wait, stop_after=1):
                            woken.add(int(note.payload))
                        if not woken or time.monotonic() >= due:
                            woken = None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("pool listener: database connection lost (%s); reconnecting",
                            str(exc).strip().splitlines()[0] if str(exc) else "closed")
                await asyncio.sleep(1)

    async def keep_all(self, only: set[int] | None = None) -> set[int]:
        """A pass over the pools a notification named (the others did not change), or all;
        the pools skipped because another node held their lock."""
        skipped: set[int] = set()
        if not self.node.life.serving:
            return skipped
        try:
            for row in await self.db.fetch("SELECT id FROM pools ORDER BY id"):
                if (only is None or row["id"] in only) and not await self.keep(row["id"]):
                    skipped.add(row["id"])
        except DbUnavailable as exc:
            log.warning("pool keeping postponed: %s", exc)
        return skipped

    async def keep(self, pool_id: int) -> bool:
        """One pool's pass; False when another node holds its lock."""
        key = {"pool": pool_id}
        try:
            async with self.db.transaction():
                if not (await self.db.fetchone(sql.TRY_LOCK, key))["got"]:
                    return False  # another node is at this pool right now
                pool = await self.db.fetchone(sql.POOL + " WHERE p.id = %(pool)s", key)
                if pool is None:
                    return True
                vms = await self.db.fetch(sql.VMS, key)
                cfg = await self._settings(pool["tenant_id"])
                plan = decide(pool, vms, cfg.get_int("pool.max_preparing"),
                              cfg.get_float("pool.release_after"))
                reason = await self._carry_out(pool, plan, cfg) or plan.reason
                await self.db.fetch(sql.REASON, {"pool": pool_id, "reason": reason})
            if reason != pool["last_reason"]:
                log.info("pool %d '%s': %s", pool_id, pool["name"], reason)
            return True
        except psycopg.Error as exc:  # a refused write: the pass is undone, the reason kept
            if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                raise DbUnavailable(str(exc)) from None
            reason = f"pool keeping failed: {str(exc).strip().splitlines()[0]}"
            log.error("pool %d: %s", pool_id, reason)
            await self.db.fetch(sql.REASON, {"pool": pool_id, "reason": reason})
            return True

    async def _settings(self, tenant_id: int) -> Config:
        rows = await self.db.fetch(TENANT_CONFIG, {"tenant": tenant_id})
        return Config(node=self.cfg.node, db_global=self.cfg.db_global,
                      db_tenant={row["key"]: row["value"] for row in rows})

    async def _carry_out(self, pool: dict, plan: Plan, cfg: Config) -> str | None:
        """The plan's writes; a reason of its own when part of it could not be done."""
        for vm_id in plan.stop:
            if await self.db.fetchone(WITHDRAW_START, {"vm": vm_id}) is None:
                await self.db.fetch(REQUEST_STOP, {"vm": vm_id})
        for vm_id in plan.delete:
            await self.db.fetch(sql.DELETE_SPARE, {"vm": vm_id})
        after = cfg.get_float("pool.release_after")
        for vm_id in plan.stop_left:
            await self.db.fetch(sql.STOP_LEFT, {"vm": vm_id, "after": after})
        for vm_id in plan.release:
            await self.db.fetch(sql.RELEASE, {"vm": vm_id, "after": after})
        try:
            made = await self._make(pool["id"], plan.create, cfg)
        except AddressError as exc:
            return f"no VM made: {exc} ({plan.reason})"
        for vm_id in plan.start + made[:plan.start_new]:
            host = await self.db.fetchone(CANDIDATES, placement_params(cfg, pool["memory"]))
            if host is None:
                return f"spares not started: no running node has room for " \
                       f"{pool['memory']} MiB ({plan.reason})"
            await self.db.fetch(PLACE_AND_START, {"vm": vm_id, "host": host["id"]})
        return None

    async def _make(self, pool_id: int, count: int, cfg: Config) -> list[int]:
        if not count:
            return []
        await self.db.fetch(ADDRESS_LOCK)
        addresses = pick_free(await self.db.fetch(USED), cfg.get("vm.network.ip.start"),
                              cfg.get("vm.network.netmask"), count)
        made = []
        for address in addresses:
            number = await self.db.fetchone(sql.NEXT_NUMBER, {"pool": pool_id})
            name = sql.vm_name(number["vm_names"], number["name"], number["n"])
            vm = await self.db.fetchone(sql.NEW_VM, {"name": name, "user": None,
                                                     "pool": pool_id, "ip": address})
            for statement in sql.NEW_VM_ROWS:
                await self.db.fetch(statement, {"vm": vm["id"]})
            made.append(vm["id"])
        return made
