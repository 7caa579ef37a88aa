"""qvd-admin run inside the test process: the function the qvd-admin script calls
(qvd.cli.main.run, whose status main() exits with) given the arguments, the environment the
subprocess would get and its stdin, with stdout and stderr captured (click's CliRunner
isolation). A result like subprocess.run's. It saves the interpreter's start and the imports
(most of a second a run on a busy machine); the login's password check, the database work and
the translation of errors into one line and an exit status are the real ones.

`in_process(env)` is a QvdEnv (tests/conftest.py) whose cli() and ok() run that way, so
make_admin(in_process(demo), ...) gives administrators whose runs do too."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from click import formatting
from click.testing import CliRunner

from qvd.cli.main import run
from qvd.db import passwords


def run_cli(args, env: dict, input: str | None = None) -> subprocess.CompletedProcess:
    """qvd-admin ARGS with exactly the environment `env` (restored whole afterwards: a command
    such as `system start` sets variables of its own)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with CliRunner().isolation(input=input) as (out, err, _):
            formatting.FORCED_WIDTH = None  # help as wide as the process's would be
            try:
                status = run(list(args))
            except SystemExit as exc:  # what main()'s sys.exit would end the process with
                status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            sys.stdout.flush()  # print() buffers, as when its output is a pipe
            sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["qvd-admin", *args], status, stdout, stderr)


class in_process:  # noqa: N801 - used as a function: in_process(demo)
    """The QvdEnv `env`, but its qvd-admin runs in this process; everything else is env's."""

    def __init__(self, env) -> None:
        self.wrapped = env

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

    def cli(self, *args: str, input: str | None = None, env: dict | None = None):
        return run_cli(args, env or self.wrapped.env(), input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        return type(self.wrapped).ok(self, *args, input=input)  # QvdEnv.ok, with our cli()


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
