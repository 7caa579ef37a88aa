"""Node-wide slots for the L7R's connection processes: at most N of them may do one thing at
once (check a password, hold a database connection). Each connection is its own process, so
a slot is a lock file under path.run (`l7r-<kind>-<n>.lock`, flock'ed): a process that dies
frees its slot. A process that finds no free slot within its wait gets SlotsBusy."""
from __future__ import annotations

import fcntl
import os
import time


class SlotsBusy(Exception):
    """Every slot stayed taken for the whole wait."""


class Slots:
    def __init__(self, run_dir: str, kind: str, count: int):
        self.paths = [os.path.join(run_dir, f"l7r-{kind}-{n}.lock") for n in range(max(1, count))]
        self.fd: int | None = None

    def _try(self) -> int | None:
        for path in self.paths:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    def acquire(self, wait: float) -> None:
        """Hold a slot (this process keeps at most one of a kind), or SlotsBusy after `wait`."""
        if self.fd is not None:
            return
        os.makedirs(os.path.dirname(self.paths[0]), exist_ok=True)
        deadline = time.monotonic() + wait
        pause = 0.005
        while (fd := self._try()) is None:
            if time.monotonic() >= deadline:
                raise SlotsBusy()
            time.sleep(pause)  # flock has no timed wait; slots free within moments
            pause = min(pause * 2, 0.05)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
