"""Starting and stopping qvd-hkd in the background (used by `qvd-admin system`)."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

from .pidfile import terminate


def _lock_path(cfg) -> str:
    return os.path.join(cfg.get("path.run"), f"hkd-{cfg.get('nodename')}.lock")


def running_pid(cfg) -> int | None:
    """The pid of the qvd-hkd holding this node's lock, or None."""
    path = _lock_path(cfg)
    try:
        handle = open(path, "r+", encoding="ascii")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            content = handle.read().strip()
            return int(content) if content.isdigit() else None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def start(cfg, wait: float = 20.0) -> int:
    """Start qvd-hkd detached (its own session, logs in path.log); wait until it holds the lock."""
    log_dir = cfg.get("path.log")
    os.makedirs(log_dir, exist_ok=True)
    hkd = os.path.join(os.path.dirname(sys.executable), "qvd-hkd")
    with open(os.path.join(log_dir, "hkd.log"), "ab") as log:
        child = subprocess.Popen([hkd], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"qvd-hkd exited at once (status {child.returncode}); "
                               f"see {os.path.join(log_dir, 'hkd.log')}")
        if running_pid(cfg) == child.pid:
            return child.pid
        time.sleep(0.1)
    raise RuntimeError(f"qvd-hkd did not come up within {wait:g}s")


def stop(cfg, wait: float = 90.0) -> int | None:
    """SIGTERM the node's qvd-hkd (it stops its VMs first) and wait for it to exit."""
    pid = running_pid(cfg)
    if pid is None:
        return None
    terminate(pid, wait)
    return pid
