"""Build a desktop image (DI) for the LXC backend out of this machine itself, for tests and
demos: an extended-layout tarball whose lxc/fstab bind-mounts the host's /usr read-only, so
Python, Xvnc and xterm inside are the host's, with a copy of the agent (it needs nothing but
Python's standard library) run by the system's python3 as AGENT.

    .venv/bin/python -m qvd.hkd.backends.host_di /tmp/host-di.tar
    qvd-admin di add path=/tmp/host-di.tar osf=desktop trusted=1   # its fstab binds host paths
    qvd-admin config set vm.lxc.init=/opt/qvd/bin/qvd-vma vm.lxc.unionfs.bind.fstab=1

Nothing from outside /usr and /etc is bound: an unprivileged container's root may only reach
host paths that everyone may reach (a Python under /root, or a checkout under a private
directory, would not mount).
"""
from __future__ import annotations

import io
import os
import sys
import tarfile

# the agent's sources (an editable install runs them from the checkout)
AGENT_SOURCES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "vma")
AGENT = "/opt/qvd/bin/qvd-vma"
LAUNCHER = b"#!/bin/sh\nPYTHONPATH=/opt/qvd/lib exec /usr/bin/python3 -m qvd.vma.main \"$@\"\n"
DIRECTORIES = ["usr", "etc", "proc", "sys", "dev", "tmp", "run", "home", "root", "var/tmp",
               "var/lib", "var/log"]
ACCOUNTS = [
    ("passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:"
               "/usr/sbin/nologin\n", 0o644),
    ("group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
    ("shadow", "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o640),
    ("gshadow", "root:*::\nnogroup:*::\n", 0o640),
]
LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


def host_binds() -> list[str]:
    """What the container borrows from the host, read-only (no path inside another one)."""
    wanted = ["/usr", *(p for p in ("/etc/alternatives", "/etc/fonts", "/etc/X11",
                                    "/etc/ld.so.cache") if os.path.exists(p))]
    binds: list[str] = []
    for path in sorted(set(wanted), key=len):
        if not any(path == b or path.startswith(b + "/") for b in binds):
            binds.append(path)
    return binds


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o644,
         link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = len(data), mode
    if name.endswith("tmp"):
        info.mode = 0o1777
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def build(path: str) -> str:
    binds = host_binds()
    with tarfile.open(path, "w") as tar:
        for directory in ["rootfs", "lxc", *(f"rootfs/{d}" for d in DIRECTORIES)]:
            _add(tar, directory)
        for name, target in LINKS.items():
            _add(tar, f"rootfs/{name}", link=target)
        # accounts of the image's own: root and nobody (the agent adds the desktop's)
        for name, text, mode in ACCOUNTS:
            _add(tar, f"rootfs/etc/{name}", text.encode(), mode)
        for name in ("hosts", "nsswitch.conf", "login.defs"):
            if os.path.exists(f"/etc/{name}"):
                with open(f"/etc/{name}", "rb") as handle:
                    _add(tar, f"rootfs/etc/{name}", handle.read())
        for directory in ("opt", "opt/qvd", "opt/qvd/bin", "opt/qvd/lib", "opt/qvd/lib/qvd",
                          "opt/qvd/lib/qvd/vma"):
            _add(tar, f"rootfs/{directory}")
        _add(tar, f"rootfs{AGENT}", LAUNCHER, 0o755)
        _add(tar, "rootfs/opt/qvd/lib/qvd/__init__.py", b"")
        for name in sorted(os.listdir(AGENT_SOURCES)):
            if name.endswith(".py"):
                with open(os.path.join(AGENT_SOURCES, name), "rb") as handle:
                    _add(tar, f"rootfs/opt/qvd/lib/qvd/vma/{name}", handle.read())
        fstab = "".join(f"{b} {b.lstrip('/')} none bind,ro,"
                        f"create={'dir' if os.path.isdir(b) else 'file'} 0 0\n" for b in binds)
        _add(tar, "lxc/fstab", fstab.encode())
    return path


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "host-di.tar"))
