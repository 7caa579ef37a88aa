"""qvd-api beside the node for `make run`: started detached (its own session, its log in
path.log/api.log), found again through its pid file, stopped by `make stop`."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from qvd.hkd.pidfile import PidFile
from qvd.l7r.client import accepting


def _pid_file(cfg) -> PidFile:
    return PidFile(os.path.join(cfg.get("path.run"), "api.pid"))


def _host(cfg) -> str:
    address = cfg.get("api.address")
    return "127.0.0.1" if address in ("", "0.0.0.0", "::") else address


def start(cfg, wait: float = 20.0) -> tuple[int, bool]:
    """(pid, whether this call started it); RuntimeError with the reason if it cannot."""
    pids = _pid_file(cfg)
    pid = pids.running()
    if pid is not None:
        return pid, False
    log_path = os.path.join(cfg.get("path.log"), "api.log")
    os.makedirs(cfg.get("path.log"), exist_ok=True)
    with open(log_path, "ab") as log:
        child = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "qvd-api")],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
    pids.record(child.pid)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"qvd-api exited at once: {_last_line(log_path)}")
        if accepting(_host(cfg), cfg.get_int("api.port"), 0.2):
            return child.pid, True
        time.sleep(0.1)  # polling its port
    raise RuntimeError(f"qvd-api did not listen within {wait:g}s; see {log_path}")


def stop(cfg) -> bool:
    pids = _pid_file(cfg)
    running = pids.running() is not None
    pids.stop()
    return running


def _last_line(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    return lines[-1] if lines else f"see {path}"
