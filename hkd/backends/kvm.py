"""The `kvm` backend: each VM is a libvirt domain named qvd-<vm id> (libvirt-python talking to
libvirtd at vm.kvm.uri). Disks under path.storage.root: overlays/<vm>.qcow2 (backed by the
DI, discarded at stop unless vm.overlay.persistent), homes/<vm>-data.qcow2 (kept); the NIC
on the same bridge and firewall rules as the LXC backend.

Domains are transient (created at start, gone once destroyed): what libvirt lists as qvd-*
is exactly what runs, which is what re-adoption after an HKD restart needs.
"""
from __future__ import annotations

import asyncio
import os
import subprocess

import libvirt

from . import bridge as network
from .bridge import ip_from_mac
from .base import Backend, BackendError, VmAddress, VmSpec
from .kvm_domain import DomainPlan, domain_name, domain_xml
from .kvm_probe import kvm_runs_guests

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions


def tap_name(vm_id: int) -> str:
    return f"qvdk{vm_id}"


class KvmBackend(Backend):
    name = "kvm"

    def __init__(self, cfg):
        self.cfg = cfg
        root = cfg.get("path.storage.root")
        self.images = os.path.join(root, "images")
        self.overlays = os.path.join(root, "overlays")
        self.homes = os.path.join(root, "homes")
        self.consoles = os.path.join(cfg.get("path.log"), "consoles")
        for path in (self.overlays, self.homes, self.consoles):
            os.makedirs(path, exist_ok=True)
        self.uri = cfg.get("vm.kvm.uri")
        self.vma_port = cfg.get_int("internal.vm.port.vma")
        self.x_port = cfg.get_int("internal.vm.port.x")
        self._domain_type: str | None = None
        self._conn: libvirt.virConnect | None = None

    # --- helpers -------------------------------------------------------------------------------
    def _connect(self) -> libvirt.virConnect:
        """One connection, kept (and opened again after libvirtd restarts)."""
        if self._conn is not None and self._conn.isAlive():
            return self._conn
        try:
            self._conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise BackendError(f"libvirt at {self.uri}: {exc.get_error_message()}") from None
        return self._conn

    def domain_type(self) -> str:
        """vm.kvm.accel: kvm, tcg, or auto = kvm only when KVM really runs a guest here."""
        if self._domain_type is None:
            accel = self.cfg.get("vm.kvm.accel")
            use_kvm = accel == "kvm" or (accel == "auto" and kvm_runs_guests())
            self._domain_type = "kvm" if use_kvm else "qemu"
        return self._domain_type

    def overlay_path(self, vm_id: int) -> str:
        return os.path.join(self.overlays, f"{vm_id}.qcow2")

    def home_path(self, vm_id: int) -> str:
        return os.path.join(self.homes, f"{vm_id}-data.qcow2")

    def plan(self, vm: VmSpec) -> DomainPlan:
        bridge, prefix, gateway = network.plan(self.cfg)
        return DomainPlan(
            name=domain_name(vm.vm_id), domain_type=self.domain_type(),
            os_disk=self.overlay_path(vm.vm_id) if vm.use_overlay else vm.image,
            os_disk_readonly=not vm.use_overlay,
            home_disk=self.home_path(vm.vm_id) if vm.user_storage else None,
            bridge=bridge, tap=tap_name(vm.vm_id),
            console_log=os.path.join(self.consoles, f"qvd-{vm.vm_id}.log"),
            prefix=prefix, gateway=gateway, vma_port=self.vma_port,
            use_dhcp=self.cfg.get_bool("vm.network.use_dhcp"), secret=vm.vma_secret)

    def check_paths(self, vm: VmSpec) -> None:
        """Disks and kernels come from the image store only: a path in the database (a DI's,
        or a property vm.kvm.kernel/initrd, relative to the store or absolute) naming any
        other host file is refused. The properties are made absolute for the domain."""
        store = os.path.realpath(self.images)
        named = {"the DI": vm.image, "vm.kvm.kernel": vm.properties.get("vm.kvm.kernel"),
                 "vm.kvm.initrd": vm.properties.get("vm.kvm.initrd")}
        for what, path in named.items():
            if not path:
                continue
            real = os.path.realpath(os.path.join(store, path))
            if not real.startswith(store + "/"):
                raise BackendError(f"{what} {path} is outside the image store {store}: refused")
            if what != "the DI":
                vm.properties = dict(vm.properties, **{what: real})

    def _xml_path(self, vm_id: int) -> str:
        return os.path.join(self.overlays, f"{vm_id}.xml")

    # --- the interface ---------------------------------------------------------------------
    async def prepare(self, vm: VmSpec) -> VmAddress:
        self.check_paths(vm)
        if not os.path.isfile(vm.image):
            raise BackendError(f"image {vm.image} not found on this node")
        plan = self.plan(vm)
        persistent = self.cfg.get_bool("vm.overlay.persistent")

        def disks_and_network():
            network.attach_vm(self.cfg, vm.vm_id, vm.ip, tap_name(vm.vm_id))
            if vm.use_overlay and not (persistent and os.path.exists(plan.os_disk)):
                _qemu_img("create", "-f", "qcow2", "-F", _format(vm.image), "-b", vm.image,
                          plan.os_disk)
            if plan.home_disk and not os.path.exists(plan.home_disk):
                _qemu_img("create", "-f", "qcow2", plan.home_disk, f"{vm.user_storage}M")
        await asyncio.to_thread(disks_and_network)
        # it holds the agent's secret: the node's root only
        fd = os.open(self._xml_path(vm.vm_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(domain_xml(vm, plan))
        return VmAddress(vm.ip, self.vma_port, self.x_port)

    async def start(self, vm: VmSpec) -> int | None:
        with open(self._xml_path(vm.vm_id), encoding="utf-8") as handle:
            xml = handle.read()

        def create():
            conn = self._connect()
            try:
                conn.createXML(xml, 0)
            except libvirt.libvirtError as exc:
                raise BackendError(f"libvirt: {exc.get_error_message()}") from None
        await asyncio.to_thread(create)
        network.port_up(self.cfg, tap_name(vm.vm_id), vm.ip)
        return _qemu_pid(domain_name(vm.vm_id))

    def _domain_call(self, vm_id: int, action: str) -> bool:
        """Call dom.<action>() if the domain exists; False when it does not."""
        conn = self._connect()
        try:
            domain = conn.lookupByName(domain_name(vm_id))
            if action != "isActive":
                getattr(domain, action)()
            return bool(domain.isActive())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise BackendError(f"libvirt {action}: {exc.get_error_message()}") from None

    async def state(self, vm_id: int) -> str:
        active = await asyncio.to_thread(self._domain_call, vm_id, "isActive")
        return "running" if active else "stopped"

    async def stop(self, vm_id: int) -> None:
        await asyncio.to_thread(self._domain_call, vm_id, "shutdown")  # ACPI power button

    async def kill(self, vm_id: int) -> None:
        await asyncio.to_thread(self._domain_call, vm_id, "destroy")

    async def list(self) -> dict[int, VmAddress | None]:
        def running():
            found = {}
            for domain in self._connect().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                name = domain.name()
                if name.startswith("qvd-") and name[4:].isdigit():
                    found[int(name[4:])] = _address(domain.XMLDesc(0), self.vma_port,
                                                    self.x_port)
            return found
        return await asyncio.to_thread(running)

    async def release_node(self) -> None:
        await asyncio.to_thread(network.release, self.cfg)

    async def cleanup(self, vm_id: int) -> None:
        if await self.state(vm_id) == "running":
            raise BackendError("the domain is still running")
        network.detach_vm(self.cfg, vm_id, tap_name(vm_id))
        if not self.cfg.get_bool("vm.overlay.persistent"):
            for path in (self.overlay_path(vm_id), self._xml_path(vm_id)):
                if os.path.exists(path):
                    os.unlink(path)

    async def discard_home(self, vm_id: int) -> None:
        for path in (self.home_path(vm_id), self.overlay_path(vm_id)):
            if os.path.exists(path):
                os.unlink(path)

    def kill_all(self) -> list[int]:
        killed = []
        for domain in self._connect().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            name = domain.name()
            if name.startswith("qvd-") and name[4:].isdigit():
                try:
                    domain.destroy()
                    killed.append(int(name[4:]))
                except libvirt.libvirtError:
                    pass
        return killed


def _address(xml: str, vma_port: int, x_port: int) -> VmAddress | None:
    import xml.etree.ElementTree as ElementTree
    mac = ElementTree.fromstring(xml).find("./devices/interface/mac")
    return VmAddress(ip_from_mac(mac.get("address")), vma_port, x_port) if mac is not None \
        else None


def _qemu_pid(name: str) -> int | None:
    try:
        with open(f"/run/libvirt/qemu/{name}.pid", encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None  # a non-local libvirt: no pid to show


def _format(image: str) -> str:
    with open(image, "rb") as handle:
        return "qcow2" if handle.read(4) == b"QFI\xfb" else "raw"


def _qemu_img(*args: str) -> None:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BackendError(f"qemu-img {args[0]}: {done.stderr.strip()}")
