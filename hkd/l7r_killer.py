"""QVD's L7RKiller: ends a desktop connection served on this node when someone asks for it
(`user_cmd = 'abort'`: a takeover from another client, or `qvd-admin vm disconnect`):
SIGTERM to the connection's process, SIGKILL if it lingers, then the row is reset."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from .backends.procfs import alive
from .database import DbUnavailable

log = logging.getLogger(__name__)

TERM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL

TO_ABORT = """
SELECT vm_id, l7r_pid FROM vm_runtimes
WHERE l7r_host_id = %(host)s AND user_cmd = 'abort' {only}"""

RESET = """
UPDATE vm_runtimes SET user_state = 'disconnected', user_state_ts = now(), user_cmd = NULL,
       l7r_pid = NULL, l7r_host_id = NULL
WHERE vm_id = %(vm)s AND l7r_host_id = %(host)s AND user_cmd = 'abort'"""


async def _end(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(int(TERM_GRACE / 0.05)):
            if not alive(pid):
                return
            await asyncio.sleep(0.05)


async def abort_connections(db, host_id: int, vm_id: int | None = None) -> None:
    only = "AND vm_id = %(vm)s" if vm_id is not None else ""
    try:
        for row in await db.fetch(TO_ABORT.format(only=only), {"host": host_id, "vm": vm_id}):
            if row["l7r_pid"]:
                await _end(row["l7r_pid"])
            await db.fetch(RESET, {"vm": row["vm_id"], "host": host_id})
            log.info("vm %d: connection of process %s ended on request", row["vm_id"],
                     row["l7r_pid"])
    except DbUnavailable as exc:
        log.warning("aborting connections postponed: %s", exc)
