"""An untrusted extended DI's lxc/config-extra and lxc/fstab, checked before they reach the
container's configuration (both are off unless vm.lxc.config.extra / vm.lxc.unionfs.bind.fstab;
a trusted DI's are used as they are).

LXC reads both as root on the node, so a DI could otherwise run commands there (lxc.hook.*),
pull in other files (lxc.include), undo the isolation (lxc.idmap, lxc.apparmor.*,
lxc.seccomp.*, lxc.cap.*, lxc.cgroup*.devices.*, lxc.autodev, lxc.mount.auto), move the root
(lxc.rootfs.*), change what runs as init (lxc.init.*), touch the network (lxc.net.*), write
node files (lxc.log.*, lxc.console.*), lift the limits the node sets, or bind-mount the node's
files into the desktop. An allow-list, so keys LXC adds later are refused too:

  lxc.environment = NAME=VALUE   (never NAME alone, which passes the node's own variable in,
                                  nor QVD_*, the node's to set)
  lxc.cgroup2.cpu.max, .io.max, .memory.high and lxc.cgroup.cpu.cfs_quota_us,
  .cpu.cfs_period_us, .memory.soft_limit_in_bytes, .blkio.throttle.*
                                 (limits that can only restrict: the node's own memory, swap,
                                  pids, CPU weight and cpuset lines cannot be overridden)
  lxc.prlimit.<resource>         (rlimits of the container's processes, but not rtprio,
                                  rttime or nice: real-time scheduling would starve the node)
  lxc.sysctl.net.*               (namespaced to the container's network)
  lxc.mount.entry                (the mount rules below)

Mounts (lxc.mount.entry lines and lxc/fstab entries): `source target type options [dump
[pass]]`. The target must be relative, without '..': LXC mounts relative targets under the
container's root (an absolute one is a node path, used only if it happens to lie under the
root's mount point and otherwise ignored, so it is refused rather than guessed at). The
options must hold nodev and nosuid (mount's defaults are dev and suid) and never dev, suid or
remount. The source is either a pseudo file system (type tmpfs or mqueue, a source that is not
a path) or, in lxc/fstab only, a bind mount (type none, option bind or rbind) of a directory
or file inside path.storage.root (after realpath) but outside the node's own parts there
(images, basefs, overlayfs, rootfs, homefs, lxc: other desktops' disks and secrets). proc and
sysfs are refused: a second proc or sysfs would not be LXC's read-only mixed one, and would
hand a privileged container the node's /proc/sys.
"""
from __future__ import annotations

import os
import re

from .base import BackendError

EXACT_KEYS = {
    "lxc.environment", "lxc.mount.entry",
    "lxc.cgroup2.cpu.max", "lxc.cgroup2.io.max", "lxc.cgroup2.memory.high",
    "lxc.cgroup.cpu.cfs_quota_us", "lxc.cgroup.cpu.cfs_period_us",
    "lxc.cgroup.memory.soft_limit_in_bytes",
}
PREFIX_KEYS = ("lxc.cgroup.blkio.throttle.", "lxc.sysctl.net.")
PRLIMITS = {"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nofile",
            "nproc", "sigpending", "stack"}
# why the commonest refusals matter (the rest are "not on the allow-list")
REASONS = {
    "lxc.hook.": "hooks run as root on the node",
    "lxc.include": "it would read another file of the node's",
    "lxc.idmap": "it would change the container's user namespace",
    "lxc.apparmor.": "it would change the container's AppArmor confinement",
    "lxc.seccomp.": "it would change the container's system call filter",
    "lxc.cap.": "it would change the container's capabilities",
    "lxc.rootfs.": "it would change the container's root",
    "lxc.init.": "it would change what runs as the container's init",
    "lxc.net.": "the node configures the container's network",
    "lxc.mount.auto": "it would mount the node's proc, sys or cgroups differently",
    "lxc.mount.fstab": "lxc/fstab is the DI's place for mounts",
    "lxc.autodev": "it would change the container's /dev",
    "lxc.cgroup.devices.": "it would open devices of the node",
    "lxc.cgroup2.devices.": "it would open devices of the node",
    "lxc.cgroup": "the node sets the container's limits",
    "lxc.prlimit.": "real-time scheduling and priorities would starve the node",
    "lxc.log.": "it would write a file of the node's",
    "lxc.console.": "it would write a file of the node's",
}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PSEUDO_TYPES = {"tmpfs", "mqueue"}
REFUSED_OPTIONS = {"dev", "suid", "remount"}
REQUIRED_OPTIONS = ("nodev", "nosuid")
NODE_PARTS = ("images", "basefs", "overlayfs", "rootfs", "homefs", "lxc")


