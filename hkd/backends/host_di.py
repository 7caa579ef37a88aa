"""Build a desktop image (DI) for the LXC backend out of this machine itself, for tests and
demos: an extended-layout tarball whose lxc/fstab bind-mounts the host's /usr, the Python
that runs qvd and this checkout read-only, so the agent, Xvnc and xterm inside are the host's.

    .venv/bin/python -m qvd.hkd.backends.host_di /tmp/host-di.tar
    qvd-admin di add path=/tmp/host-di.tar osf=desktop
    qvd-admin config set vm.lxc.init=$PWD/.venv/bin/qvd-vma
"""
from __future__ import annotations

import io
import os
import sys
import tarfile

# the sources of this package (an editable install runs them from the checkout)
SOURCES = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
                                    "/etc/ld.so.cache") if os.path.exists(p)),
              os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), SOURCES]
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
        fstab = "".join(f"{b} {b.lstrip('/')} none bind,ro,"
                        f"create={'dir' if os.path.isdir(b) else 'file'} 0 0\n" for b in binds)
        _add(tar, "lxc/fstab", fstab.encode())
        _add(tar, "lxc/config-extra", b"# a desktop needs no more processes than this\n"
                                      b"lxc.cgroup.pids.max = 1024\n")
    return path


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "host-di.tar"))
