"""Every transition and timeout of the VM state machine, with a fake backend and a fake VMA,
against the real database (the CAS writes are part of what is tested).

Each scenario is a test of its own; the coverage test at the end does not depend on them
having run first: it runs, each on a fresh copy of the demo database, the scenarios that did
not run (or failed) earlier in the session."""
import asyncio
import re
import time

import pytest

from conftest import DEMO_TEMPLATE, _environment
from qvd.db.config import Config
from qvd.hkd.backends.fake import FakeBackend, FakeVma
from qvd.hkd.database import Database
from qvd.hkd.vm_actions import VmActions
from qvd.hkd.vm_machine import TRANSITIONS, Event, VmMachine
from qvd.hkd.vm_store import VmStore

SCENARIOS: dict = {}  # name -> async scenario(harness)
TAKEN: dict[str, set] = {}  # scenario name -> the (state, event) pairs it took, once it passed

FAST = {"internal.hkd.timeout.vm.state.starting": "2",
        "internal.hkd.timeout.vm.state.stopping_shutdown": "0.3",
        "internal.hkd.timeout.vm.state.stopping_stop": "0.3",
        "internal.hkd.timeout.vm.state.zombie_retry": "0.1",
        "internal.hkd.vma.ping.interval": "0.05",
        "internal.hkd.vma.ping.interval_after_failure": "0.05",
        "internal.hkd.vma.failures.running": "3", "internal.hkd.vma.dead_after.running": "0.2",
        "hkd.vm.max_failed_starts": "2"}


