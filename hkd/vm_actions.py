"""What the VM states do (the actions named in vm_machine.STATE_ACTIONS) and the database
bookkeeping of each transition."""
from __future__ import annotations

import asyncio
import logging
import time

from qvd.l7r.session_params import node_settings
from qvd.vma import secret

from . import metrics, vma_client
from .backends import Backend, VmAddress
from .vm_machine import Event
from .vm_store import VmStore

log = logging.getLogger(__name__)
STARTING_PING_INTERVAL = 0.05  # seconds; a fast first answer is what users wait for


class VmActions:
    def __init__(self, cfg, store: VmStore, backend: Backend, heavy: asyncio.Semaphore,
                 vma=vma_client):
        self.cfg = cfg
        self.vma = vma  # how to call a VMA (tests of the state machine pass a fake)
        self.store = store
        self.backend = backend
        self.heavy = heavy
        self.addresses: dict[int, VmAddress] = {}
        self.last_ok: dict[int, float] = {}          # VMA last seen alive (epoch seconds)
        self.expirations: dict[int, tuple] = {}      # vm -> (soft, hard) epoch seconds
        self.spares: dict[int, dict] = {}  # started with no user (a pool's): its properties
        self.backend_name = cfg.get("vm.hypervisor") or "unknown"  # the metrics' label
        metrics.prepare_backend(self.backend_name)
        self._since: dict[tuple[int, str], float] = {}  # (vm, starting|stopping) -> monotonic

    # --- starting -------------------------------------------------------------------------
    async def start_vm(self, vm_id: int) -> Event:
        self._since[(vm_id, "starting")] = time.monotonic()
        try:
            spec, di_id = await self.store.spec(vm_id)
        except LookupError as exc:  # the DI is blocked or missing: an admin's decision
            return Event("refused", str(exc))
        spec.vma_secret = secret.new_secret()  # new at every start: an old one dies with its run
        self.spares.pop(vm_id, None)
        if spec.user_id is None:
            self.spares[vm_id] = spec.properties
        async with self.heavy:
            if spec.discard_home:  # its previous user's files go before anything runs
                await self.backend.discard_home(vm_id)
                await self.store.home_discarded(vm_id)
            address = await self.backend.prepare(spec)
            address.secret = spec.vma_secret
            self.addresses[vm_id] = address
            await self.store.set_address(vm_id, address, di_id)
            pid = await self.backend.start(spec)
        await self.store.set_pid(vm_id, pid)
        return await self.await_vma(vm_id)

    async def await_vma(self, vm_id: int) -> Event:
        address = self.addresses[vm_id]
        while True:
            if await self.backend.state(vm_id) != "running":
                return Event("failed", "the VM exited while starting")
            try:
                await self.vma.call(address, "ping", timeout=2)
                self.last_ok[vm_id] = time.time()
                return Event("vma_ready")
            except self.vma.VmaError:
                await asyncio.sleep(STARTING_PING_INTERVAL)

    # --- running --------------------------------------------------------------------------
    async def monitor(self, vm_id: int) -> Event:
        """Ping the VMA; dead after N failed pings AND T seconds unseen (QVD's two thresholds)."""
        address = self.addresses[vm_id]
        cfg = self.cfg
        max_failures = cfg.get_int("internal.hkd.vma.failures.running")
        dead_after = cfg.get_float("internal.hkd.vma.dead_after.running")
        failures, soft_announced = 0, None
        self.last_ok.setdefault(vm_id, time.time())
        if vm_id in self.spares:
            await self.prepare_session(vm_id, self.spares.pop(vm_id))
        while True:
            await asyncio.sleep(cfg.get_float("internal.hkd.vma.ping.interval_after_failure"
                                              if failures else "internal.hkd.vma.ping.interval"))
            if await self.backend.state(vm_id) != "running":
                return Event("vm_gone", "the VM stopped on its own")
            try:
                await self.vma.call(address, "ping", timeout=2)
                failures, self.last_ok[vm_id] = 0, time.time()
            except self.vma.VmaError as exc:
                failures += 1
                unseen = time.time() - self.last_ok[vm_id]
                if failures >= max_failures and unseen >= dead_after:
                    return Event("vma_dead", f"VMA not answering: {failures} pings failed, "
                                             f"last seen {unseen:.0f}s ago ({exc})")
            soft, hard = self.expirations.get(vm_id, (None, None))
            if hard is not None and time.time() >= hard:
                return Event("expired", "hard expiration time reached")
            if soft is not None and time.time() >= soft and soft_announced != soft:
                try:
                    await self.vma.call(address, "expire",
                                          soft=f"{soft:.0f}", hard=f"{hard:.0f}" if hard else "")
                    soft_announced = soft
                except self.vma.VmaError:
                    pass  # told at the next round

    async def prepare_session(self, vm_id: int, properties: dict) -> None:
        """A spare's display server starts now rather than at its first login (the agent's
        x_prepare; an NX session cannot be, and stays stopped). A failure costs the first
        login that start, no more: noted on the VM for the admin."""
        try:
            answer = await self.vma.call(self.addresses[vm_id], "x_prepare", timeout=10,
                                         **{**node_settings(self.cfg), **properties})
        except self.vma.VmaError as exc:
            answer = {"error": str(exc)}
        if answer.get("error"):
            reason = f"its desktop session could not be prepared ({answer['error']})"
            log.warning("vm %d: %s", vm_id, reason)
            await self.store.note_error(vm_id, reason + ": the first login starts it")
        else:
            log.info("vm %d: desktop session %s", vm_id, answer.get("x_state"))

    async def gone(self, vm_id: int) -> Event:
        """Used on re-adoption: the database says the VM runs here, the backend says not."""
        return Event("vm_gone", self.gone_reason)

    gone_reason = "the VM was not running when the node daemon took it back"

    # --- stopping -------------------------------------------------------------------------
    async def _stopped_within(self, vm_id: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while await self.backend.state(vm_id) == "running":
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def stop_vm(self, vm_id: int) -> Event:
        """VMA poweroff, then the backend's stop, then kill; each bounded; then cleanup."""
        cfg = self.cfg
        address = self.addresses.get(vm_id)
        stopped = await self.backend.state(vm_id) != "running"
        if not stopped and address is not None:
            try:
                await self.vma.call(address, "poweroff", timeout=2)
                stopped = await self._stopped_within(
                    vm_id, cfg.get_float("internal.hkd.timeout.vm.state.stopping_shutdown"))
            except self.vma.VmaError:
                pass
        async with self.heavy:
            if not stopped:
                await self.backend.stop(vm_id)
                stopped = await self._stopped_within(
                    vm_id, cfg.get_float("internal.hkd.timeout.vm.state.stopping_stop"))
            if not stopped:
                await self.backend.kill(vm_id)
                if not await self._stopped_within(vm_id, 5):
                    return Event("failed", "the VM survived kill")
            await self.backend.cleanup(vm_id)
        return Event("stopped")

    async def clean_zombie(self, vm_id: int) -> Event:
        await asyncio.sleep(self.cfg.get_float("internal.hkd.timeout.vm.state.zombie_retry"))
        await self.backend.kill(vm_id)
        if not await self._stopped_within(vm_id, 5):
            return Event("failed", "the VM survived kill")
        await self.backend.cleanup(vm_id)
        return Event("stopped")

    # --- bookkeeping ----------------------------------------------------------------------
    async def enter(self, vm_id: int, old: str, event: Event, new: str) -> bool:
        fields = {"last_error": event.reason} if event.reason else {}
        if new == "running":
            fields.update(failed_starts=0, last_error=None)
        if not await self.store.set_state(vm_id, old, new, release=new == "stopped", **fields):
            return False
        if old == "starting" and new == "running":
            await self.store.count(vm_id, "run_ok")
        elif old == "starting":
            await self.store.count(vm_id, "run_failed")
            # Neither a stop nor a refusal (a blocked DI) says the VM is broken: only failures
            # count towards blocking it.
            if event.name not in ("stop", "refused") and await self.store.failed_start(
                    vm_id, event.reason or event.name,
                    self.cfg.get_int("hkd.vm.max_failed_starts")):
                log.warning("vm %d: blocked after repeated failed starts", vm_id)
        self._measure(vm_id, old, event, new)
        if new == "stopped":
            self.forget(vm_id)
        return True

    def _measure(self, vm_id: int, old: str, event: Event, new: str) -> None:
        """The start and stop histograms and failure counters, once the transition is stored.
        A start taken over from a previous qvd-hkd (adoption) has no start time: not timed."""
        backend, now = self.backend_name, time.monotonic()
        if new == "stopping":
            self._since[(vm_id, "stopping")] = now
        if old == "starting":
            since = self._since.pop((vm_id, "starting"), None)
            if new == "running" and since is not None:
                metrics.VM_START_SECONDS.labels(backend).observe(now - since)
            elif new != "running" and event.name != "stop":
                metrics.VM_START_FAILURES.labels(
                    backend, metrics.start_failure_reason(event.name, event.reason)).inc()
        elif old in ("stopping", "zombie"):
            since = self._since.pop((vm_id, "stopping"), None)
            if new == "zombie" and old == "stopping":  # not each retry of a zombie
                metrics.VM_STOP_FAILURES.labels(backend).inc()
            elif since is not None:
                metrics.VM_STOP_SECONDS.labels(backend).observe(now - since)

    def forget(self, vm_id: int) -> None:
        self._since.pop((vm_id, "starting"), None)
        self._since.pop((vm_id, "stopping"), None)
        self.addresses.pop(vm_id, None)
        self.last_ok.pop(vm_id, None)
        self.expirations.pop(vm_id, None)

    async def abandon(self, vm_id: int) -> None:
        """The VM is no longer ours: make sure it does not run here, without touching the DB."""
        await self.backend.kill(vm_id)
        await self._stopped_within(vm_id, 5)
        try:
            await self.backend.cleanup(vm_id)
        except Exception:  # noqa: BLE001 - best effort; orphan detection retries
            log.exception("vm %d: cleanup after losing it failed", vm_id)
        self.forget(vm_id)
