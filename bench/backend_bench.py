"""LXC and KVM benchmarks (python -m bench.backend_bench; part of make bench; root only).

LXC cold connect: a stopped container VM, a client's connect through the L7R, to the first
desktop byte; its floor, measured in the same run: a bare `lxc-start` of the same rootfs and
config (the agent replaced by a sleep) until LXC says RUNNING, plus Xvnc's own start. Measured
with unprivileged containers (the default) and, on a second node in the same run, with
privileged ones (vm.lxc.privileged = 1): the price of the user namespace and its checks.
LXC boot storm: 20 container VMs started at once on one node, until every agent answers.
KVM: `vm start` of the tests' tiny guest (QEMU/TCG here) until its agent answers, against a
bare `virsh create` of the same domain XML until the same agent answers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from qvd.client.rfb import Stream
from qvd.vma import secret
from qvd.hkd.backends import host_di
from qvd.hkd.backends.bridge import remove_bridge
from qvd.hkd.backends.firewall import remove as remove_firewall

from .common import Row, ms, summary, table
from .desktop_bench import raw_xvnc_start
from .node import bench_node, wait

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")

STORM = 20
LXC_CONF = ("vm.network.bridge = qvdb\nvm.network.ip.start = 10.234.0.10\n"
            "vm.network.netmask = 255.255.255.0\nvm.lxc.unionfs.bind.fstab = 1\n"
            f"vm.lxc.init = {host_di.AGENT}\n")


def usable() -> str | None:
    """Why these benchmarks cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("lxc-start"):
        return "lxc is not installed"
    return None


def _agent_answers(address: str, node_secret: str) -> bool:
    request = urllib.request.Request(f"http://{address}:3030/vma/ping",
                                     headers=secret.bearer(node_secret))
    try:
        with urllib.request.urlopen(request, timeout=1) as reply:
            return json.load(reply)["status"] == "ok"
    except (OSError, ValueError):
        return False


def _all_agents_answer(node) -> bool:
    rows = node.db.execute("SELECT host(vm_address), vma_secret FROM vm_runtimes").fetchall()
    return all(address and _agent_answers(address, value) for address, value in rows)


def _bare_lxc_start(config: str, lxcpath: str) -> float:
    """lxc-start of a copy of a VM's own config with a sleep for init; until RUNNING."""
    with open(config, encoding="utf-8") as handle:
        text = re.sub(r"(?m)^lxc\.init\.cmd = .*$", "lxc.init.cmd = /bin/sleep 60",
                      handle.read())
    text = re.sub(r"(?m)^lxc\.net\.0\..*\n", "", text) + "lxc.net.0.type = empty\n"
    os.makedirs(os.path.join(lxcpath, "floor"), exist_ok=True)
    floor_config = os.path.join(lxcpath, "floor", "config")
    with open(floor_config, "w", encoding="utf-8") as handle:
        handle.write(text)
    began = time.perf_counter()
    subprocess.run(["lxc-start", "-n", "floor", "-P", lxcpath, "-d", "-f", floor_config],
                   check=True, capture_output=True)
    wait(lambda: subprocess.run(["lxc-info", "-n", "floor", "-P", lxcpath, "-s", "-H"],
                                capture_output=True, text=True).stdout.strip() == "RUNNING", 30)
    elapsed = time.perf_counter() - began
    subprocess.run(["lxc-stop", "-n", "floor", "-P", lxcpath, "-k"], capture_output=True)
    return elapsed


def run_lxc(count: int, privileged: bool = False) -> dict:
    """Cold connects (and, unprivileged only, the boot storm) on a node of their own."""
    floor, cold = [], []
    storm = None
    try:
        with bench_node(users=STORM, hypervisor="lxc", memory=256,
                        node_conf=LXC_CONF + f"vm.lxc.privileged = {int(privileged)}\n",
                        image=lambda home: host_di.build(os.path.join(home, "host-di.tar")),
                        di_trusted=True) as node:
            lxcpath = os.path.join(node.home, "storage", "lxc")
            for _ in range(count):
                began = time.perf_counter()
                conn = node.connect_desktop()
                assert Stream(conn.sock, conn.buffer).read(4) == b"RFB "
                cold.append(time.perf_counter() - began)
                floor.append(_bare_lxc_start(os.path.join(lxcpath, "qvd-1", "config"), lxcpath)
                             + raw_xvnc_start())
                conn.close()
                wait(lambda: node.state(1)[1] == "disconnected")
                node.admin("vm", "stop", "-f", "name=desk0")
                wait(lambda: node.state(1)[0] == "stopped")
            if not privileged:
                began = time.perf_counter()
                node.admin("vm", "start", "-f", "name=desk*")
                wait(lambda: all(state == "running" for _, state, _ in node.states()), 300)
                wait(lambda: _all_agents_answer(node), 60)
                storm = time.perf_counter() - began
                node.admin("vm", "stop", "-f", "name=desk*")
                wait(lambda: all(state == "stopped" for _, state, _ in node.states()), 300)
    finally:
        remove_bridge("qvdb")
        remove_firewall("qvdb")
    return {"cold": summary(cold), "floor": summary(floor), "storm_s": storm,
            "single_s": statistics.median(cold)}


