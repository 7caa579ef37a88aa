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

import psycopg

from qvd.db.config import Config
from qvd.db.placement import CANDIDATES, placement_params
from qvd.db.runtime import pools as sql
from qvd.db.runtime.vm_commands import PLACE_AND_START, REQUEST_STOP, WITHDRAW_START
from qvd.db.vm_network import ADDRESS_LOCK, USED, AddressError, pick_free

from .database import Database, DbUnavailable
from .pool_plan import Plan, decide

log = logging.getLogger(__name__)

TENANT_CONFIG = "SELECT key, value FROM configs WHERE tenant_id = %(tenant)s"


class PoolKeeper:
    def __init__(self, node):
        self.node, self.cfg = node, node.cfg
        self.db = Database(node.db.params, f"qvd-hkd {node.name} pools", kind="pools")

    async def run(self) -> None:
        """Listen on qvd_pools; after each wake-up (or poll interval), one pass."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    **dict(self.db.params, application_name=f"qvd-hkd {self.node.name} "
                           "pool listener"), autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {sql.CHANNEL}")
                    while True:
                        await self.keep_all()
                        poll = self.cfg.get_float("pool.poll.interval")
                        async for _ in conn.notifies(timeout=poll, stop_after=1):
                            pass
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("pool listener: database connection lost (%s); reconnecting",
                            str(exc).strip().splitlines()[0] if str(exc) else "closed")
                await asyncio.sleep(1)

    async def keep_all(self) -> None:
        if not self.node.life.serving:
            return
        try:
            for row in await self.db.fetch("SELECT id FROM pools ORDER BY id"):
                await self.keep(row["id"])
        except DbUnavailable as exc:
            log.warning("pool keeping postponed: %s", exc)

    async def keep(self, pool_id: int) -> None:
        key = {"pool": pool_id}
        try:
            async with self.db.transaction():
                if not (await self.db.fetchone(sql.TRY_LOCK, key))["got"]:
                    return  # another node is at this pool right now
                pool = await self.db.fetchone(sql.POOL + " WHERE p.id = %(pool)s", key)
                if pool is None:
                    return
                vms = await self.db.fetch(sql.VMS, key)
                cfg = await self._settings(pool["tenant_id"])
                plan = decide(pool, vms, cfg.get_int("pool.max_preparing"),
                              cfg.get_float("pool.release_after"))
                reason = await self._carry_out(pool, plan, cfg) or plan.reason
                await self.db.fetch(sql.REASON, {"pool": pool_id, "reason": reason})
            if reason != pool["last_reason"]:
                log.info("pool %d '%s': %s", pool_id, pool["name"], reason)
        except psycopg.Error as exc:  # a refused write: the pass is undone, the reason kept
            if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                raise DbUnavailable(str(exc)) from None
            reason = f"pool keeping failed: {str(exc).strip().splitlines()[0]}"
            log.error("pool %d: %s", pool_id, reason)
            await self.db.fetch(sql.REASON, {"pool": pool_id, "reason": reason})

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
        for vm_id in plan.release:
            await self.db.fetch(sql.RELEASE, {"vm": vm_id})
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
