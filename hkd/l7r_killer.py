"""QVD's L7RKiller: ends a desktop connection served on this node when someone asks for it
(`user_cmd = 'abort'`: a takeover from another client, or `qvd-admin vm disconnect`):
SIGTERM to the connection's process, SIGKILL if it lingers, then the row is reset.

The pid comes from the database, so before any signal it is checked to still be the L7R
child that wrote it: its command line is the L7R's, and it started before the row was last
written (its start time, brought to the database's clock). A pid that now belongs to another
process (the L7R child died and the pid was reused) is not signalled; the stale row is reset
and the reason logged."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from qvd.db.runtime.vm_release import DISCONNECTED

from .backends.procfs import alive, start_time
from .database import DbUnavailable

log = logging.getLogger(__name__)

TERM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
CLOCK_SLACK = 2.0  # seconds: /proc/stat's btime is whole seconds, plus the query's own time
L7R_MARKS = ("qvd-l7r", "qvd.l7r")  # the script, `python -m qvd.l7r...`, or setproctitle's

TO_ABORT = """
SELECT vm_id, l7r_pid, extract(epoch FROM user_state_ts)::float8 AS written,
       extract(epoch FROM now())::float8 AS db_now
FROM vm_runtimes
WHERE l7r_host_id = %(host)s AND user_cmd = 'abort' {only}"""

RESET = f"""
UPDATE vm_runtimes SET {DISCONNECTED}
WHERE vm_id = %(vm)s AND l7r_host_id = %(host)s AND user_cmd = 'abort'"""


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def not_ours(pid: int, ticks: int | None, written: float, db_now: float) -> str | None:
    """Why `pid`, started at `ticks` (procfs.start_time), is not the L7R child that wrote the
    row at `written` (database clock, epoch seconds; db_now: the database's now() when the row
    was read), or None when it is."""
    if ticks is None:
        return "gone"
    cmdline = _cmdline(pid)
    if not any(mark in cmdline for mark in L7R_MARKS):
        return f"now another program ({cmdline[:80] or 'no command line'!r})"
    started = _boot_time() + ticks / os.sysconf("SC_CLK_TCK") + (db_now - time.time())
    if started > written + CLOCK_SLACK:
        return (f"a process started {started - written:.0f} s after the connection row was "
                "written (the pid was reused)")
    return None


async def _end(pid: int, started: int | None) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(pid, started):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(int(TERM_GRACE / 0.05)):
            if not alive(pid, started):
                return
            await asyncio.sleep(0.05)


async def abort_connections(db, host_id: int, vm_id: int | None = None) -> None:
    only = "AND vm_id = %(vm)s" if vm_id is not None else ""
    try:
        for row in await db.fetch(TO_ABORT.format(only=only), {"host": host_id, "vm": vm_id}):
            pid = row["l7r_pid"]
            ticks = start_time(pid) if pid else None  # read once: what is checked is signalled
            why = not_ours(pid, ticks, row["written"], row["db_now"]) if pid else "none stored"
            if why is None:
                await _end(pid, ticks)
                log.info("vm %d: connection of process %s ended on request", row["vm_id"], pid)
            elif why == "gone" or why == "none stored":
                log.info("vm %d: connection process %s already gone; row reset", row["vm_id"],
                         pid)
            else:
                log.warning("vm %d: stored l7r_pid %s is %s: not signalled, the stale "
                            "connection row is reset", row["vm_id"], pid, why)
            await db.fetch(RESET, {"vm": row["vm_id"], "host": host_id})
    except DbUnavailable as exc:
        log.warning("aborting connections postponed: %s", exc)
