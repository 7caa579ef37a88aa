"""The VM state machine as data: (state, event) -> next state; each state has an action.

Stored states: stopped, starting, running, stopping, zombie. The action of a state runs
while the VM is in it and ends with the event that leaves it; an outside event (a `stop`
command) that has a transition from the current state cancels the running action.

  state     action        timeout (config key)                      ends with
  starting  start_vm      internal.hkd.timeout.vm.state.starting    vma_ready | refused | failed
                                                                    | timeout
  running   monitor       -                                         vma_dead | vm_gone | expired
  stopping  stop_vm       -  (each sub-step has its own)            stopped | failed
  zombie    clean_zombie  -  (retries every zombie_retry)           stopped | failed
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

TRANSITIONS: dict[tuple[str, str], str] = {
    ("starting", "vma_ready"): "running",
    ("starting", "refused"): "stopping",  # no usable DI (blocked, untagged): not the VM's fault
    ("starting", "failed"): "stopping",
    ("starting", "timeout"): "stopping",
    ("starting", "stop"): "stopping",
    ("starting", "vm_gone"): "stopping",
    ("running", "stop"): "stopping",
    ("running", "vma_dead"): "stopping",
    ("running", "vm_gone"): "stopping",
    ("running", "expired"): "stopping",
    ("stopping", "stopped"): "stopped",
    ("stopping", "failed"): "zombie",
    ("zombie", "stopped"): "stopped",
    ("zombie", "failed"): "zombie",
}

STATE_ACTIONS: dict[str, tuple[str, str | None]] = {
    "starting": ("start_vm", "internal.hkd.timeout.vm.state.starting"),
    "running": ("monitor", None),
    "stopping": ("stop_vm", None),
    "zombie": ("clean_zombie", None),
}


@dataclass(frozen=True)
class Event:
    name: str
    reason: str | None = None


class VmMachine:
    """Drives one VM from the state it is in until it is stopped (or no longer ours)."""

    def __init__(self, vm_id: int, state: str, actions, first_action: str | None = None):
        self.vm_id = vm_id
        self.state = state
        self.actions = actions
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._first_action = first_action

    def send(self, event: Event) -> None:
        self.inbox.put_nowait(event)

    async def _act(self, name: str) -> Event:
        timeout_key = STATE_ACTIONS[self.state][1]
        timeout = self.actions.cfg.get_float(timeout_key) if timeout_key else None
        try:
            async with asyncio.timeout(timeout):
                return await getattr(self.actions, name)(self.vm_id)
        except TimeoutError:
            return Event("timeout", f"{self.state} took longer than {timeout:g}s ({timeout_key})")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the VM
            log.exception("vm %d: %s failed", self.vm_id, name)
            return Event("failed", f"{name}: {exc}")

    async def _next_event(self, action: asyncio.Task) -> Event:
        while True:
            getter = asyncio.create_task(self.inbox.get())
            try:
                done, _ = await asyncio.wait({action, getter},
                                             return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # the machine is stopped (fencing): so is its action
                action.cancel()
                getter.cancel()
                raise
            if action in done:
                getter.cancel()
                return action.result()
            event = getter.result()
            if (self.state, event.name) in TRANSITIONS:
                action.cancel()
                await asyncio.gather(action, return_exceptions=True)
                return event
            log.info("vm %d: %s ignored while %s", self.vm_id, event.name, self.state)

    async def run(self) -> None:
        action = self._first_action or STATE_ACTIONS[self.state][0]
        while self.state != "stopped":
            event = await self._next_event(asyncio.create_task(self._act(action)))
            new = TRANSITIONS.get((self.state, event.name))
            if new is None:
                log.error("vm %d: no transition for %s in %s", self.vm_id, event.name, self.state)
                event, new = Event("failed", f"unexpected {event.name}"), "zombie"
            log.info("vm %d: %s --%s--> %s%s", self.vm_id, self.state, event.name, new,
                     f" ({event.reason})" if event.reason else "")
            if not await self.actions.enter(self.vm_id, self.state, event, new):
                log.warning("vm %d: no longer ours (moved by someone else); killing it here",
                            self.vm_id)
                await self.actions.abandon(self.vm_id)
                return
            self.state = new
            action = STATE_ACTIONS.get(new, (None, None))[0]
