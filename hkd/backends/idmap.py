"""Unprivileged containers: the node's subordinate id range (vm.lxc.idmap.base, .size). Root
in a container is host uid `base`, uid 1000 is base + 1000, and so on; no id of the range is
root's on the node, so a process that escapes its container is nobody there.

The DI is unpacked shifted (Storage.basefs(shift=base)); what the node makes for a container
(overlay upper layer, home, the agent's secret) is owned by the shifted root; a home made by an
older, privileged node is shifted once, in place (shift_tree).
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class IdMap:
    base: int
    size: int

    @classmethod
    def from_config(cls, cfg) -> "IdMap | None":
        """None for privileged containers (vm.lxc.privileged)."""
        if cfg.get_bool("vm.lxc.privileged"):
            return None
        base, size = cfg.get_int("vm.lxc.idmap.base"), cfg.get_int("vm.lxc.idmap.size")
        if base < 1 or size < 65536:
            raise ValueError("vm.lxc.idmap.base must be above 0 and vm.lxc.idmap.size at "
                             "least 65536 (a desktop's accounts need that many ids)")
        return cls(base, size)

    def lxc_lines(self) -> list[str]:
        return [f"lxc.idmap = u 0 {self.base} {self.size}",
                f"lxc.idmap = g 0 {self.base} {self.size}"]

    def shifted(self, host_id: int) -> int:
        """An id of the container's as the node sees it; ids already in the range stay."""
        return host_id if self.base <= host_id < self.base + self.size else \
            self.base + (host_id % self.size)

    def shift_tree(self, path: str) -> None:
        """Bring every id under path into the range, without following links: a home made by
        a privileged node becomes the same home for the container's accounts."""
        def shift(entry: str) -> None:
            info = os.lstat(entry)
            uid, gid = self.shifted(info.st_uid), self.shifted(info.st_gid)
            if (uid, gid) != (info.st_uid, info.st_gid):
                os.lchown(entry, uid, gid)  # clears setuid bits too: a home needs none
        shift(path)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                shift(os.path.join(root, name))


def unreachable_parent(path: str) -> str | None:
    """The first directory above path (path included) that the container's root, a stranger
    on the node, may not pass through; None when the way is open."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
