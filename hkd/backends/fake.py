"""A fake backend: VMs are entries in a dict (unit tests of the state machine, scale benchmarks).

Knobs let a test make any step fail or hang; it never replaces the real backends' own tests.
"""
from __future__ import annotations

import asyncio

from .base import Backend, BackendError, VmAddress, VmSpec


class FakeBackend(Backend):
    name = "fake"

    def __init__(self) -> None:
        self.running: dict[int, VmAddress] = {}
        self.prepared: set[int] = set()
        self.fail: dict[str, str] = {}      # step name -> error message
        self.hang: set[str] = set()         # step names that never finish
        self.calls: list[tuple[str, int]] = []

    async def _step(self, step: str, vm_id: int) -> None:
        self.calls.append((step, vm_id))
        if step in self.hang:
            await asyncio.Event().wait()
        if step in self.fail:
            raise BackendError(self.fail[step])

    async def prepare(self, vm: VmSpec) -> VmAddress:
        await self._step("prepare", vm.vm_id)
        self.prepared.add(vm.vm_id)
        return VmAddress("127.0.0.1", 10000 + vm.vm_id, 20000 + vm.vm_id)

    async def start(self, vm: VmSpec) -> int | None:
        await self._step("start", vm.vm_id)
        self.running[vm.vm_id] = VmAddress("127.0.0.1", 10000 + vm.vm_id, 20000 + vm.vm_id)
        return 100000 + vm.vm_id

    async def stop(self, vm_id: int) -> None:
        await self._step("stop", vm_id)
        self.running.pop(vm_id, None)

    async def kill(self, vm_id: int) -> None:
        await self._step("kill", vm_id)
        self.running.pop(vm_id, None)

    async def state(self, vm_id: int) -> str:
        return "running" if vm_id in self.running else "stopped"

    async def list(self) -> dict[int, VmAddress | None]:
        return dict(self.running)

    async def cleanup(self, vm_id: int) -> None:
        await self._step("cleanup", vm_id)
        self.prepared.discard(vm_id)

    def kill_all(self) -> list[int]:
        killed = list(self.running)
        self.running.clear()
        return killed


class FakeVma:
    """Answers like the VMA inside a FakeBackend's VMs; VMs in `dead` do not answer.
    Passed to VmActions in place of the vma_client module."""

    class VmaError(Exception):
        pass

    def __init__(self, backend: FakeBackend):
        self.backend = backend
        self.dead: set[int] = set()
        self.calls: list[tuple[int, str]] = []

    async def call(self, target, method, timeout=3.0, **params):
        vm_id = target.vma_port - 10000
        self.calls.append((vm_id, method))
        if vm_id in self.dead or vm_id not in self.backend.running:
            raise self.VmaError("no answer")
        if method == "poweroff":
            self.backend.running.pop(vm_id)
        return {"status": "ok"}
