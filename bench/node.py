"""One real node for the benchmarks: a private PostgreSQL, qvd-hkd with its L7R on loopback,
the process backend, and `users` users (bench0, bench1...) each with one VM."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import psycopg
from sqlalchemy.pool import NullPool

from qvd.db.engine import enable_l7r_role, make_engine
from qvd.hkd.backends.process import free_port
from qvd.l7r import prefork
from qvd.l7r.client import QvdConnection, accepting, tls_context

from .common import database_conf, private_database, write_certificate

BIN = os.path.dirname(sys.executable)
UPGRADE = {"Connection": "Upgrade", "Upgrade": "QVD/1.0"}


def wait(check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.02)


class BenchNode:
    def __init__(self, home: str, params: dict, port: int):
        self.home, self.params, self.port = home, params, port
        self.env = dict(os.environ, QVD_CONFIG=os.path.join(home, "node.conf"))
        self.db = psycopg.connect(**params, autocommit=True)
        self.tls = tls_context(verify=False)

    def admin(self, *args: str) -> None:
        subprocess.run([os.path.join(BIN, "qvd-admin"), *args], env=self.env, check=True,
                       capture_output=True)

    def states(self) -> list[tuple]:
        return self.db.execute("SELECT vm_id, vm_state, user_state FROM vm_runtimes "
                               "ORDER BY vm_id").fetchall()

    def state(self, vm_id: int) -> tuple:
        return tuple(self.db.execute("SELECT vm_state, user_state FROM vm_runtimes WHERE "
                                     "vm_id = %s", (vm_id,)).fetchone())

    def login(self, user: int = 0) -> QvdConnection:
        conn = QvdConnection("127.0.0.1", self.port, self.tls)
        conn.login(f"bench{user}", "bench")
        return conn

    def connect_desktop(self, user: int = 0, vm_id: int | None = None) -> QvdConnection:
        """New TLS connection, auth, list, connect, 101, first desktop byte."""
        conn = self.login(user)
        assert conn.list_of_vm().status == 200
        reply = conn.request("/qvd/connect_to_vm", {"id": vm_id or user + 1}, UPGRADE)
        assert reply.status == 101, reply.body
        if not conn.buffer:
            conn.buffer = conn.sock.recv(64)
        return conn

    def l7r_children(self) -> list[int]:
        with open(os.path.join(self.home, "run", "l7r-bench.pid"), encoding="ascii") as handle:
            acceptor = int(handle.read().split()[0])
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == acceptor and fields[0] != "Z" \
                        and not prefork.is_ready(entry):  # waiting for a client: no session
                    children.append(int(entry))
        return children


def uss_kib(pid: int) -> int:
    """Unique set size: the memory only this process holds (private pages)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


@contextmanager
def bench_node(users: int = 1, hypervisor: str = "process", node_conf: str = "",
               image=None, memory: int = 64, di_properties: tuple[str, ...] = (),
               di_trusted: bool = False):
    """image(home) -> path of the DI to use (default: an empty file for the process backend)."""
    with private_database() as (root, params), tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o755)  # qemu (libvirt-qemu) must reach the disks
        port = free_port()
        l7r_password = secrets.token_urlsafe(24)  # the L7R logs in as its own role, as deployed
        enable_l7r_role(make_engine(params, poolclass=NullPool), l7r_password)
        with open(os.path.join(home, "node.conf"), "w", encoding="utf-8") as handle:
            handle.write(f"nodename = bench\npath.home = {home}\npath.run = {home}/run\n"
                         f"path.log = {home}/log\npath.storage.root = {home}/storage\n"
                         f"vm.hypervisor = {hypervisor}\nl7r.address = 127.0.0.1\nl7r.port = {port}\n"
                         f"{database_conf(params, l7r_password)}{node_conf}")
        write_certificate(home)
        open(os.path.join(home, "image.tar"), "w", encoding="ascii").close()
        node = BenchNode(home, params, port)
        node.admin("config", "ssl", "--cert", f"{home}/cert.pem", "--key", f"{home}/key.pem")
        node.admin("osf", "add", "name=desk", f"memory={memory}", "user_storage=32")
        node.admin("di", "add", f"path={image(home) if image else home + '/image.tar'}",
                   "osf=desk", *(["trusted=1"] if di_trusted else []))
        if di_properties:
            node.admin("di", "propset", "-f", "osf=desk", *di_properties)
        node.admin("host", "add", "name=bench", "address=127.0.0.1")
        for user in range(users):
            node.admin("user", "add", f"login=bench{user}", "password=bench")
            node.admin("vm", "add", f"name=desk{user}", f"user=bench{user}", "osf=desk")
        with open(os.path.join(home, "hkd.log"), "ab") as log:
            hkd = subprocess.Popen([os.path.join(BIN, "qvd-hkd")], env=node.env, stdout=log,
                                   stderr=log)
        try:
            wait(lambda: accepting("127.0.0.1", port))
            yield node
        finally:
            hkd.terminate()
            hkd.wait(60)
            from qvd.db.config import Config
            from qvd.hkd.backends import make_backend
            make_backend(Config(node={
                "vm.hypervisor": hypervisor, "path.storage.root": os.path.join(home, "storage"),
                "path.run": os.path.join(home, "run"), "path.log": os.path.join(home, "log"),
                **dict(line.split(" = ", 1) for line in node_conf.splitlines() if " = " in line)
            })).kill_all()
            node.db.close()
