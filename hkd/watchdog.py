"""The node-local watchdog: kills this node's VMs when the lease was not renewed in time.

It is its own process, not a thread of qvd-hkd, so that a frozen or killed HKD cannot leave
VMs running that the cluster will start elsewhere (oVirt's sanlock/wdmd is the model). The
HKD touches the heartbeat file after every successful renewal; when the file is older than
hkd.lease.fence_timeout (on the monotonic clock) the watchdog kills every VM of the backend,
again until none is left, then waits for the heartbeat to come back. It talks to no
database.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from qvd.db import config as qconfig

from .backends import make_backend

log = logging.getLogger("qvd.hkd.watchdog")
CHECK_INTERVAL = 0.25
KILL_RETRY = 2.0  # seconds between kill rounds while VMs survive one


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


class Watchdog:
    """Ages the heartbeat on the monotonic clock: a touch is noticed as a change of the file's
    mtime (within CHECK_INTERVAL, which only makes the age look older: the safe side), so a
    wall-clock step never delays a fence nor causes one. Past the fence timeout it kills every
    VM, and again every KILL_RETRY until a round finds none left."""

    def __init__(self, heartbeat: str, fence_timeout: float, backend, clock=time.monotonic):
        self.heartbeat, self.fence_timeout, self.backend, self.clock = (
            heartbeat, fence_timeout, backend, clock)
        self.mtime = _mtime(heartbeat)
        # Before the first change is seen, trust the file's own age once (never younger
        # than zero); no file: already stale.
        age = max(0.0, time.time() - self.mtime) if self.mtime is not None else float("inf")
        self.seen = clock() - age
        self.fired = False      # the lease went stale and the VMs were killed
        self.next_round = 0.0   # when to kill again while some survived

    def age(self) -> float:
        now, mtime = self.clock(), _mtime(self.heartbeat)
        if mtime is not None and mtime != self.mtime:
            self.mtime, self.seen = mtime, now
        return now - self.seen

    def check(self) -> None:
        age = self.age()
        if age <= self.fence_timeout:
            if self.fired:
                log.info("heartbeat back; watching again")
            self.fired, self.next_round = False, 0.0
            return
        if self.clock() < self.next_round:
            return
        killed = self.backend.kill_all()
        if killed or not self.fired:
            log.warning("lease not renewed for %.1fs (limit %.1fs): killed VMs %s", age,
                        self.fence_timeout, killed or "none")
        self.fired = True
        # a round that killed something is followed by another, until one finds nothing
        self.next_round = self.clock() + KILL_RETRY if killed else float("inf")


def watch(heartbeat: str, fence_timeout: float, backend) -> None:
    dog = Watchdog(heartbeat, fence_timeout, backend)
    while True:
        dog.check()
        time.sleep(CHECK_INTERVAL)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="qvd-hkd-watchdog", description=__doc__.splitlines()[0])
    parser.add_argument("--heartbeat", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s qvd-hkd-watchdog %(levelname)s %(message)s")
    try:
        from setproctitle import setproctitle
        setproctitle(f"qvd-hkd-watchdog {os.path.basename(args.heartbeat)}")
    except ImportError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cfg = qconfig.load()
    watch(args.heartbeat, cfg.get_float("hkd.lease.fence_timeout"), make_backend(cfg))


if __name__ == "__main__":
    main()