class WatchedSemaphore(asyncio.Semaphore):
    """A semaphore that shows how many tasks wait on it (to see work queue, not guess)."""
    waiting = 0

    async def acquire(self):
        self.waiting += 1
        try:
            return await super().acquire()
        finally:
            self.waiting -= 1


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
        self.taken: set = set()
        original = self.actions.enter

        async def recording_enter(vm_id, old, event, new):
            self.taken.add((old, event.name))
            return await original(vm_id, old, event, new)
        self.actions.enter = recording_enter

    def claimed(self):
        """As the HKD does when it claims a start command."""
        self.demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'starting'", h=self.host)
        return VmMachine(self.vm, "starting", self.actions)

    async def running(self) -> asyncio.Task:
        """A claimed start, run until the VM is running: the machine's task."""
        task = asyncio.create_task(self.claimed().run())
        await self.until("running")
        return task

    def row(self):
        return self.demo.sql("SELECT vm_state, host_id, last_error, failed_starts, blocked "
                             "FROM vm_runtimes")[0]

    async def until(self, state, timeout=5.0):
        await self.eventually(lambda: self.row()[0] == state, f"state {state}", timeout)

    async def eventually(self, check, what, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"never saw {what}: {self.row()}"
            await asyncio.sleep(0.02)


def run_scenario(demo, name: str) -> None:
    """Run one scenario against a harness on `demo`; record its transitions once it passed."""
    async def main():
        db = Database(demo.params)
        try:
            harness = Harness(demo, db)
            await SCENARIOS[name](harness)
            TAKEN[name] = harness.taken
        finally:
            await db.close()
    asyncio.run(main())


def scenario(func):
    SCENARIOS[func.__name__] = func
    return func


@scenario
async def start_run_stop(h):
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


@scenario
async def failed_starts_are_recorded_then_block_the_vm(h):
    h.backend.fail["prepare"] = "image missing on this node"
    await asyncio.wait_for(h.claimed().run(), 5)
    state, host, error, failures, blocked = h.row()
    assert (state, host, failures, blocked) == ("stopped", None, 1, False)
    assert "image missing on this node" in error
    await asyncio.wait_for(h.claimed().run(), 5)
    state, _, error, failures, blocked = h.row()
    assert (failures, blocked) == (2, True) and "blocked after 2 failed starts" in error


@scenario
async def a_blocked_di_refuses_the_start_without_counting_it_as_failed(h):
    h.demo.ok("di", "block", "-f", "version=v1")
    for _ in range(3):  # more than hkd.vm.max_failed_starts (2): the VM is not blocked
        await asyncio.wait_for(h.claimed().run(), 5)
        state, host, error, failures, blocked = h.row()
        assert (state, host, failures, blocked) == ("stopped", None, 0, False)
        assert "the DI tagged 'default' of OSF 'desktop' is blocked" in error
    assert not any(step == "prepare" for step, _ in h.backend.calls)


@scenario
async def starting_times_out_when_the_vma_never_answers(h):
    h.vma.dead.add(h.vm)
    await asyncio.wait_for(h.claimed().run(), 10)
    assert h.row()[0] == "stopped" and "took longer than 2s" in h.row()[2]


@scenario
async def stop_while_starting_cancels_the_start(h):
    h.backend.hang.add("start")
    machine = h.claimed()
    task = asyncio.create_task(machine.run())
    await h.eventually(lambda: ("start", h.vm) in h.backend.calls, "the start under way")
    machine.send(Event("stop"))
    await asyncio.wait_for(task, 5)
    assert h.row()[0] == "stopped" and h.row()[3] == 0  # a stop is not a failed start


@scenario
async def dead_vma_stops_the_vm_with_the_reason(h):
    task = await h.running()
    h.vma.dead.add(h.vm)
    await asyncio.wait_for(task, 5)
    # both thresholds: at least 3 failed pings and 0.2s unseen
    assert h.row()[0] == "stopped"
    assert re.search(r"VMA not answering: ([3-9]|\d\d) pings failed", h.row()[2])


@scenario
async def vm_that_exits_on_its_own(h):
    task = await h.running()
    h.backend.running.pop(h.vm)
    await asyncio.wait_for(task, 5)
    assert "stopped on its own" in h.row()[2]


@scenario
async def hard_expiration_stops_and_soft_reaches_the_vma(h):
    task = await h.running()
    h.actions.expirations[h.vm] = (time.time(), None)
    await h.eventually(lambda: (h.vm, "expire") in h.vma.calls, "the soft expiration told")
    assert h.row()[0] == "running"
    h.actions.expirations[h.vm] = (time.time(), time.time())
    await asyncio.wait_for(task, 5)
    assert "hard expiration" in h.row()[2]


@scenario
async def cleanup_failure_makes_a_zombie_until_cleanup_works(h):
    task = await h.running()
    h.backend.fail["cleanup"] = "device busy"
    h.vma.dead.add(h.vm)  # poweroff unanswered: backend stop, then cleanup fails
    await h.until("zombie")
    assert "device busy" in h.row()[2]
    await h.eventually(lambda: ("zombie", "failed") in h.taken, "a failed retry")
    del h.backend.fail["cleanup"]
    await asyncio.wait_for(task, 5)
    assert h.row()[:2] == ("stopped", None)


@scenario
async def vm_taken_away_is_killed_here_without_writing(h):
    task = await h.running()
    # The cluster released it (this node was declared lost): our next CAS must fail.
    h.demo.sql("UPDATE vm_runtimes SET host_id = NULL, vm_state = 'stopped', "
               "last_error = 'released'")
    h.vma.dead.add(h.vm)
    await asyncio.wait_for(task, 5)
    assert h.vm not in h.backend.running and h.row()[2] == "released"


@scenario
async def heavy_work_is_bounded(h):
    h.demo.ok("vm", "add", "-t", "acme", "name=other", "user=alice", "osf=desktop")
    h.demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'starting'", h=h.host)
    h.actions.heavy = heavy = WatchedSemaphore(1)
    h.backend.hang.add("prepare")
    first = asyncio.create_task(VmMachine(h.vm, "starting", h.actions).run())
    await h.eventually(lambda: ("prepare", h.vm) in h.backend.calls, "the first prepare")
    second = asyncio.create_task(VmMachine(h.vm + 1, "starting", h.actions).run())
    await h.eventually(lambda: heavy.waiting == 1, "the second start queued")
    # one prepare at a time: the second VM queues behind the first
    assert [c for c in h.backend.calls if c[0] == "prepare"] == [("prepare", h.vm)]
    h.backend.hang.clear()
    first.cancel()  # releases the semaphore: now the second one prepares
    await h.eventually(lambda: ("prepare", h.vm + 1) in h.backend.calls, "the second prepare")
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(demo, name):
    run_scenario(demo, name)


def test_every_transition_is_taken(pg_server, demo_template, tmp_path):
    for name in sorted(SCENARIOS.keys() - TAKEN.keys()):  # not run (or failed) earlier
        home = tmp_path / name
        home.mkdir()
        with _environment(pg_server, DEMO_TEMPLATE, str(home)) as demo:
            run_scenario(demo, name)
    # starting --vm_gone--> only happens on re-adoption: tests/test_hkd.py covers it.
    missing = set(TRANSITIONS) - set().union(*TAKEN.values()) - {("starting", "vm_gone")}
    assert not missing, f"never exercised: {sorted(missing)}"
