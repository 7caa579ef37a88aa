"""`python netns_machine.py NETNS STAGING COMMAND...`: COMMAND exec'd (same pid) as on a
machine of its own: inside network namespace NETNS (/run/netns/NETNS), in a mount namespace of
its own (slave of this one: it sees the machine's mounts, its own stay its own) whose /sys is
a sysfs of NETNS, with the mounts under /sys (the cgroup hierarchies) bound in again.

`ip netns exec` would do the first two but drops /sys/fs/cgroup, which LXC needs; LXC finds a
bridge by /sys/class/net/<bridge>, so the sysfs must be the namespace's. STAGING is an empty
directory the caller owns (bind mounts pass through it, in the new namespace only)."""
import ctypes
import os
import sys

CLONE_NEWNET, CLONE_NEWNS = 0x40000000, 0x00020000
MS_BIND, MS_REC, MS_SLAVE, MNT_DETACH = 0x1000, 0x4000, 1 << 19, 2
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source, target, fstype, flags) -> None:
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), None), f"mount {target}")


def _top_mounts_under(path: str) -> list[str]:
    """Mount points directly under path's own mount (their own submounts follow by MS_REC)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(path + "/"):
                points.append(point)
    return [p for p in points if not any(p.startswith(q + "/") for q in points if q != p)]


def enter(netns: str, staging: str) -> None:
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
    finally:
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_SLAVE)  # nothing done here reaches the machine
    kept = []
    for number, point in enumerate(_top_mounts_under("/sys")):
        held = os.path.join(staging, str(number))
        os.makedirs(held, exist_ok=True)
        _mount(point, held, None, MS_BIND | MS_REC)
        kept.append((held, point))
    _mount("sysfs", "/sys", "sysfs", 0)  # over the machine's: this namespace's links
    for held, point in kept:
        _mount(held, point, None, MS_BIND | MS_REC)
        _check(_libc.umount2(held.encode(), MNT_DETACH), f"umount {held}")


if __name__ == "__main__":
    enter(sys.argv[1], sys.argv[2])
    os.execvp(sys.argv[3], sys.argv[3:])
