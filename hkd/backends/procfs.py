"""Small /proc helpers shared by the backends and the watchdog."""
from __future__ import annotations

import os
import signal


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a PID apart from a reused one), or None
    when the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(pid: int, started: int | None = None) -> bool:
    ticks = start_time(pid)
    return ticks is not None and (started is None or ticks == started)


def signal_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group the VM's main process leads (it was started in its own
    session), falling back to the process alone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
