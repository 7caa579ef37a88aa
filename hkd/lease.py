"""Keeping the node's lease: renew every hkd.lease.interval with the DB clock, epoch-guarded.

A failed renewal -> db-lost (the node keeps its VMs); failing for hkd.lease.fence_timeout
(local monotonic clock) -> the node fences itself. Renewal matching no row -> another node
declared this one lost: fence, then rejoin. After each success the heartbeat file is touched
for the watchdog. The node's states are in node_life.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from . import metrics
from .database import DbUnavailable

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, node, heartbeat: str):
        self.node = node
        self.heartbeat = heartbeat
        self.last_renewed = time.monotonic()

    def touch(self) -> None:
        os.makedirs(os.path.dirname(self.heartbeat), exist_ok=True)
        with open(self.heartbeat, "a", encoding="ascii"):
            os.utime(self.heartbeat)
        self.last_renewed = time.monotonic()

    async def _renew(self, limit: float) -> bool:
        """The renewal, given up after `limit` seconds: a black-holed database (no answer, no
        error) must not hold the lease loop past the fence."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
        # that arrives as the renewal completes, and the node's stop would wait forever.
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit):
                renewed = await self.node.hosts.renew()
        except TimeoutError:
            metrics.LEASE_RENEWAL_FAILURES.inc()
            await self.node.db.close()  # hung: the next statement connects again
            raise DbUnavailable(f"no answer within {limit:.1f}s") from None
        except DbUnavailable:
            metrics.LEASE_RENEWAL_FAILURES.inc()
            raise
        metrics.LEASE_RENEWAL_SECONDS.observe(time.perf_counter() - started)
        return renewed

    @contextlib.asynccontextmanager
    async def renewed_meanwhile(self):
        """Keep renewing while a long step runs outside the lease loop (adopting hundreds of
        VMs at start or on rejoin must not let the lease age). Failures are left to the
        loop, which judges them when the step is over."""
        async def renew() -> None:
            interval = self.node.cfg.get_float("hkd.lease.interval")
            while True:
                await asyncio.sleep(interval)
                try:
                    if await self._renew(max(interval, 1.0)):
                        self.touch()
                except DbUnavailable:
                    pass
        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        cfg, node, life = self.node.cfg, self.node, self.node.life
        interval, fence_timeout = (cfg.get_float("hkd.lease.interval"),
                                   cfg.get_float("hkd.lease.fence_timeout"))
        while True:
            await asyncio.sleep(interval)
            try:
                left = fence_timeout - (time.monotonic() - self.last_renewed)
                renewed = await self._renew(max(left, 0.5))
            except DbUnavailable as exc:
                silent = time.monotonic() - self.last_renewed
                if life.can("db_lost"):
                    life.fire("db_lost", f"the lease could not be renewed: {exc}")
                    node.update_title()
                if silent > fence_timeout and life.can("fence"):
                    metrics.FENCES.labels("lease_timeout").inc()
                    await node.fence(f"could not renew the lease for {silent:.0f}s: {exc}")
                continue
            if renewed:
                self.touch()
                if life.state == "db-lost":
                    life.fire("db_back")
                elif life.state == "fenced":
                    await node.rejoin("the node had fenced itself (database unreachable)")
            else:
                if life.can("fence"):
                    metrics.FENCES.labels("declared_lost").inc()
                    await node.fence("another node declared this one lost")
                if life.state == "fenced":
                    await node.rejoin("this node was declared lost by the cluster")
            node.update_title()
