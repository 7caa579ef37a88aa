"""The node-local watchdog: kills this node's VMs when the lease was not renewed in time.

It is its own process, not a thread of qvd-hkd, so that a frozen or killed HKD cannot leave
VMs running that the cluster will start elsewhere (oVirt's sanlock/wdmd is the model). The
HKD touches the heartbeat file after every successful renewal; when the file is older than
hkd.lease.fence_timeout the watchdog kills every VM of the backend, once, then waits for the
heartbeat to come back. It talks to no database.
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


def heartbeat_age(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return float("inf")


def watch(heartbeat: str, fence_timeout: float, backend) -> None:
    fired = False
    while True:
        age = heartbeat_age(heartbeat)
        if age > fence_timeout and not fired:
            killed = backend.kill_all()
            log.warning("lease not renewed for %.1fs (limit %.1fs): killed VMs %s", age,
                        fence_timeout, killed or "none")
            fired = True
        elif age <= fence_timeout and fired:
            log.info("heartbeat back; watching again")
            fired = False
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
