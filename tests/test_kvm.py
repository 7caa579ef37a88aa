"""The KVM backend: domain XML and lifecycle against libvirt's test:///default driver (no
daemon), then a real boot under QEMU/TCG of a tiny guest (tests/tiny_guest.py) driven from
stopped to running to stopped through the CLI by a real qvd-hkd."""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree

import pytest

from hkd_nodes import HkdNode, wait_for
from qvd.db.config import Config
from qvd.hkd.backends import dhcp
from qvd.hkd.backends.base import BackendError, VmSpec
from qvd.hkd.backends.bridge import link_exists
from qvd.vma import secret
from vm_network import clear_network, remove_test_bridge

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("qemu-img"),
                                reason="the KVM backend needs root and qemu-utils")


def spec(tmp_path, **props) -> VmSpec:
    image = str(tmp_path / "storage" / "images" / "di.qcow2")  # in backend()'s image store
    if not os.path.exists(image):
        os.makedirs(os.path.dirname(image), exist_ok=True)
        subprocess.run(["qemu-img", "create", "-f", "qcow2", image, "64M"], check=True,
                       capture_output=True)
    return VmSpec(vm_id=5, name="box", memory=384, image=image, ip="10.233.0.20",
                  use_overlay=True, user_storage=32, properties=props, vma_secret="s3cr3t")


def backend(tmp_path, uri="test:///default", **more):
    from qvd.hkd.backends.kvm import KvmBackend
    node = {"path.storage.root": str(tmp_path / "storage"), "path.log": str(tmp_path / "log"),
            "path.run": str(tmp_path / "run"),
            "vm.kvm.uri": uri, "vm.kvm.accel": "tcg", "vm.network.bridge": "qvdkt",
            "vm.network.ip.start": "10.233.0.20", "vm.network.netmask": "255.255.255.0",
            "vm.network.firewall.protect_vms": "0", **more}
    return KvmBackend(Config(node=node))


@pytest.fixture
def kvm_bridge():
    clear_network("10.233.0.0/24", keep="qvdkt")
    yield "qvdkt"
    remove_test_bridge("qvdkt")


def test_domain_xml_comes_from_the_data(tmp_path):
    kvm = backend(tmp_path)
    vm = spec(tmp_path, **{"vm.kvm.vcpus": "2", "vm.kvm.kernel": "/k", "vm.kvm.initrd": "/i"})
    from qvd.hkd.backends.kvm_domain import domain_xml
    root = ElementTree.fromstring(domain_xml(vm, kvm.plan(vm)))
    assert root.get("type") == "qemu" and root.findtext("name") == "qvd-5"
    assert root.find("memory").text == "384" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("vcpu") == "2" and root.find("features/acpi") is not None
    disks = root.findall("devices/disk")
    assert [d.find("source").get("file") for d in disks] == [
        kvm.overlay_path(5), kvm.home_path(5)]
    assert disks[0].find("readonly") is None
    nic = root.find("devices/interface")
    assert nic.find("source").get("bridge") == "qvdkt"
    assert nic.find("mac").get("address") == "02:00:0a:e9:00:14"
    assert nic.find("model").get("type") == "virtio"
    assert root.find("devices/serial/source").get("path").endswith("qvd-5.log")
    assert "qvd.ip=10.233.0.20/24 qvd.gw=10.233.0.1 qvd.vma_port=3030" in root.findtext("os/cmdline")
    # the agent's secret: an SMBIOS OEM string (root's in the guest), not the command line
    assert root.findtext("sysinfo/oemStrings/entry") == "qvd.vma_secret=s3cr3t"
    assert root.find("os/smbios").get("mode") == "sysinfo"
    assert "s3cr3t" not in root.findtext("os/cmdline")
    # without an overlay the DI itself is the disk, read-only
    vm.use_overlay, vm.user_storage = False, None
    root = ElementTree.fromstring(domain_xml(vm, kvm.plan(vm)))
    (disk,) = root.findall("devices/disk")
    assert disk.find("source").get("file") == vm.image and disk.find("readonly") is not None


