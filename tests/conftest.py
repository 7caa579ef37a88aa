"""Shared fixtures: one real PostgreSQL cluster per run, a fresh database per test.

The cluster is the embedded one (qvd.db.embedded) in a temporary directory, tuned for speed
(no fsync). The schema is migrated once into a template database; each test gets a copy
(CREATE DATABASE ... TEMPLATE), which takes a few milliseconds.

qvd-admin (QvdEnv.cli, .ok) runs in this process by default (tests/cli_inprocess.py: the
entry the script calls, qvd.cli.main.run, with the subprocess's environment, stdin and
captured output; no interpreter start and imports, most of a second a run). The real binary
runs instead:
- from any thread but the main one (the in-process run swaps os.environ and sys.std*);
- for the groups in REAL_PROCESS_GROUPS: `system` (starts daemons, waits for the L7R),
  `db` (starts/stops the embedded PostgreSQL, its own pooled engines) and `doctor` (probes
  the machine: tools, ports, the clock);
- when a test asks: `demo.cli(..., real=True)`, or `demo.real` (a view of the QvdEnv whose
  cli/ok are the binary's, for AdminRun(demo.real, ...)): for what only a process shows
  (exit status, no traceback, --debug, a terminal);
- everywhere with QVD_TEST_REAL_CLI=1 in the environment.
An in-process run that takes longer than CLI_TIMEOUT raises subprocess.TimeoutExpired, as
the subprocess's timeout does.
"""
from __future__ import annotations

import atexit
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from qvd.db import migrate
from qvd.db.embedded import Cluster
from qvd.db.engine import L7R_ROLE, enable_l7r_role, make_engine
from qvd.db.models import Base

QVD_ADMIN = os.path.join(os.path.dirname(sys.executable), "qvd-admin")
# qvd-client keeps tokens under $XDG_CONFIG_HOME: the tests' own, never the user's
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="qvd-tests-config-")
atexit.register(shutil.rmtree, os.environ["XDG_CONFIG_HOME"], True)
TEMPLATE = "qvd_template"
DEMO_TEMPLATE = "qvd_demo_template"
L7R_PASSWORD = "l7r-test-password-0123456789"  # every test node logs its L7R in as qvd_l7r
_numbers = itertools.count(1)
CLI_TIMEOUT = 60
REAL_CLI = os.environ.get("QVD_TEST_REAL_CLI") == "1"
REAL_PROCESS_GROUPS = {"system", "db", "doctor"}


def _command_group(args) -> str | None:
    """The object a qvd-admin command line names (`vm` in `--admin a@b vm list`)."""
    args = iter(args)
    for arg in args:
        if arg == "--admin":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def cli_in_process(args) -> bool:
    """Whether QvdEnv.cli may run `qvd-admin ARGS` in this process (see the docstring)."""
    return (not REAL_CLI and threading.current_thread() is threading.main_thread()
            and _command_group(args) not in REAL_PROCESS_GROUPS)


@dataclass
class PgServer:
    cluster: Cluster
    params: dict

    def maintenance(self):
        return psycopg.connect(**dict(self.params, dbname="postgres"), autocommit=True)


