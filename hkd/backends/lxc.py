"""The `lxc` backend: each VM is an LXC container (Debian's lxc: lxc-start, lxc-stop, lxc-info
with a generated config), root = overlay of the DI, /home = the VM's persistent home, a veth
on the VM bridge, memory, CPU and processes limited through the container's cgroup.

Containers are unprivileged unless vm.lxc.privileged says otherwise: a user namespace on the
node's id range (idmap.py), LXC's common configuration (its seccomp filter and device
allow-list), the capabilities below dropped, an AppArmor profile where AppArmor runs, and
nodev/nosuid storage mounts. The agent gets the node's secret for this run as a read-only
file only the container's root may read (/run/qvd-vma.secret).

Containers are named qvd-<vm id> and live under <storage>/lxc: a restarted HKD (or the
watchdog) finds them there. The agent (qvd-vma) runs inside, on the VM's own address.
"""
from __future__ import annotations

import asyncio
import os
import subprocess

from qvd.vma import secret

from . import bridge as network
from . import lxc_cgroup, lxc_extra
from .base import Backend, BackendError, VmAddress, VmSpec
from .bridge import ip_from_mac, mac_for, veth_name
from .idmap import IdMap, unreachable_parent
from .lxc_storage import Storage

COMMON_CONFIG = "/usr/share/lxc/config/common.conf"  # seccomp, device allow-list, cap drops
# on top of common.conf's: what a desktop never needs and a breakout would
DROPPED_CAPS = ("sys_admin sys_module sys_time mknod sys_rawio mac_admin mac_override sys_boot "
                "sys_pacct sys_ptrace sys_resource syslog wake_alarm audit_control "
                "audit_read block_suspend lease linux_immutable")
