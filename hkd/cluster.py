"""The cluster monitor every node runs: declare nodes lost whose lease expired (exactly once,
whoever wins) and release what they held."""
from __future__ import annotations

import asyncio
import logging

from .database import DbUnavailable
from .host_store import declare_lost

log = logging.getLogger(__name__)


async def monitor(node) -> None:
    interval = node.cfg.get_float("hkd.lease.interval")
    timeout = node.cfg.get_float("hkd.cluster.node_timeout")
    while True:
        await asyncio.sleep(interval)
        if not node.life.serving:
            continue
        try:
            for name, vms, users in await declare_lost(node.monitor_db, node.host_id, node.name,
                                                       timeout):
                log.warning("node %s lost (no lease for %ss): released %d VM(s), "
                            "disconnected %d user(s)", name, timeout, vms, users)
        except DbUnavailable as exc:
            log.debug("cluster monitor: database unavailable: %s", exc)
