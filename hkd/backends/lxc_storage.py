"""Disks of LXC desktops under path.storage.root (QVD-REFERENCE §4):

  images/<di>          the DI tarballs (the image store)
  basefs/<di>/         each DI unpacked once per node, under a lock, renamed into place whole
  overlayfs/<vm>/      the VM's writable layer (upper + work), gone at stop unless persistent
  rootfs/<vm>/         where the VM's root is mounted (overlay of basefs and its upper layer)
  homefs/<vm>/         the VM's persistent home, bind-mounted at /home
  homefs/user-<id>/    ... or the user's, shared by all their VMs (vm.lxc.home.per.user)

A DI is "basic" (the tarball is the root) or "extended" (rootfs/, lxc/fstab, lxc/config-extra,
hooks/): the extended parts are used only when their vm.lxc.* flag allows.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tarfile

from .base import BackendError


# an extended DI's hooks/<name> becomes lxc.hook.<name> (when vm.lxc.hooks.allow)
LXC_HOOKS = ("pre-start", "pre-mount", "mount", "start", "stop", "post-stop")


class Storage:
    def __init__(self, root: str):
        self.root = root
        for part in ("basefs", "overlayfs", "rootfs", "homefs"):
            os.makedirs(os.path.join(root, part), exist_ok=True)

    def path(self, part: str, name) -> str:
        return os.path.join(self.root, part, str(name))

    # --- images --------------------------------------------------------------------------------
    def basefs(self, image: str) -> str:
        """The DI unpacked; done once per node even when VMs start at the same time."""
        name = os.path.basename(image)
        target = self.path("basefs", name)
        if os.path.isdir(target):
            return target
        if not os.path.isfile(image):
            raise BackendError(f"image {image} not found on this node")
        with open(target + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.isdir(target):
                return target
            partial = target + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
            try:
                with tarfile.open(image) as tar:
                    tar.extractall(partial, filter=_rootfs_filter, numeric_owner=True)
            except (tarfile.TarError, OSError) as exc:
                shutil.rmtree(partial, ignore_errors=True)
                raise BackendError(f"image {name} cannot be unpacked: {exc}") from None
            os.rename(partial, target)
        return target

    @staticmethod
    def layout(basefs: str) -> tuple[str, str | None, str | None, dict[str, str]]:
        """(root directory, lxc/fstab or None, lxc/config-extra or None, hooks by LXC hook
        type) of an unpacked DI."""
        if not os.path.isdir(os.path.join(basefs, "rootfs")):
            return basefs, None, None, {}
        extra = [os.path.join(basefs, "lxc", n) for n in ("fstab", "config-extra")]
        hooks_dir = os.path.join(basefs, "hooks")
        hooks = {name: os.path.join(hooks_dir, name) for name in LXC_HOOKS
                 if os.access(os.path.join(hooks_dir, name), os.X_OK)}
        return (os.path.join(basefs, "rootfs"),
                *(p if os.path.isfile(p) else None for p in extra), hooks)

    # --- the VM's root and home ----------------------------------------------------------------
    def mount_root(self, vm_id: int, lower: str, persistent: bool) -> str:
        overlay = self.path("overlayfs", vm_id)
        rootfs = self.path("rootfs", vm_id)
        self.unmount_root(vm_id)
        if not persistent:
            shutil.rmtree(overlay, ignore_errors=True)
        for part in ("upper", "work"):
            os.makedirs(os.path.join(overlay, part), exist_ok=True)
        os.makedirs(rootfs, exist_ok=True)
        _run(["mount", "-t", "overlay", f"qvd-vm-{vm_id}", "-o",
              f"lowerdir={lower},upperdir={overlay}/upper,workdir={overlay}/work", rootfs])
        return rootfs

    def home(self, vm_id: int, user_id: int | None = None) -> str:
        """The VM's home volume, or its user's when user_id is given."""
        home = self.path("homefs", f"user-{user_id}" if user_id is not None else vm_id)
        os.makedirs(home, exist_ok=True)
        return home

    def unmount_root(self, vm_id: int) -> None:
        """Unmount everything under the VM's root, deepest first."""
        rootfs = self.path("rootfs", vm_id)
        for mount_point in sorted(mounts_under(rootfs), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount_point], capture_output=True)

    def discard(self, vm_id: int, persistent: bool) -> None:
        self.unmount_root(vm_id)
        if mounts_under(self.path("rootfs", vm_id)):
            raise BackendError(f"VM {vm_id}: its root filesystem is still mounted")
        shutil.rmtree(self.path("rootfs", vm_id), ignore_errors=True)
        if not persistent:
            shutil.rmtree(self.path("overlayfs", vm_id), ignore_errors=True)


def _rootfs_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """tarfile's "tar" safety checks (nothing outside the target, no absolute links) but the
    modes kept: a root filesystem needs its sticky /tmp and its setuid binaries."""
    checked = tarfile.tar_filter(member, path)
    return checked.replace(mode=member.mode, deep=False) if checked is not None else None


def mounts_under(path: str) -> list[str]:
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[1].replace("\\040", " ")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return found


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackendError(f"{' '.join(command[:3])}: {done.stderr.strip() or done.returncode}")
