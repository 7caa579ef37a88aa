"""qvd-vma --dhcp: the agent is the VM's first process, so it asks for the VM's address itself
before it listens on it (busybox's udhcpc, with a script that configures eth0)."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile

log = logging.getLogger("qvd.vma.dhcp")

SCRIPT = """#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
busybox ip addr flush dev "$interface"
busybox ip addr add "$ip/$mask" dev "$interface"
[ -n "$router" ] && busybox ip route add default via "${router%% *}"
exit 0
"""


def configure(interface: str = "eth0", timeout: int = 20) -> None:
    """Raises RuntimeError when no address came."""
    if shutil.which("busybox") is None:
        raise RuntimeError("--dhcp needs busybox (udhcpc) in the image")
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(SCRIPT)
    os.chmod(handle.name, 0o755)
    try:
        done = subprocess.run(["busybox", "udhcpc", "-i", interface, "-n", "-q", "-f",
                               "-t", str(timeout), "-T", "1", "-s", handle.name],
                              capture_output=True, text=True, timeout=timeout + 10)
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        raise RuntimeError(f"no DHCP answer on {interface}: {done.stderr.strip()[-200:]}")
    log.info("address from DHCP on %s", interface)
