"""Keeping the node's lease: renew every hkd.lease.interval with the DB clock, epoch-guarded.

Renewal failing for hkd.lease.fence_timeout (local monotonic clock) -> the node fences itself.
Renewal matching no row -> another node declared this one lost: fence, then rejoin.
After each success the heartbeat file is touched for the watchdog.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

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

    async def run(self) -> None:
        cfg, node = self.node.cfg, self.node
        interval, fence_timeout = (cfg.get_float("hkd.lease.interval"),
                                   cfg.get_float("hkd.lease.fence_timeout"))
        while True:
            await asyncio.sleep(interval)
            try:
                renewed = await node.hosts.renew()
            except DbUnavailable as exc:
                silent = time.monotonic() - self.last_renewed
                if silent > fence_timeout and not node.fenced:
                    await node.fence(f"could not renew the lease for {silent:.0f}s: {exc}")
                continue
            if renewed:
                self.touch()
                if node.fenced:
                    await node.rejoin("the node had fenced itself (database unreachable)")
            else:
                if not node.fenced:
                    await node.fence("another node declared this one lost")
                await node.rejoin("this node was declared lost by the cluster")
            node.update_title()
