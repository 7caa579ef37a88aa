"""Helper processes of qvd-hkd that outlive it on purpose (watchdog, L7R acceptor) are found
again through a pid file holding their pid and start time (so a reused pid is not mistaken)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from .backends.procfs import alive, start_time


def terminate(pid: int, wait: float) -> None:
    """SIGTERM, up to `wait` seconds to exit, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def end_child(proc: subprocess.Popen, wait: float) -> None:
    """A child process of ours: SIGTERM, SIGKILL after `wait` seconds, then reaped."""
    if proc.poll() is None:
        terminate(proc.pid, wait)  # alive() takes our unreaped zombie for gone
    proc.wait()


class PidFile:
    def __init__(self, path: str):
        self.path = path

    def running(self) -> int | None:
        try:
            with open(self.path, encoding="ascii") as handle:
                pid, started = (int(x) for x in handle.read().split())
        except (FileNotFoundError, ValueError):
            return None
        return pid if alive(pid, started) else None

    def record(self, pid: int) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "w", encoding="ascii") as handle:
            handle.write(f"{pid} {start_time(pid)}\n")

    def stop(self, wait: float = 10.0) -> None:
        """SIGTERM the recorded process (SIGKILL if it lingers) and forget it."""
        pid = self.running()
        if pid is not None:
            terminate(pid, wait)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
