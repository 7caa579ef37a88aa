"""The node's background loops (lease, cluster monitor, command listener, liveness sync,
helpers) run supervised: one that raises is logged, noted on the host row, and restarted after
a back-off (1 s doubling to 30 s, back to 1 s once it ran a minute), so none dies silently
while the node keeps its lease."""
from __future__ import annotations

import asyncio
import logging
import time

from .database import DbUnavailable

log = logging.getLogger(__name__)

FIRST_DELAY, MAX_DELAY, HEALTHY_AFTER = 1.0, 30.0, 60.0


async def supervised(node, name: str, loop) -> None:
    """Run `loop()` (a coroutine function that should never return) for the node's life."""
    delay = FIRST_DELAY
    while True:
        started = time.monotonic()
        try:
            await loop()
            why = "returned"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the point: nothing may end a loop for good
            log.exception("node %s: the %s loop crashed", node.name, name)
            why = f"crashed ({type(exc).__name__}: {exc})"
        if time.monotonic() - started > HEALTHY_AFTER:
            delay = FIRST_DELAY
        try:
            await node.hosts.note_error(f"the {name} loop {why}; restarted in {delay:.0f}s")
        except DbUnavailable:
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
