"""Disks of LXC desktops under path.storage.root (QVD-REFERENCE §4):

  images/<di>          the DI tarballs (the image store)
  basefs/<di>/         each DI unpacked once per node, under a lock, renamed into place whole,
                       checked member by member (_Unpacker: nothing lands outside it)
  basefs/<di>@<shift>/ ... for unprivileged containers: every owner shifted by <shift>
  overlayfs/<vm>/      the VM's writable layer (upper + work), gone at stop unless persistent
  rootfs/<vm>/         where the VM's root is mounted (overlay of basefs and its upper layer)
  homefs/<vm>/         the VM's persistent home, bind-mounted at /home
  homefs/user-<id>/    ... or the user's, shared by all their VMs (vm.lxc.home.per.user)

A DI is "basic" (the tarball is the root) or "extended" (rootfs/, lxc/fstab, lxc/config-extra,
hooks/): the extended parts are used only when their vm.lxc.* flag allows, and unless the DI is
trusted, only once lxc_extra.py has checked them.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import stat
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
            # nobody lists them; an unprivileged container's root must pass through them
            os.chmod(os.path.join(root, part), 0o711)

    def path(self, part: str, name) -> str:
        return os.path.join(self.root, part, str(name))

    # --- images --------------------------------------------------------------------------------
    def basefs(self, image: str, trusted: bool = False, shift: int = 0,
               max_bytes: int | None = None) -> str:
        """The DI unpacked; done once per node even when VMs start at the same time (under a
        lock, into <target>.partial, renamed into place whole).

        Every member is checked just before it is written (_Unpacker says what is refused and
        why); a refused image leaves nothing behind. `shift` is added to every owner and group
        (an unprivileged container's root is host uid `shift`), and each shift has its own
        tree, basefs/<di> for 0 and basefs/<di>@<shift> otherwise, so privileged and
        unprivileged copies never mix. `max_bytes` caps what the image unpacks to.
        """
        name = os.path.basename(image)
        target = self.path("basefs", name if not shift else f"{name}@{shift}")
        if os.path.isdir(target):
            return target
        if not os.path.isfile(image):
            raise BackendError(f"image {image} not found on this node")
        lock = os.open(target + ".lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.isdir(target):
                return target
            partial = target + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            os.mkdir(partial, 0o700)  # closed while it fills; the image's own root mode after
            unpacker = _Unpacker(partial, trusted, shift, max_bytes)
            try:
                os.chown(partial, shift, shift)
                with tarfile.open(image) as tar:
                    tar.errorlevel = 2  # every extraction problem is an error, none a warning
                    tar.extractall(partial, filter=unpacker, numeric_owner=True)
                if not unpacker.root_seen:
                    os.chmod(partial, 0o755)
            except BaseException as exc:
                shutil.rmtree(partial, ignore_errors=True)
                if isinstance(exc, Refused):
                    raise BackendError(f"DI {name} refused: {exc}") from None
                if isinstance(exc, Exception):
                    raise BackendError(f"image {name} cannot be unpacked: {exc}") from None
                raise
            os.rename(partial, target)
        finally:
            os.close(lock)
        return target

    @staticmethod
    def layout(basefs: str) -> tuple[str, str | None, str | None, dict[str, str]]:
        """(root directory, lxc/fstab or None, lxc/config-extra or None, hooks by LXC hook
        type) of an unpacked DI. The node reads these parts itself, so none of them (nor the
        directories holding them) may be a symbolic link: one would make it read, mount or
        run a file of the node's."""
        root = os.path.join(basefs, "rootfs")
        if _kind(root) != "dir":
            return basefs, None, None, {}
        extra = [_part(basefs, "lxc", n) for n in ("fstab", "config-extra")]
        hooks = {}
        for name in LXC_HOOKS:
            path = _part(basefs, "hooks", name)
            if path and os.access(path, os.X_OK):
                hooks[name] = path
        return root, *extra, hooks

    # --- the VM's root and home ----------------------------------------------------------------
    def mount_root(self, vm_id: int, lower: str, persistent: bool, owner: int = 0) -> str:
        """The VM's root: its overlay on the DI, nodev and nosuid, its upper layer owned by
        `owner` (the container's root as the node sees it)."""
        overlay = self.path("overlayfs", vm_id)
        rootfs = self.path("rootfs", vm_id)
        self.unmount_root(vm_id)
        if not persistent:
            shutil.rmtree(overlay, ignore_errors=True)
        os.makedirs(overlay, mode=0o700, exist_ok=True)
        for part in ("upper", "work"):
            os.makedirs(os.path.join(overlay, part), exist_ok=True)
            os.chown(os.path.join(overlay, part), owner, owner)
        os.makedirs(rootfs, exist_ok=True)
        _run(["mount", "-t", "overlay", f"qvd-vm-{vm_id}", "-o",
              f"lowerdir={lower},upperdir={overlay}/upper,workdir={overlay}/work,nodev,nosuid",
              rootfs])
        return rootfs

    def home(self, vm_id: int, user_id: int | None = None) -> str:
        """The VM's home volume, or its user's when user_id is given."""
        home = self.path("homefs", f"user-{user_id}" if user_id is not None else vm_id)
        os.makedirs(home, exist_ok=True)
        os.chmod(home, 0o711)  # the container's /home: enter, not list
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

    def discard_home(self, vm_id: int) -> None:
        """The VM's own home and kept overlay (a per-user home is its user's: it stays).
        Whatever cannot be removed is an error (BackendError), never skipped: the caller then
        keeps the VM's discard_home flag, and no next user gets a home only half emptied."""
        for path in (self.path("homefs", vm_id), self.path("overlayfs", vm_id)):
            try:
                if os.path.lexists(path):
                    shutil.rmtree(path)
            except OSError as exc:
                raise BackendError(f"VM {vm_id}: the previous user's files cannot be "
                                   f"discarded: {exc}") from None


class Refused(Exception):
    """A member of a DI's tarball breaks the unpacking rules; the message names it and why."""


def _kind(path: str) -> str | None:
    """What is at path, links not followed: None, 'dir', 'file', 'link' or 'other'."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    return ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode)
            else "link" if stat.S_ISLNK(mode) else "other")


def _part(basefs: str, directory: str, name: str) -> str | None:
    """basefs/directory/name when it is a regular file, None when absent; BackendError when
    it, or its directory, is a link or something else."""
    folder, path = os.path.join(basefs, directory), os.path.join(basefs, directory, name)
    if _kind(folder) is None:
        return None
    if _kind(folder) != "dir":
        raise BackendError(f"the DI's {directory} is not a directory (a symbolic link?): "
                           "its extended parts must be plain files")
    kind = _kind(path)
    if kind not in (None, "file"):
        raise BackendError(f"the DI's {directory}/{name} is not a regular file "
                           "(a symbolic link?): its extended parts must be plain files")
    return path if kind == "file" else None


def _size(count: int) -> str:
    return f"{count / 1048576:g} MiB" if count >= 1048576 else f"{count} bytes"


class _Unpacker:
    """The tar filter of Storage.basefs. tarfile.extractall calls it for one member at a time,
    just before writing that member, so each check sees what the earlier members made.

    Refused (Refused, naming the member and the reason):
    - absolute member names and names with a '..' component: they would leave the tree;
    - a member whose parent on disk is a symbolic link (a link `etc -> /etc` followed by
      `etc/passwd` would write the node's /etc/passwd), or which replaces anything an earlier
      member made (a file written over a link follows it), except a directory met again;
    - hard links whose target is absolute, has '..', lies behind a symbolic link, or is not a
      regular file the image already holds: a hard link shares the inode, so one to a node's
      file (or to a link to one) would hand it to the container, and the link's mode and owner
      would be applied to it;
    - character and block devices, and setuid/setgid bits on anything but a directory
      (setgid directories, like Debian's /var/mail, only pass their group on), unless trusted;
    - more than max_bytes (each member's 512-byte header and its data, as tar counts them).

    Symbolic links may point anywhere, absolute targets included: they are created, never
    followed (no member is written through one, nothing is resolved with realpath), and in the
    container an absolute target (`/etc/localtime -> /usr/share/zoneinfo/UTC`) resolves in the
    container's root, where a real root filesystem needs it to. FIFOs are harmless and kept.
    Modes are kept (a root filesystem needs its sticky /tmp) except that the image's root is
    never group- or world-writable; directories the archive implies but does not hold are made
    0755. Every owner and group is shifted by `shift`.
    """
    ID_LIMIT = 2 ** 32 - 2  # (uid_t) -1 means "unchanged"

    def __init__(self, root: str, trusted: bool, shift: int, max_bytes: int | None):
        self.root, self.trusted, self.shift, self.max_bytes = root, trusted, shift, max_bytes
        self.used = 0
        self.root_seen = False

    def __call__(self, member: tarfile.TarInfo, _path: str) -> tarfile.TarInfo:
        shown = _shown(member.name)
        parts = _components(member.name, f"member '{shown}'")
        changes: dict = {"name": "/".join(parts) or "."}
        self.used += 512 + (member.size if member.isreg() else 0)
        if self.max_bytes is not None and self.used > self.max_bytes:
            raise Refused(f"it unpacks to more than {_size(self.max_bytes)} "
                          "(vm.lxc.image.max_size)")
        if member.ischr() or member.isblk():
            if not self.trusted:
                raise Refused(f"member '{shown}' is a "
                              f"{'character' if member.ischr() else 'block'} device: only a "
                              "trusted DI may carry device nodes")
        if member.mode & 0o6000 and not member.isdir() and not self.trusted:
            raise Refused(f"member '{shown}' is setuid/setgid (mode {member.mode:o}): only a "
                          "trusted DI may carry such files")
        if not parts:  # the image's root: it must stay a directory, closed to writers
            if not member.isdir():
                raise Refused(f"member '{shown}' would replace the image's root")
            self.root_seen = True
            changes["mode"] = member.mode & ~0o022
        else:
            self._parents(parts, shown)
            existing = _kind(os.path.join(self.root, *parts))
            if existing is not None and not (member.isdir() and existing == "dir"):
                raise Refused(f"member '{shown}' comes twice: it would replace what an earlier "
                              "member made")
        if member.islnk():
            changes["linkname"] = self._hard_link_target(member, shown)
        uid, gid = member.uid + self.shift, member.gid + self.shift
        if max(uid, gid) > self.ID_LIMIT:
            raise Refused(f"member '{shown}' has an owner or group that cannot be shifted by "
                          f"{self.shift}")
        return member.replace(uid=uid, gid=gid, deep=False, **changes)

    def _parents(self, parts: list[str], shown: str) -> None:
        """The member's directories: real ones, never links; missing ones made 0755."""
        current = self.root
        for depth, part in enumerate(parts[:-1], 1):
            current = os.path.join(current, part)
            kind = _kind(current)
            if kind is None:
                os.mkdir(current, 0o755)
                os.chmod(current, 0o755)  # whatever the umask
                os.chown(current, self.shift, self.shift)
            elif kind == "link":
                raise Refused(f"member '{shown}' would be written through the symbolic link "
                              f"'{'/'.join(parts[:depth])}'")
            elif kind != "dir":
                raise Refused(f"member '{shown}' would be written under "
                              f"'{'/'.join(parts[:depth])}', which is not a directory")

    def _hard_link_target(self, member: tarfile.TarInfo, shown: str) -> str:
        target = _shown(member.linkname)
        parts = _components(member.linkname, f"member '{shown}' (a hard link to '{target}')")
        if not parts:
            raise Refused(f"member '{shown}' is a hard link to the image's root")
        current = self.root
        for depth, part in enumerate(parts, 1):
            current = os.path.join(current, part)
            if _kind(current) != ("file" if depth == len(parts) else "dir"):
                raise Refused(f"member '{shown}' is a hard link to '{target}', which is not a "
                              "regular file the image holds before it (links are never "
                              "followed)")
        return "/".join(parts)


def _components(name: str, what: str) -> list[str]:
    """A member name as its path components; absolute names and '..' are refused."""
    if name.startswith("/"):
        raise Refused(f"{what} has an absolute path: an image's members are relative to its "
                      "root")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused(f"{what} has '..' in its path: it would leave the image")
    return parts


def _shown(name: str) -> str:
    """A member name as one printable line for an error message."""
    text = name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 120 else text[:120] + "..."


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
