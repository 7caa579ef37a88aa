"""Backends by name (vm.hypervisor)."""
from __future__ import annotations

from .base import Backend, BackendError, VmAddress, VmSpec

__all__ = ["Backend", "BackendError", "VmAddress", "VmSpec", "make_backend"]


def make_backend(cfg) -> Backend:
    name = cfg.get("vm.hypervisor")
    if name == "process":
        from .process import ProcessBackend
        return ProcessBackend(cfg.get("path.storage.root"), cfg.get("path.run"))
    if name == "lxc":
        from .lxc import LxcBackend
        return LxcBackend(cfg)
    if name == "kvm":
        from .kvm import KvmBackend
        return KvmBackend(cfg)
    raise BackendError(f"vm.hypervisor = {name}: unknown backend (process, lxc or kvm)")
