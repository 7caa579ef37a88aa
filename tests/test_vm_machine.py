"""Every transition and timeout of the VM state machine, with a fake backend and a fake VMA,
against the real database (the CAS writes are part of what is tested)."""
import asyncio
import re
import time

import pytest

from qvd.db.config import Config
from qvd.hkd.backends.fake import FakeBackend, FakeVma
from qvd.hkd.database import Database
from qvd.hkd.vm_actions import VmActions
from qvd.hkd.vm_machine import TRANSITIONS, Event, VmMachine
from qvd.hkd.vm_store import VmStore

SEEN: set = set()  # (state, event) pairs taken by any test here; the last test checks coverage

FAST = {"internal.hkd.timeout.vm.state.starting": "2",
        "internal.hkd.timeout.vm.state.stopping_shutdown": "0.3",
        "internal.hkd.timeout.vm.state.stopping_stop": "0.3",
        "internal.hkd.timeout.vm.state.zombie_retry": "0.1",
        "internal.hkd.vma.ping.interval": "0.05",
        "internal.hkd.vma.ping.interval_after_failure": "0.05",
        "internal.hkd.vma.failures.running": "3", "internal.hkd.vma.dead_after.running": "0.2",
        "hkd.vm.max_failed_starts": "2"}


class Harness:
    def __init__(self, demo, loop_db):
        self.demo = demo
        (self.host,), = demo.sql("SELECT id FROM hosts")
        (self.vm,), = demo.sql("SELECT id FROM vms")
        self.backend = FakeBackend()
        self.vma = FakeVma(self.backend)
        self.store = VmStore(loop_db, self.host, demo.storage)
        self.actions = VmActions(Config(node=dict(FAST)), self.store, self.backend,
                                 asyncio.Semaphore(2), vma=self.vma)
        original = self.actions.enter

        async def recording_enter(vm_id, old, event, new):
            SEEN.add((old, event.name))
            return await original(vm_id, old, event, new)
        self.actions.enter = recording_enter

    def claimed(self):
        """As the HKD does when it claims a start command."""
        self.demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'starting'", h=self.host)
        return VmMachine(self.vm, "starting", self.actions)

    def row(self):
        return self.demo.sql("SELECT vm_state, host_id, last_error, failed_starts, blocked "
                             "FROM vm_runtimes")[0]

    async def until(self, state, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.row()[0] != state:
            assert time.monotonic() < deadline, f"never reached {state}: {self.row()}"
            await asyncio.sleep(0.02)


@pytest.fixture
def run(demo):
    """Run an async scenario against a harness on the demo database."""
    def runner(scenario):
        async def main():
            db = Database(demo.params)
            try:
                await scenario(Harness(demo, db))
            finally:
                await db.close()
        asyncio.run(main())
    return runner


def test_start_run_stop(run):
    async def scenario(h):
        machine = h.claimed()
        task = asyncio.create_task(machine.run())
        await h.until("running")
        assert h.demo.sql("SELECT host(vm_address), vm_vma_port, vm_pid FROM vm_runtimes") == [
            ("127.0.0.1", 10000 + h.vm, 100000 + h.vm)]
        machine.send(Event("start"))  # no transition: ignored, still running
        machine.send(Event("stop"))
        await asyncio.wait_for(task, 5)
        assert h.row()[:2] == ("stopped", None)
        assert (h.vm, "poweroff") in h.vma.calls and ("cleanup", h.vm) in h.backend.calls
        assert h.demo.sql("SELECT run_ok FROM vm_counters") == [(1,)]
    run(scenario)


def test_failed_starts_are_recorded_then_block_the_vm(run):
    async def scenario(h):
        h.backend.fail["prepare"] = "image missing on this node"
        await asyncio.wait_for(h.claimed().run(), 5)
        state, host, error, failures, blocked = h.row()
        assert (state, host, failures, blocked) == ("stopped", None, 1, False)
        assert "image missing on this node" in error
        await asyncio.wait_for(h.claimed().run(), 5)
        state, _, error, failures, blocked = h.row()
        assert (failures, blocked) == (2, True) and "blocked after 2 failed starts" in error
    run(scenario)


def test_starting_times_out_when_the_vma_never_answers(run):
    async def scenario(h):
        h.vma.dead.add(h.vm)
        await asyncio.wait_for(h.claimed().run(), 10)
        assert h.row()[0] == "stopped" and "took longer than 2s" in h.row()[2]
    run(scenario)


def test_stop_while_starting_cancels_the_start(run):
    async def scenario(h):
        h.backend.hang.add("start")
        machine = h.claimed()
        task = asyncio.create_task(machine.run())
        await asyncio.sleep(0.2)
        machine.send(Event("stop"))
        await asyncio.wait_for(task, 5)
        assert h.row()[0] == "stopped" and h.row()[3] == 0  # a stop is not a failed start
    run(scenario)


def test_dead_vma_stops_the_vm_with_the_reason(run):
    async def scenario(h):
        task = asyncio.create_task(h.claimed().run())
        await h.until("running")
        h.vma.dead.add(h.vm)
        await asyncio.wait_for(task, 5)
        # both thresholds: at least 3 failed pings and 0.2s unseen
        assert h.row()[0] == "stopped"
        assert re.search(r"VMA not answering: ([3-9]|\d\d) pings failed", h.row()[2])
    run(scenario)


def test_vm_that_exits_on_its_own(run):
    async def scenario(h):
        task = asyncio.create_task(h.claimed().run())
        await h.until("running")
        h.backend.running.pop(h.vm)
        await asyncio.wait_for(task, 5)
        assert "stopped on its own" in h.row()[2]
    run(scenario)


def test_hard_expiration_stops_and_soft_reaches_the_vma(run):
    async def scenario(h):
        task = asyncio.create_task(h.claimed().run())
        await h.until("running")
        h.actions.expirations[h.vm] = (time.time(), None)
        await asyncio.sleep(0.2)
        assert (h.vm, "expire") in h.vma.calls and h.row()[0] == "running"
        h.actions.expirations[h.vm] = (time.time(), time.time())
        await asyncio.wait_for(task, 5)
        assert "hard expiration" in h.row()[2]
    run(scenario)


def test_cleanup_failure_makes_a_zombie_until_cleanup_works(run):
    async def scenario(h):
        task = asyncio.create_task(h.claimed().run())
        await h.until("running")
        h.backend.fail["cleanup"] = "device busy"
        h.vma.dead.add(h.vm)  # poweroff unanswered: backend stop, then cleanup fails
        await h.until("zombie")
        assert "device busy" in h.row()[2]
        await asyncio.sleep(0.3)  # a failed retry: zombie -> zombie
        del h.backend.fail["cleanup"]
        await asyncio.wait_for(task, 5)
        assert h.row()[:2] == ("stopped", None)
    run(scenario)


def test_vm_taken_away_is_killed_here_without_writing(run):
    async def scenario(h):
        task = asyncio.create_task(h.claimed().run())
        await h.until("running")
        # The cluster released it (this node was declared lost): our next CAS must fail.
        h.demo.sql("UPDATE vm_runtimes SET host_id = NULL, vm_state = 'stopped', "
                   "last_error = 'released'")
        h.vma.dead.add(h.vm)
        await asyncio.wait_for(task, 5)
        assert h.vm not in h.backend.running and h.row()[2] == "released"
    run(scenario)


def test_every_transition_was_taken():
    # starting --vm_gone--> only happens on re-adoption: tests/test_hkd.py covers it.
    missing = set(TRANSITIONS) - SEEN - {("starting", "vm_gone")}
    assert not missing, f"never exercised: {sorted(missing)}"


def test_heavy_work_is_bounded(run):
    async def scenario(h):
        h.demo.ok("vm", "add", "-t", "acme", "name=other", "user=alice", "osf=desktop")
        h.demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'starting'", h=h.host)
        h.actions.heavy = asyncio.Semaphore(1)
        h.backend.hang.add("prepare")
        first = asyncio.create_task(VmMachine(h.vm, "starting", h.actions).run())
        await asyncio.sleep(0.1)
        second = asyncio.create_task(VmMachine(h.vm + 1, "starting", h.actions).run())
        await asyncio.sleep(0.3)
        # one prepare at a time: the second VM queues behind the first
        assert [c for c in h.backend.calls if c[0] == "prepare"] == [("prepare", h.vm)]
        h.backend.hang.clear()
        first.cancel()  # releases the semaphore: now the second one prepares
        await asyncio.sleep(0.3)
        assert ("prepare", h.vm + 1) in h.backend.calls
        first.cancel()
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
    run(scenario)
