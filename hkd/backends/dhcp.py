"""vm.network.use_dhcp: VMs get their fixed address from dnsmasq on the VM bridge, one static
lease per VM (MAC -> IP; the MAC is derived from the IP), never a dynamic one. One dnsmasq per
bridge, found again through its pid file; leases are files in a directory dnsmasq watches,
so adding or removing a VM needs no restart. DNS is off (port 0)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from ..pidfile import PidFile
from .base import BackendError
from .bridge import mac_for


def _paths(run_dir: str, bridge: str) -> tuple[str, str]:
    return (os.path.join(run_dir, f"dnsmasq-{bridge}.pid"),
            os.path.join(run_dir, f"dnsmasq-{bridge}.hosts"))


def ensure_server(run_dir: str, log_dir: str, bridge: str, network, gateway: str) -> None:
    pidfile, hosts = _paths(run_dir, bridge)
    os.makedirs(hosts, exist_ok=True)
    if PidFile(pidfile).running() is not None:
        return
    ready = os.path.join(run_dir, f"dnsmasq-{bridge}.ready")
    if os.path.exists(ready):
        os.unlink(ready)
    dnsmasq = shutil.which("dnsmasq")
    if dnsmasq is None:
        raise BackendError("vm.network.use_dhcp needs dnsmasq (Debian: dnsmasq-base)")
    os.makedirs(log_dir, exist_ok=True)
    # what dnsmasq says before its own log is open (bad options, a busy port) goes here
    errors_path = os.path.join(log_dir, f"dnsmasq-{bridge}.err")
    with open(errors_path, "ab") as errors:
        proc = subprocess.Popen(
            [dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
             f"--interface={bridge}", "--bind-interfaces", "--except-interface=lo",
             f"--dhcp-range={network.network_address},static,{network.netmask},12h",
             f"--dhcp-hostsdir={hosts}", "--dhcp-authoritative", f"--dhcp-option=3,{gateway}",
             f"--dhcp-leasefile={os.path.join(run_dir, f'dnsmasq-{bridge}.leases')}",
             f"--log-facility={os.path.join(log_dir, f'dnsmasq-{bridge}.log')}", "--log-dhcp",
             f"--pid-file={ready}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
            start_new_session=True)
    # dnsmasq writes its own pid file once it is set up; until then a SIGHUP (a lease added
    # by the next VM) would kill it instead of making it read its hosts again
    deadline = time.monotonic() + 10
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BackendError(f"dnsmasq for {bridge} did not start; see {errors_path}")
        time.sleep(0.02)
    PidFile(pidfile).record(proc.pid)


def _reread(run_dir: str, bridge: str) -> None:
    """SIGHUP: dnsmasq reads its hosts directory again (not every change is seen otherwise)."""
    pid = PidFile(_paths(run_dir, bridge)[0]).running()
    if pid is not None:
        os.kill(pid, signal.SIGHUP)


def add_lease(run_dir: str, bridge: str, vm_id: int, ip: str) -> None:
    _, hosts = _paths(run_dir, bridge)
    partial = os.path.join(hosts, f".{vm_id}.tmp")
    with open(partial, "w", encoding="ascii") as handle:
        handle.write(f"{mac_for(ip)},{ip}\n")
    os.replace(partial, os.path.join(hosts, str(vm_id)))
    _reread(run_dir, bridge)


def remove_lease(run_dir: str, bridge: str, vm_id: int) -> None:
    try:
        os.unlink(os.path.join(_paths(run_dir, bridge)[1], str(vm_id)))
    except FileNotFoundError:
        return
    _reread(run_dir, bridge)


def stop_server(run_dir: str, bridge: str) -> None:
    PidFile(_paths(run_dir, bridge)[0]).stop()