def test_lifecycle_against_the_libvirt_test_driver(tmp_path, kvm_bridge):
    kvm = backend(tmp_path)
    vm = spec(tmp_path)

    async def scenario():
        address = await kvm.prepare(vm)
        assert (address.address, address.vma_port) == ("10.233.0.20", 3030)
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json",
                                          kvm.overlay_path(5)], capture_output=True,
                                         text=True, check=True).stdout)
        assert info["backing-filename"] == vm.image  # a qcow2 overlay on the DI
        assert os.path.exists(kvm.home_path(5)) and link_exists("qvdkt")
        await kvm.start(vm)
        assert await kvm.state(5) == "running"
        listed = await kvm.list()
        assert list(listed) == [5] and listed[5].address == "10.233.0.20"  # from the MAC
        await kvm.kill(5)
        assert await kvm.state(5) == "stopped" and await kvm.list() == {}
        await kvm.cleanup(5)
        assert not os.path.exists(kvm.overlay_path(5)) and os.path.exists(kvm.home_path(5))
    asyncio.run(scenario())


def test_host_paths_outside_the_image_store_are_refused(tmp_path):
    """A DI path or a kernel property from the database may name files of the image store
    only: /etc/shadow as a disk or ../ out of the store are refused before anything is made."""
    kvm = backend(tmp_path)
    for props, image in (({}, "/etc/shadow"), ({"vm.kvm.kernel": "/boot/../etc/shadow"}, None),
                         ({"vm.kvm.initrd": "../../x"}, None)):
        vm = spec(tmp_path, **props)
        vm.image = image or vm.image
        with pytest.raises(BackendError, match="outside the image store"):
            asyncio.run(kvm.prepare(vm))
    assert not os.path.exists(kvm.overlay_path(5))


def test_auto_acceleration_asks_kvm_itself(tmp_path, monkeypatch):
    from qvd.hkd.backends import kvm as kvm_module
    monkeypatch.setattr(kvm_module, "kvm_runs_guests", lambda: False)
    assert backend(tmp_path, **{"vm.kvm.accel": "auto"}).domain_type() == "qemu"
    monkeypatch.setattr(kvm_module, "kvm_runs_guests", lambda: True)
    assert backend(tmp_path, **{"vm.kvm.accel": "auto"}).domain_type() == "kvm"
    assert backend(tmp_path, **{"vm.kvm.accel": "tcg"}).domain_type() == "qemu"


@pytest.fixture
def kvm_node(demo, tmp_path, libvirtd):
    clear_network("10.233.0.0/24", keep="qvdkt")
    import tiny_guest
    # qemu runs as libvirt-qemu: it must reach the disks, the kernel and the console log
    for directory in (tmp_path, tmp_path.parent, tmp_path.parent.parent):
        directory.chmod(0o755)
    kernel, initrd = tiny_guest.build(str(tmp_path))
    images = os.path.join(demo.storage, "images")  # kernels, like disks, come from the store
    os.makedirs(images, exist_ok=True)
    for path in (kernel, initrd):
        shutil.copy(path, os.path.join(images, f"tiny-{os.path.basename(path)}"))
    disk = str(tmp_path / "tiny.qcow2")
    subprocess.run(["qemu-img", "create", "-f", "qcow2", disk, "64M"], check=True,
                   capture_output=True)
    demo.ok("config", "set", "vm.network.ip.start=10.233.0.20", "vm.network.netmask=255.255.255.0")
    demo.ok("osf", "add", "-t", "acme", "name=tiny", "memory=256", "user_storage=32")
    demo.ok("di", "add", "-t", "acme", f"path={disk}", "osf=tiny", "version=tiny")
    demo.ok("di", "propset", "-t", "acme", "-f", "version=tiny",
            f"vm.kvm.kernel=tiny-{os.path.basename(kernel)}",
            f"vm.kvm.initrd={images}/tiny-{os.path.basename(initrd)}",
            "vm.kvm.cmdline=console=ttyS0 quiet")
    demo.ok("vm", "add", "-t", "acme", "name=tiny", "user=alice", "osf=tiny", "ip=10.233.0.20")
    node = HkdNode(demo, "node1", f"vm.hypervisor = kvm\nvm.kvm.uri = {libvirtd}\n"
                   "vm.kvm.accel = tcg\nvm.network.bridge = qvdkt\n"
                   "internal.hkd.timeout.vm.state.stopping_shutdown = 20\n"
                   "internal.hkd.timeout.vm.state.starting = 180\n")
    node.vm_id = demo.sql("SELECT id FROM vms WHERE name = 'tiny'")[0][0]
    node.start()
    yield node
    node.cleanup()
    conn = libvirt.open(libvirtd)
    for domain in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        if domain.name() == f"qvd-{node.vm_id}":
            domain.destroy()
    conn.close()
    dhcp.stop_server(node.run_dir, "qvdkt")
    remove_test_bridge("qvdkt")


