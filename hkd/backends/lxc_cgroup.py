"""A container's resource limits as LXC keys for the host's cgroup hierarchy: cgroup v1 (this
project's test machine) or the unified v2 hierarchy (a stock Debian 12 host). LXC ignores keys
of the other hierarchy with a mere warning, so the memory limit is also read back once the
container runs (memory_applied): a container without its limit is not started.
"""
from __future__ import annotations

import os
import subprocess

UNIFIED_MARK = "/sys/fs/cgroup/cgroup.controllers"  # only the v2 root has it


def host_version() -> int:
    return 2 if os.path.exists(UNIFIED_MARK) else 1


def cpu_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (default 1024) to v2 cpu.weight (default 100, 1..10000)."""
    return max(1, min(10000, round(shares * 100 / 1024)))


def limit_lines(memory_mib: int, shares: int, cpuset: str, pids: int,
                version: int | None = None) -> list[str]:
    version = version or host_version()
    mem = memory_mib * 1024 * 1024
    if version == 2:
        lines = [f"lxc.cgroup2.memory.max = {mem}", "lxc.cgroup2.memory.swap.max = 0",
                 f"lxc.cgroup2.cpu.weight = {cpu_weight(shares)}",
                 f"lxc.cgroup2.pids.max = {pids}"]
        if cpuset:
            lines.append(f"lxc.cgroup2.cpuset.cpus = {cpuset}")
        return lines
    lines = [f"lxc.cgroup.memory.limit_in_bytes = {mem}", f"lxc.cgroup.cpu.shares = {shares}",
             f"lxc.cgroup.pids.max = {pids}"]
    if os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        lines.append(f"lxc.cgroup.memory.memsw.limit_in_bytes = {mem}")  # no swap on top
    if cpuset:
        lines.append(f"lxc.cgroup.cpuset.cpus = {cpuset}")
    return lines


def memory_applied(name: str, lxcpath: str, memory_mib: int,
                   version: int | None = None) -> str | None:
    """None when the running container's memory limit is the one asked for, else why not."""
    key = "memory.max" if (version or host_version()) == 2 else "memory.limit_in_bytes"
    done = subprocess.run(["lxc-cgroup", "-n", name, "-P", lxcpath, key],
                          capture_output=True, text=True)
    value = done.stdout.strip()
    if done.returncode != 0 or not value.isdigit():
        return (f"its memory limit could not be read ({key}: "
                f"{done.stderr.strip() or value or 'no value'}): is the memory controller on?")
    if int(value) != memory_mib * 1024 * 1024:
        return f"its memory limit did not apply ({key} is {value}, not {memory_mib} MiB)"
    return None