def run_kvm(count: int) -> dict:
    sys.path.insert(0, TESTS)
    import tiny_guest  # the tests' tiny guest: a cloud kernel and a busybox initramfs

    def image(home):
        kernel, initrd = tiny_guest.build(home)
        disk = os.path.join(home, "tiny.qcow2")
        subprocess.run(["qemu-img", "create", "-f", "qcow2", disk, "64M"], check=True,
                       capture_output=True)
        store = os.path.join(home, "storage", "images")  # kernels come from the image store
        os.makedirs(store, exist_ok=True)
        for path in (kernel, initrd):
            shutil.copy(path, store)
        image.props = (f"vm.kvm.kernel={store}/{os.path.basename(kernel)}",
                       f"vm.kvm.initrd={store}/{os.path.basename(initrd)}",
                       "vm.kvm.cmdline=console=ttyS0 quiet")
        return disk
    conf = ("vm.kvm.accel = tcg\nvm.network.bridge = qvdb\nvm.network.ip.start = 10.234.0.10\n"
            "vm.network.netmask = 255.255.255.0\ninternal.hkd.timeout.vm.state.starting = 300\n")
    ours, bare = [], []
    try:
        with bench_node(hypervisor="kvm", node_conf=conf, memory=256, image=image) as node:
            node.admin("di", "propset", "-f", "osf=desk", *image.props)
            for _ in range(count):
                began = time.perf_counter()
                node.admin("vm", "start", "-f", "name=desk0")
                wait(lambda: node.state(1)[0] == "running", 300)
                ours.append(time.perf_counter() - began)
                xml_path = os.path.join(node.home, "storage", "overlays", "1.xml")
                with open(xml_path, encoding="utf-8") as handle:
                    xml = handle.read().replace("<name>qvd-1</name>", "<name>floor</name>")
                node.admin("vm", "stop", "-f", "name=desk0")
                wait(lambda: node.state(1)[0] == "stopped", 120)
                # the floor: the same domain (renamed), on a fresh overlay of the same DI
                floor_xml = os.path.join(node.home, "floor.xml")
                with open(floor_xml, "w", encoding="utf-8") as handle:
                    handle.write(xml.replace("qvdk1", "qvdkf"))
                images = os.path.join(node.home, "storage", "images")
                overlay = os.path.join(node.home, "storage", "overlays", "1.qcow2")
                disk = next(n for n in os.listdir(images) if n.endswith(".qcow2"))
                subprocess.run(["qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b",
                                os.path.join(images, disk), overlay],
                               check=True, capture_output=True)
                floor_secret = re.search(r"qvd\.vma_secret=(\w+)", xml).group(1)
                began = time.perf_counter()
                subprocess.run(["virsh", "-c", "qemu:///system", "create", floor_xml],
                               check=True, capture_output=True)
                wait(lambda: _agent_answers("10.234.0.10", floor_secret), 300)
                bare.append(time.perf_counter() - began)
                subprocess.run(["virsh", "-c", "qemu:///system", "destroy", "floor"],
                               capture_output=True)
                os.unlink(overlay)
    finally:
        remove_bridge("qvdb")
        remove_firewall("qvdb")
    return {"kvm": summary(ours), "virsh": summary(bare)}


def run(count: int, kvm_count: int) -> dict:
    reason = usable()
    if reason:
        return {"skipped": reason}
    result = {"lxc": run_lxc(count), "lxc_privileged": run_lxc(count, privileged=True)}
    if shutil.which("virsh") and shutil.which("libvirtd"):
        sys.path.insert(0, TESTS)
        import libvirtd  # the tests' libvirtd: the running one, or one started for the run
        with tempfile.TemporaryDirectory() as logs, libvirtd.running(logs):
            result["kvm"] = run_kvm(kvm_count)
    else:
        result["kvm_skipped"] = "libvirt is not installed (scripts/install-deps.sh installs it)"
    return result


def rows(result: dict) -> list[Row]:
    if "skipped" in result:
        return [Row("cold_lxc", "cold connect, lxc backend", None, "ms",
                    note=result["skipped"])]
    lxc = result["lxc"]
    found = [Row(f"cold_lxc_{label}", f"cold connect (stopped container, lxc backend) to the "
                 f"first desktop byte, {label} (n={lxc['cold']['n']})", lxc["cold"][label] * 1000,
                 "ms", lxc["floor"][label] * 1000, "bare lxc-start of the same rootfs + Xvnc "
                 "start, done directly") for label in ("p50", "p99")]
    privileged = result["lxc_privileged"]
    found += [Row(f"cold_lxc_unprivileged_{label}", f"cold connect, lxc backend, unprivileged "
                  f"containers (the default), {label} (n={lxc['cold']['n']})",
                  lxc["cold"][label] * 1000, "ms", privileged["cold"][label] * 1000,
                  "the same with privileged containers, same run") for label in ("p50", "p99")]
    found.append(Row("storm_lxc", f"boot storm: {STORM} containers started at once -> every "
                     "agent answers", lxc["storm_s"], "s", lxc["single_s"] * STORM,
                     f"{STORM} x one cold connect, one after the other"))
    if "kvm" in result:
        kvm = result["kvm"]
        found.append(Row("kvm_start", f"kvm: vm start -> agent answers, tiny guest under TCG, "
                         f"p50 (n={kvm['kvm']['n']})", kvm["kvm"]["p50"], "s",
                         kvm["virsh"]["p50"], "bare virsh create of the same domain"))
    else:
        found.append(Row("kvm_start", "kvm: vm start -> agent answers", None, "s",
                         note=result["kvm_skipped"]))
    return found


def distributions(result: dict) -> dict:
    if "skipped" in result:
        return {}
    return {"cold_connect_lxc": ("cold connect (lxc backend) to the first desktop byte", "ms", {
        "qvd": ms(result["lxc"]["cold"]["samples"]),
        "lxc-start + Xvnc start, done directly": ms(result["lxc"]["floor"]["samples"])})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--kvm-count", type=int, default=2)
    args = parser.parse_args()
    print(table(rows(run(args.count, args.kvm_count))))


if __name__ == "__main__":
    main()