def _domains(uri: str, vm_id: int) -> list[str]:
    conn = libvirt.open(uri)
    try:
        return [d.name() for d in conn.listAllDomains() if d.name() == f"qvd-{vm_id}"]
    finally:
        conn.close()


def _ping(demo, vm_id, offered=None) -> int:
    """The guest agent's answer to a ping with the node's secret (or `offered`)."""
    (value,) = demo.sql("SELECT vma_secret FROM vm_runtimes WHERE vm_id = :v", v=vm_id)[0]
    request = urllib.request.Request("http://10.233.0.20:3030/vma/ping",
                                     headers=secret.bearer(offered or value))
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _row(demo):
    (row,) = json.loads(demo.ok("vm", "list", "--json", "-f", "name=tiny"))
    return row


def test_a_tiny_guest_under_tcg_through_the_cli_adopted_and_orphaned(kvm_node, demo, libvirtd):
    """Booted and stopped twice through the CLI (the address on the kernel command line, then
    by DHCP); after a kill -9 of the HKD the guest is adopted as it runs, and one the database
    let go meanwhile is destroyed as an orphan."""
    vm_id = kvm_node.vm_id
    storage = demo.storage
    overlay = os.path.join(storage, "overlays", f"{vm_id}.qcow2")
    home = os.path.join(storage, "homes", f"{vm_id}-data.qcow2")
    for round_ in range(2):
        if round_ == 1:  # the second boot takes its address from the node's dnsmasq
            demo.ok("config", "set", "vm.network.use_dhcp=1")
        demo.ok("vm", "start", "-f", "name=tiny")
        row = wait_for(lambda: _row(demo)["state"] == "running" and _row(demo) or
                       _row(demo)["last_error"], 240, "the guest to boot")
        assert isinstance(row, dict), row  # else the reason it did not start
        assert _ping(demo, vm_id) == 200  # through the bridge, from the guest, with the secret
        assert _ping(demo, vm_id, "0" * 64) == 401  # the guest got its own secret, by SMBIOS
        assert os.path.exists(overlay) and link_exists(f"qvdk{vm_id}")
        if round_ == 0:
            home_inode = os.stat(home).st_ino
        assert os.stat(home).st_ino == home_inode  # the same home disk both times
        if round_ == 1:
            log = open(os.path.join(kvm_node.home, "log", "dnsmasq-qvdkt.log")).read()
            assert "DHCPACK(qvdkt) 10.233.0.20 02:00:0a:e9:00:14" in log
        kvm_node.signal(signal.SIGKILL)  # the node daemon dies; the guest must not
        kvm_node.proc.wait()
        if round_ == 0:
            kvm_node.start()  # adopted: the same qemu, still answering, stopped by the new HKD
            wait_for(lambda: "adopted (running)" in kvm_node.log(), 30, "re-adoption")
            assert _row(demo)["pid"] == row["pid"] and _row(demo)["state"] == "running"
            assert _ping(demo, vm_id) == 200
            demo.ok("vm", "stop", "-f", "name=tiny")
        else:  # meanwhile the database let the VM go: the guest is an orphan, destroyed
            demo.sql("UPDATE vm_runtimes SET vm_state = 'stopped', host_id = NULL, "
                     "vm_cmd = NULL WHERE vm_id = :v", v=vm_id)
            kvm_node.start()
            wait_for(lambda: "does not place it here" in kvm_node.log(), 30, "the orphan")
        wait_for(lambda: _row(demo)["state"] == "stopped", 120, "the guest to stop")
        wait_for(lambda: not _domains(libvirtd, vm_id) and not os.path.exists(overlay), 30,
                 "the domain and its overlay to go")
        assert os.path.exists(home)
        assert not link_exists(f"qvdk{vm_id}")
    assert row["pid"]