@pytest.fixture(scope="session")
def pg_server():
    root = tempfile.mkdtemp(prefix="qvd-test-")
    os.chmod(root, 0o755)  # the server may run as another account than the tests
    cluster = Cluster(os.path.join(root, "pg"))
    cluster.create({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
    cluster.start()
    server = PgServer(cluster, cluster.connection_params())
    with server.maintenance() as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    engine = make_engine(dict(server.params, dbname=TEMPLATE), poolclass=NullPool)
    migrate.upgrade(engine)
    enable_l7r_role(engine, L7R_PASSWORD)  # the L7R's own role (migration 0006) may log in
    engine.dispose()
    yield server
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


class QvdEnv:
    """A fresh database plus a node.conf pointing at it; runs qvd-admin (in this process when
    it may: the module's docstring)."""

    def __init__(self, server: PgServer, dbname: str, home: str):
        self.server = server
        self.dbname = dbname
        self.home = home
        self.params = dict(server.params, dbname=dbname)
        self.storage = os.path.join(home, "storage")
        self.conf = os.path.join(home, "node.conf")
        self.write_conf()
        self.engine = make_engine(self.params, poolclass=NullPool)

    def database_conf(self) -> str:
        """The node-file lines that point at this test's database."""
        p = self.params
        return (f"database.host = {p['host']}\ndatabase.port = {p['port']}\n"
                f"database.user = {p['user']}\ndatabase.password = {p['password']}\n"
                f"database.name = {self.dbname}\n"
                f"database.l7r.user = {L7R_ROLE}\ndatabase.l7r.password = {L7R_PASSWORD}\n")

    def write_conf(self, extra: str = "") -> None:
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.write(f"nodename = testnode\npath.home = {self.home}\n"
                         f"path.storage.root = {self.storage}\n{self.database_conf()}"
                         # no metrics port: test runs side by side would share the default
                         f"hkd.metrics.address =\n{extra}")

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QVD_")}
        env.update(QVD_CONFIG=self.conf, QVD_HOME=self.home, **extra)
        return env

    def cli_command(self) -> list[str]:
        return [QVD_ADMIN]

    def cli(self, *args: str, input: str | None = None, env: dict | None = None,
            real: bool = False):
        if not real and cli_in_process(args):
            from cli_inprocess import run_cli
            return run_cli(args, env or self.env(), input=input, timeout=CLI_TIMEOUT)
        return subprocess.run([QVD_ADMIN, *args], capture_output=True, text=True, input=input,
                              env=env or self.env(), timeout=CLI_TIMEOUT)

    @property
    def real(self) -> "RealBinary":
        """This environment, its qvd-admin always the real binary."""
        return RealBinary(self)

    def ok(self, *args: str, input: str | None = None) -> str:
        """Run qvd-admin and require success; return its stdout."""
        result = self.cli(*args, input=input)
        assert result.returncode == 0, f"qvd-admin {' '.join(args)}: {result.stderr}"
        return result.stdout

    def sql(self, query: str, **params):
        with self.engine.begin() as conn:
            result = conn.execute(text(query), params)
            return result.all() if result.returns_rows else None

    def take_failed_changes(self) -> list[str]:
        """The audit log's records of failed changes (their errors), removed: what a refused
        command may leave, so that a snapshot can show it changed nothing else."""
        return [error for error, in self.sql(
            "DELETE FROM admin_log WHERE status = 'failed' RETURNING error")]

    def snapshot(self) -> dict:
        """Every row of every table, to prove a failed command changed nothing."""
        with self.engine.connect() as conn:
            return {table.name: sorted(map(repr, conn.execute(table.select()).all()))
                    for table in Base.metadata.sorted_tables}

    def listen(self, *channels: str) -> psycopg.Connection:
        conn = psycopg.connect(**self.params, autocommit=True)
        for channel in channels:
            conn.execute(f"LISTEN {channel}")
        return conn


class RealBinary:
    """A QvdEnv whose cli() and ok() run the real qvd-admin; everything else is the env's."""

    def __init__(self, env: QvdEnv) -> None:
        self.wrapped = env

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

    def cli(self, *args: str, input: str | None = None, env: dict | None = None, real=True):
        return self.wrapped.cli(*args, input=input, env=env, real=True)

    def ok(self, *args: str, input: str | None = None) -> str:
        return QvdEnv.ok(self, *args, input=input)


def _copy_database(server: PgServer, template: str) -> str:
    dbname = f"test_{next(_numbers)}"
    with server.maintenance() as conn:
        conn.execute(f"CREATE DATABASE {dbname} TEMPLATE {template}")
    return dbname


@contextmanager
def _environment(server: PgServer, template: str, home: str):
    env = QvdEnv(server, _copy_database(server, template), home)
    try:
        yield env
    finally:
        env.engine.dispose()
        with server.maintenance() as conn:
            conn.execute(f"DROP DATABASE {env.dbname} WITH (FORCE)")


@pytest.fixture
def qvd(pg_server, tmp_path):
    """An empty, migrated database."""
    with _environment(pg_server, TEMPLATE, str(tmp_path)) as env:
        yield env


@pytest.fixture(scope="session")
def demo_template(pg_server, tmp_path_factory):
    """Built once with the CLI: tenant acme, user alice (password secret), OSF desktop
    (512 MiB) with DI v1, VM desk, node node1. Tests get copies of it."""
    home = str(tmp_path_factory.mktemp("demo"))
    with _environment(pg_server, TEMPLATE, home) as env:
        image = os.path.join(home, "image.tar")
        with open(image, "wb") as handle:
            handle.write(b"image v1")
        env.ok("tenant", "add", "name=acme")
        env.ok("user", "add", "-t", "acme", "login=alice", "password=secret")
        env.ok("osf", "add", "-t", "acme", "name=desktop", "memory=512")
        env.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=v1")
        env.ok("vm", "add", "-t", "acme", "name=desk", "user=alice", "osf=desktop")
        env.ok("host", "add", "name=node1", "address=127.0.0.2")
        with pg_server.maintenance() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DEMO_TEMPLATE}")
            conn.execute(f"CREATE DATABASE {DEMO_TEMPLATE} TEMPLATE {env.dbname}")
    return env.storage


@pytest.fixture
def demo(pg_server, demo_template, tmp_path):
    """A copy of the demo template database, with its own copy of the image store."""
    with _environment(pg_server, DEMO_TEMPLATE, str(tmp_path)) as env:
        shutil.copytree(demo_template, env.storage)
        yield env


def make_host_running(qvd, name: str, ram: int = 4096) -> int:
    """What a live qvd-hkd does to its row: running, a fresh lease, its usable RAM."""
    (host_id,), = qvd.sql("SELECT id FROM hosts WHERE name = :n", n=name)
    qvd.sql("UPDATE host_runtimes SET state = 'running', ok_ts = now(), usable_ram = :ram "
            "WHERE host_id = :id", ram=ram, id=host_id)
    return host_id


from slapd import slapd  # noqa: E402,F401  (session fixture: a real LDAP server, tests/slapd.py)
from libvirtd import libvirtd  # noqa: E402,F401  (session fixture: tests/libvirtd.py)
from browser import browser, page  # noqa: E402,F401  (headless Chromium: tests/browser.py)


# Under CI (.ci/run runs with CI=true) the whole suite must really run: a test, or a module,
# that skips there (a missing package, root, a tool) fails the run, with the skip's reason.
def _under_ci() -> bool:
    return os.environ.get("CI") == "true"


def _fail_a_skip(report) -> None:
    if _under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_a_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_a_skip(outcome.get_result())