SECRET_IN_VM = "/run/qvd-vma.secret"
KILL_PARALLEL = 8  # lxc-stop -k run at once by kill_all (the watchdog, fencing)


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled", encoding="ascii") as handle:
            return handle.read().strip() == "Y"
    except OSError:
        return False

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
        os.chmod(self.lxcpath, 0o711)
        self.vma_port = cfg.get_int("internal.vm.port.vma")
        self.x_port = cfg.get_int("internal.vm.port.x")
        try:
            self.idmap = IdMap.from_config(cfg)
        except ValueError as exc:
            raise BackendError(str(exc)) from None

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

    def _secret_path(self, vm_id: int) -> str:
        return os.path.join(self.lxcpath, container(vm_id), "vma.secret")

    def config_text(self, vm: VmSpec, rootfs: str, home: str, fstab: str | None,
                    extra: str | None, hooks: dict[str, str] | None = None) -> str:
        cfg = self.cfg
        bridge, prefix, gateway = network.plan(cfg)
        use_dhcp = cfg.get_bool("vm.network.use_dhcp")
        if not os.path.exists(COMMON_CONFIG):
            raise BackendError(f"{COMMON_CONFIG} is missing: is Debian's lxc installed?")
        lines = [
            f"lxc.include = {COMMON_CONFIG}",
            *(self.idmap.lxc_lines() if self.idmap else []),
            f"lxc.uts.name = {vm.name}",
            f"lxc.rootfs.path = dir:{rootfs}",
            "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed",
            "lxc.autodev = 1",
            "lxc.pty.max = 64",  # a devpts of its own: terminals in the desktop need it
            f"lxc.apparmor.profile = {'generated' if apparmor_enabled() else 'unconfined'}",
            f"lxc.cap.drop = {DROPPED_CAPS}",
            f"lxc.mount.entry = {home} home none bind,create=dir,nodev,nosuid 0 0",
            f"lxc.mount.entry = {self._secret_path(vm.vm_id)} {SECRET_IN_VM.lstrip('/')} none "
            "bind,ro,create=file,nodev,nosuid,noexec 0 0",
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {bridge}",
            f"lxc.net.0.veth.pair = {veth_name(vm.vm_id)}",
            f"lxc.net.0.hwaddr = {mac_for(vm.ip)}",
            *([] if use_dhcp else [f"lxc.net.0.ipv4.address = {vm.ip}/{prefix}",
                               f"lxc.net.0.ipv4.gateway = {gateway}"]),
            "lxc.net.0.flags = up",
            *lxc_cgroup.limit_lines(vm.memory, cfg.get_int("vm.lxc.cpu.shares"),
                                    cfg.get("vm.lxc.cpuset"), cfg.get_int("vm.lxc.pids.max")),
            f"lxc.environment = QVD_VM_ID={vm.vm_id}",
            "lxc.environment = PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "lxc.environment = HOME=/root",
            f"lxc.console.logfile = {os.path.join(self.lxcpath, container(vm.vm_id), 'console.log')}",
            f"lxc.init.cmd = {cfg.get('vm.lxc.init')} --address {vm.ip} "
            f"--port {self.vma_port} --x-port {self.x_port} --secret-file {SECRET_IN_VM} "
            "--log /var/log/qvd-vma.log --provision" + (" --dhcp" if use_dhcp else ""),
        ]
        # An extended DI's own parts: off unless the admin allows them, and unless the image
        # is trusted, checked (no hooks, no host paths: lxc_extra).
        if fstab and cfg.get_bool("vm.lxc.unionfs.bind.fstab"):
            checked = fstab if vm.image_trusted else \
                lxc_extra.checked_fstab(fstab, cfg.get("path.storage.root"))
            lines.append(f"lxc.mount.fstab = {checked}")
        if hooks and cfg.get_bool("vm.lxc.hooks.allow"):
            if not vm.image_trusted:
                raise BackendError("the DI has hooks, which run as root on the node: only a "
                                   "trusted DI's may (qvd-admin di add ... trusted=1)")
            lines += [f"lxc.hook.{name} = {path}" for name, path in sorted(hooks.items())]
        text = "\n".join(line for line in lines if line) + "\n"
        if extra and cfg.get_bool("vm.lxc.config.extra"):
            if vm.image_trusted:
                with open(extra, encoding="utf-8") as handle:
                    added = handle.read()
            else:
                added = lxc_extra.checked_config_extra(extra)
            text += f"# from the DI's lxc/config-extra\n{added}"
        return text

    # --- the interface ---------------------------------------------------------------------
    async def prepare(self, vm: VmSpec) -> VmAddress:
        persistent = self.cfg.get_bool("vm.overlay.persistent")
        closed = self.idmap and unreachable_parent(self.lxcpath)
        if closed:
            raise BackendError(f"unprivileged containers cannot reach their storage: {closed} "
                               "is closed to other users (chmod o+x it, or choose another "
                               "path.storage.root)")

        shift = self.idmap.base if self.idmap else 0

        def disks():
            network.attach_vm(self.cfg, vm.vm_id, vm.ip, veth_name(vm.vm_id))
            base = self.storage.basefs(
                vm.image, trusted=vm.image_trusted, shift=shift,
                max_bytes=self.cfg.get_int("vm.lxc.image.max_size") * 1024 * 1024)
            root, fstab, extra, hooks = self.storage.layout(base)
            rootfs = self.storage.mount_root(vm.vm_id, root, persistent, owner=shift)
            per_user = self.cfg.get_bool("vm.lxc.home.per.user")
            home = self.storage.home(vm.vm_id, vm.user_id if per_user else None)
            if self.idmap and os.stat(home).st_uid != shift:
                self.idmap.shift_tree(home)  # made by a privileged node: the same home, shifted
            return self.config_text(vm, rootfs, home, fstab, extra, hooks)
        config = await asyncio.to_thread(disks)
        # the container's root passes through to its secret (bind-mounted from here)
        os.makedirs(os.path.dirname(self._config_path(vm.vm_id)), mode=0o711, exist_ok=True)
        with open(self._config_path(vm.vm_id), "w", encoding="utf-8") as handle:
            handle.write(config)
        secret.write_file(self._secret_path(vm.vm_id), vm.vma_secret, shift, shift)
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
        refused = await asyncio.to_thread(lxc_cgroup.memory_applied, name, self.lxcpath,
                                          vm.memory)
        if refused:
            await self.kill(vm.vm_id)
            raise BackendError(f"container {name} not started: {refused}")
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
        for path in (self._config_path(vm_id), self._secret_path(vm_id)):
            if os.path.exists(path):
                os.unlink(path)
        network.detach_vm(self.cfg, vm_id)

    async def discard_home(self, vm_id: int) -> None:
        await asyncio.to_thread(self.storage.discard_home, vm_id)

    def kill_all(self) -> list[int]:
        """lxc-stop -k of every container, KILL_PARALLEL at a time: hundreds must be gone well
        inside the margin between the fence and the node timeout."""
        from concurrent.futures import ThreadPoolExecutor
        names = [n for n in os.listdir(self.lxcpath) if n.startswith("qvd-") and n[4:].isdigit()]

        def kill(name: str) -> int | None:
            done = subprocess.run(["lxc-stop", "-n", name, "-P", self.lxcpath, "-k"],
                                  capture_output=True)
            return int(name[4:]) if done.returncode == 0 else None
        with ThreadPoolExecutor(max_workers=KILL_PARALLEL) as pool:
            return sorted(vm for vm in pool.map(kill, names) if vm is not None)