def _read(path: str, what: str) -> str:
    """The file's text; a symbolic link is refused (it would read a file of the node's)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise BackendError(f"the DI's {what} cannot be read ({exc.strerror}): "
                           "it must be a plain file") from None
    try:
        with open(fd, encoding="utf-8", newline="") as handle:  # line ends as LXC sees them
            return handle.read()
    except UnicodeDecodeError:
        raise BackendError(f"the DI's {what} is not UTF-8 text") from None


def _lines(text: str, what: str):
    """(number, stripped line) of the lines that are not blank or comments. Lines end at
    '\n' only, as LXC reads them; any other control character is refused, so what is checked
    here is what LXC sees."""
    for number, line in enumerate(text.split("\n"), 1):
        if any(not ch.isprintable() and ch != "\t" for ch in line):
            raise BackendError(f"the DI's {what}, line {number}: a control character")
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped


def _shown(text: str) -> str:
    text = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 80 else text[:80] + "..."


def _key_allowed(key: str) -> bool:
    if key in EXACT_KEYS or key.startswith(PREFIX_KEYS):
        return True
    return key.startswith("lxc.prlimit.") and key[len("lxc.prlimit."):] in PRLIMITS


def _refusal(key: str) -> str:
    for prefix, reason in REASONS.items():
        if key.startswith(prefix):
            return reason
    return "not on the allow-list (hkd/backends/lxc_extra.py)"


def checked_config_extra(path: str) -> str:
    """The text of an untrusted DI's lxc/config-extra, when every line is a comment, blank,
    or `key = value` with an allowed key and value; BackendError naming the line otherwise."""
    text = _read(path, "lxc/config-extra")
    for number, stripped in _lines(text, "lxc/config-extra"):
        where = f"the DI's lxc/config-extra, line {number}"
        key, sep, value = stripped.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.startswith("lxc."):
            raise BackendError(f"{where}: expected `lxc.KEY = VALUE`, got '{_shown(stripped)}'")
        if not _key_allowed(key):
            raise BackendError(f"{where}: {_shown(key)} is refused for an untrusted DI "
                               f"({_refusal(key)})")
        if key == "lxc.environment":
            name, equals, _ = value.partition("=")
            if not equals or not ENV_NAME.fullmatch(name):
                raise BackendError(f"{where}: lxc.environment must be NAME=VALUE (a NAME alone "
                                   "would pass the node's own variable in)")
            if name.startswith("QVD_"):
                raise BackendError(f"{where}: {name} is the node's to set")
        elif key == "lxc.mount.entry":
            problem = _mount_problem(value.split(), None)
            if problem:
                raise BackendError(f"{where}: lxc.mount.entry {problem}")
    return text if text.endswith("\n") or not text else text + "\n"


def checked_fstab(path: str, storage_root: str) -> str:
    """The path of an untrusted DI's lxc/fstab, when every entry follows the mount rules
    (module docstring); BackendError naming the line otherwise."""
    text = _read(path, "lxc/fstab")
    for number, stripped in _lines(text, "lxc/fstab"):
        problem = _mount_problem(stripped.split(), storage_root)
        if problem:
            raise BackendError(f"the DI's lxc/fstab, line {number}: {problem}")
    return path


def _unescape(field: str) -> str:
    """fstab's octal escapes (\\040 is a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_problem(fields: list[str], storage_root: str | None) -> str | None:
    """Why a mount entry is refused, or None. storage_root None: no bind mounts at all."""
    if not 4 <= len(fields) <= 6:
        return (f"'{_shown(' '.join(fields))}' is not `source target type options "
                "[dump [pass]]`")
    source, target, fstype = (_unescape(f) for f in fields[:3])
    options = [o.strip() for o in _unescape(fields[3]).split(",")]
    if target.startswith("/"):
        return (f"target '{_shown(target)}' is absolute: give it relative to the "
                "container's root")
    if ".." in target.split("/"):
        return f"target '{_shown(target)}' has '..': it would leave the container"
    refused = sorted(REFUSED_OPTIONS.intersection(options))
    if refused:
        return f"option '{refused[0]}' is refused for an untrusted DI"
    missing = [o for o in REQUIRED_OPTIONS if o not in options]
    if missing:
        return f"'{_shown(target)}' must be mounted {','.join(REQUIRED_OPTIONS)}"
    binding = "bind" in options or "rbind" in options
    if fstype in PSEUDO_TYPES and not binding:
        if "/" in source:
            return f"source '{_shown(source)}' of a {fstype} mount must be a name, not a path"
        return None
    if not binding or fstype != "none":
        return (f"file system type '{_shown(fstype)}' is refused for an untrusted DI "
                f"(allowed: {', '.join(sorted(PSEUDO_TYPES))}"
                + (", and bind mounts of type none" if storage_root else "") + ")")
    if storage_root is None:
        return "bind mounts are refused here (lxc/fstab may bind paths of path.storage.root)"
    return _bind_source_problem(source, storage_root)


def _bind_source_problem(source: str, storage_root: str) -> str | None:
    if not source.startswith("/"):
        return (f"bind source '{_shown(source)}' must be an absolute path inside "
                "path.storage.root")
    root = os.path.realpath(storage_root)
    real = os.path.realpath(source)
    if os.path.commonpath([root, real]) != root or real == root:
        return (f"bind source '{_shown(source)}' is not inside path.storage.root "
                f"({storage_root}): an untrusted DI may not mount the node's files")
    part = os.path.relpath(real, root).split(os.sep)[0]
    if part in NODE_PARTS:
        return (f"bind source '{_shown(source)}' is the node's own {part}/ (other desktops' "
                "disks and secrets)")
    return None
