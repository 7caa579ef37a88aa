"""The watchdog's judgement (hkd/watchdog.py) with a fake backend and a clock the test turns:
the heartbeat ages on the monotonic clock, so a wall-clock step neither fences a live node
nor delays the fence of a dead one; VMs that survive a kill round are killed again."""
import os

from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.watchdog import KILL_RETRY, Watchdog


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _dog(tmp_path, backend, clock):
    beat = tmp_path / "heartbeat"
    beat.touch()
    return Watchdog(str(beat), 10.0, backend, clock), beat


def test_a_wall_clock_step_neither_fences_nor_delays(tmp_path):
    backend, clock = FakeBackend(), Clock()
    backend.running = {1: None}
    dog, beat = _dog(tmp_path, backend, clock)
    os.utime(beat, (0, 0))  # the node's touch lands while the wall clock says 1970
    clock.now += 5
    dog.check()
    assert backend.running == {1: None}  # a touch is a touch, whatever the mtime says
    os.utime(beat, (4e9, 4e9))  # ... and one from far in the future
    clock.now += 9
    dog.check()
    assert backend.running == {1: None}
    clock.now += 11  # no touch for 11 s of real time: fenced, whatever the wall clock did
    dog.check()
    assert backend.running == {}


def test_vms_that_survive_a_kill_round_are_killed_again(tmp_path):
    class Stubborn(FakeBackend):
        rounds = 0

        def kill_all(self):
            self.rounds += 1
            if self.rounds == 1:  # the first round leaves VM 2 (stuck in the kernel, say)
                self.running.pop(1, None)
                return [1]
            return super().kill_all()
    backend, clock = Stubborn(), Clock()
    backend.running = {1: None, 2: None}
    dog, _ = _dog(tmp_path, backend, clock)
    clock.now += 11
    dog.check()
    assert backend.running == {2: None}
    clock.now += KILL_RETRY
    dog.check()
    assert backend.running == {}
    rounds = backend.rounds
    clock.now += 10 * KILL_RETRY
    dog.check()
    assert backend.rounds == rounds + 1  # one round that finds nothing, then it rests
    clock.now += 10 * KILL_RETRY
    dog.check()
    assert backend.rounds == rounds + 1
