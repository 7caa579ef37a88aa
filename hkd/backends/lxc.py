"""The `lxc` backend: each VM is an LXC container (Debian's lxc: lxc-start, lxc-stop, lxc-info
with a generated config), root = overlay of the DI, /home = the VM's persistent home, a veth
on the VM bridge, memory limited through the container's cgroup.

Containers are named qvd-<vm id> and live under <storage>/lxc: a restarted HKD (or the
watchdog) finds them there. The agent (qvd-vma) runs inside, on the VM's own address.
"""
from __future__ import annotations

import asyncio
import os
import subprocess

from . import bridge as network
from .base import Backend, BackendError, VmAddress, VmSpec
from .bridge import ip_from_mac, mac_for, veth_name
from .lxc_storage import Storage

def container(vm_id: int) -> str:
    return f"qvd-{vm_id}"


def first_error(log: str) -> str:
    """LXC's first ERROR line is the cause; the ones after it are consequences."""
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if " ERROR " in line:
                    return line.split(" - ", 2)[-1].strip()
    except FileNotFoundError:
        pass
    return "failed (no log)"


class LxcBackend(Backend):
    name = "lxc"

    def __init__(self, cfg):
        self.cfg = cfg
        self.storage = Storage(cfg.get("path.storage.root"))
        self.lxcpath = os.path.join(cfg.get("path.storage.root"), "lxc")
        os.makedirs(self.lxcpath, exist_ok=True)
        self.vma_port = cfg.get_int("internal.vm.port.vma")
        self.x_port = cfg.get_int("internal.vm.port.x")

    # --- helpers -------------------------------------------------------------------------------
    def _config_path(self, vm_id: int) -> str:
        return os.path.join(self.lxcpath, container(vm_id), "config")

    async def _lxc(self, *args: str, check: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            *args, "-P", self.lxcpath, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        out, _ = await proc.communicate()
        text = out.decode("utf-8", "replace").strip()
        if check and proc.returncode != 0:
            raise BackendError(f"{args[0]} {args[2] if len(args) > 2 else ''}: "
                               f"{text.splitlines()[-1] if text else proc.returncode}")
        return text

    def config_text(self, vm: VmSpec, rootfs: str, home: str, fstab: str | None,
                    extra: str | None, hooks: dict[str, str] | None = None) -> str:
        bridge, prefix, gateway = network.plan(self.cfg)
        use_dhcp = self.cfg.get_bool("vm.network.use_dhcp")
        lines = [
            f"lxc.uts.name = {vm.name}",
            f"lxc.rootfs.path = dir:{rootfs}",
            "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed",
            "lxc.autodev = 1",
            "lxc.pty.max = 64",  # a devpts of its own: terminals in the desktop need it
            "lxc.apparmor.profile = unconfined",
            f"lxc.mount.entry = {home} home none bind,create=dir 0 0",
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {bridge}",
            f"lxc.net.0.veth.pair = {veth_name(vm.vm_id)}",
            f"lxc.net.0.hwaddr = {mac_for(vm.ip)}",
            *([] if use_dhcp else [f"lxc.net.0.ipv4.address = {vm.ip}/{prefix}",
                               f"lxc.net.0.ipv4.gateway = {gateway}"]),
            "lxc.net.0.flags = up",
            f"lxc.cgroup.memory.limit_in_bytes = {vm.memory}M",
            f"lxc.cgroup.cpu.shares = {self.cfg.get_int('vm.lxc.cpu.shares')}",
            f"lxc.cgroup.cpuset.cpus = {self.cfg.get('vm.lxc.cpuset')}"
            if self.cfg.get("vm.lxc.cpuset") else "",
            f"lxc.cgroup.memory.memsw.limit_in_bytes = {vm.memory}M"
            if os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") else "",
            f"lxc.environment = QVD_VM_ID={vm.vm_id}",
            "lxc.environment = PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "lxc.environment = HOME=/root",
            f"lxc.console.logfile = {os.path.join(self.lxcpath, container(vm.vm_id), 'console.log')}",
            f"lxc.init.cmd = {self.cfg.get('vm.lxc.init')} --address {vm.ip} "
            f"--port {self.vma_port} --x-port {self.x_port} --log /var/log/qvd-vma.log --provision"
            + (" --dhcp" if use_dhcp else ""),
        ]
        if fstab and self.cfg.get_bool("vm.lxc.unionfs.bind.fstab"):
            lines.append(f"lxc.mount.fstab = {fstab}")
        if hooks and self.cfg.get_bool("vm.lxc.hooks.allow"):
            lines += [f"lxc.hook.{name} = {path}" for name, path in sorted(hooks.items())]
        text = "\n".join(line for line in lines if line) + "\n"
        if extra and self.cfg.get_bool("vm.lxc.config.extra"):
            with open(extra, encoding="utf-8") as handle:
                text += f"# from the DI's lxc/config-extra\n{handle.read()}"
        return text

    # --- the interface ---------------------------------------------------------------------
    async def prepare(self, vm: VmSpec) -> VmAddress:
        persistent = self.cfg.get_bool("vm.overlay.persistent")

        def disks():
            network.attach_vm(self.cfg, vm.vm_id, vm.ip)
            base = self.storage.basefs(vm.image)
            root, fstab, extra, hooks = self.storage.layout(base)
            rootfs = self.storage.mount_root(vm.vm_id, root, persistent)
            per_user = self.cfg.get_bool("vm.lxc.home.per.user")
            home = self.storage.home(vm.vm_id, vm.user_id if per_user else None)
            return self.config_text(vm, rootfs, home, fstab, extra, hooks)
        config = await asyncio.to_thread(disks)
        os.makedirs(os.path.dirname(self._config_path(vm.vm_id)), exist_ok=True)
        with open(self._config_path(vm.vm_id), "w", encoding="utf-8") as handle:
            handle.write(config)
        return VmAddress(vm.ip, self.vma_port, self.x_port)

    async def start(self, vm: VmSpec) -> int | None:
        name = container(vm.vm_id)
        log = os.path.join(self.lxcpath, name, "lxc.log")
        if os.path.exists(log):
            os.unlink(log)  # this start's story only
        try:
            await self._lxc("lxc-start", "-n", name, "-d", "-f", self._config_path(vm.vm_id),
                            "-o", log, "-l", "NOTICE")
        except BackendError:
            raise BackendError(f"lxc-start {name}: {first_error(log)}") from None
        network.port_up(self.cfg, veth_name(vm.vm_id), vm.ip)
        pid = await self._lxc("lxc-info", "-n", name, "-p", "-H", check=False)
        return int(pid) if pid.isdigit() else None

    async def state(self, vm_id: int) -> str:
        out = await self._lxc("lxc-info", "-n", container(vm_id), "-s", "-H", check=False)
        return "running" if out.strip() in ("RUNNING", "STARTING", "STOPPING") else "stopped"

    async def stop(self, vm_id: int) -> None:
        # SIGTERM to the container's init (the agent), without waiting here
        await self._lxc("lxc-stop", "-n", container(vm_id), "--nowait", check=False)

    async def kill(self, vm_id: int) -> None:
        await self._lxc("lxc-stop", "-n", container(vm_id), "-k", check=False)

    async def list(self) -> dict[int, VmAddress | None]:
        found: dict[int, VmAddress | None] = {}
        for name in os.listdir(self.lxcpath):
            if name.startswith("qvd-") and name[4:].isdigit():
                vm_id = int(name[4:])
                if await self.state(vm_id) == "running":
                    found[vm_id] = VmAddress(self._ip_of(vm_id), self.vma_port, self.x_port)
        return found

    def _ip_of(self, vm_id: int) -> str:
        with open(self._config_path(vm_id), encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("lxc.net.0.hwaddr"):  # the MAC says the IP (mac_for)
                    return ip_from_mac(line.split("=", 1)[1].strip())
        raise BackendError(f"VM {vm_id}: no MAC in its container config")

    async def release_node(self) -> None:
        await asyncio.to_thread(network.release, self.cfg)

    async def cleanup(self, vm_id: int) -> None:
        if await self.state(vm_id) == "running":
            raise BackendError("the container is still running")
        persistent = self.cfg.get_bool("vm.overlay.persistent")
        await asyncio.to_thread(self.storage.discard, vm_id, persistent)
        config = self._config_path(vm_id)
        if os.path.exists(config):
            os.unlink(config)
        network.detach_vm(self.cfg, vm_id)

    def kill_all(self) -> list[int]:
        killed = []
        for name in os.listdir(self.lxcpath):
            if name.startswith("qvd-") and name[4:].isdigit():
                done = subprocess.run(["lxc-stop", "-n", name, "-P", self.lxcpath, "-k"],
                                      capture_output=True)
                if done.returncode == 0:
                    killed.append(int(name[4:]))
        return killed
