"""qvd-admin run inside the test process: the function the qvd-admin script calls
(qvd.cli.main.run, whose status main() exits with) given the arguments, the environment the
subprocess would get and its stdin, with stdout and stderr captured (click's CliRunner
isolation). A result like subprocess.run's. It saves the interpreter's start and the imports
(most of a second a run on a busy machine); the login's password check, the database work and
the translation of errors into one line and an exit status are the real ones.

QvdEnv.cli (tests/conftest.py) runs qvd-admin this way by default, save where a real process
is needed (its docstring)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest
from click import formatting
from click.testing import CliRunner

from qvd.cli.main import run
from qvd.db import passwords

QVD_ADMIN = os.path.join(os.path.dirname(sys.executable), "qvd-admin")


class _TimedOut(BaseException):
    """Raised in the run by SIGALRM: not an Exception, which run() would report as an error."""


def _swap_environ(env: dict) -> None:
    """os.environ becomes `env`, changing only the keys that differ (another thread reading
    PATH or HOME meanwhile sees no gap)."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _alarm(signum, frame):
    raise _TimedOut


def run_cli(args, env: dict, input: str | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
    """qvd-admin ARGS with exactly the environment `env` (restored whole afterwards: a command
    such as `system start` sets variables of its own). From the main thread only (os.environ,
    sys.std* and the SIGALRM of `timeout` are the process's): subprocess.TimeoutExpired after
    `timeout` seconds, as subprocess.run's."""
    assert threading.current_thread() is threading.main_thread(), "run_cli off the main thread"
    saved, argv = dict(os.environ), sys.argv
    sys.argv = [QVD_ADMIN, *args]  # the database's application_name, paths next to it
    _swap_environ(env)
    timer = timeout and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
    try:
        with CliRunner().isolation(input=input) as (out, err, _):
            formatting.FORCED_WIDTH = None  # help as wide as the process's would be
            if timer:
                signal.signal(signal.SIGALRM, _alarm)
                signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                status = run(list(args))
            except SystemExit as exc:  # what main()'s sys.exit would end the process with
                status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except _TimedOut:
                sys.stdout.flush()
                sys.stderr.flush()
                raise subprocess.TimeoutExpired(["qvd-admin", *args], timeout,
                                                out.getvalue(), err.getvalue()) from None
            finally:
                if timer:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, signal.SIG_DFL)
            sys.stdout.flush()  # print() buffers, as when its output is a pipe
            sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        _swap_environ(saved)
        sys.argv = argv
    return subprocess.CompletedProcess(["qvd-admin", *args], status, stdout, stderr)


@contextmanager
def cheap_password_hashes():
    """Passwords hashed meanwhile (make_admin's) are Argon2id with the smallest cost
    (8 KiB, one pass, one lane) instead of 64 MiB and three passes. A login still checks the
    password, with the same code: the cost is in the hash's PHC string, which verifying reads.
    For tests about what an administrator may do, not about its password, where the check
    was most of the time of each qvd-admin run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "MEMORY_KIB", 8)
        patch.setattr(passwords, "ITERATIONS", 1)
        patch.setattr(passwords, "LANES", 1)
        yield
