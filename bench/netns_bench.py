"""A cluster of machines on one (python -m bench.netns_bench; issue 20). Root, LXC, iproute2.

Two real qvd-hkd nodes with the LXC backend, each in a network namespace of its own
(tests/netns_cluster.py: a LAN switch with the database's forwarder, a VM switch joining the
nodes' uplinks), one container, the node timeouts of the tests (hkd_nodes.FAST).

- Warm connect (new TLS connection, password login, list_of_vm, connect_to_vm, 101, the
  first desktop byte) to the container on node 2, through node 2's own L7R and through node
  1's, which reaches it across the VM switch; in turns. Goal: no difference beyond one hop.
- Node 2 cut off (its links down) while it runs the container: from the cut until its
  container is stopped (it fenced itself; against hkd.lease.fence_timeout), until node 1
  declared it lost and released the VM (against hkd.cluster.node_timeout), and until the
  desktop, asked for through node 1 as soon as the VM was released, shows its first byte
  (against the node timeout plus a cold connect through node 1 in the same run).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

from sqlalchemy import text
from sqlalchemy.pool import NullPool

from qvd.db.config import Config
from qvd.db.engine import enable_l7r_role, make_engine
from qvd.hkd.backends import host_di
from qvd.l7r.client import QvdConnection, accepting, tls_context

from .common import (Row, database_conf, ms, private_database, summary, table,
                     write_certificate)
from .node import wait

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
BIN = os.path.dirname(sys.executable)
UPGRADE = {"Connection": "Upgrade", "Upgrade": "QVD/1.0"}
LXC_CONF = (f"vm.hypervisor = lxc\nvm.lxc.init = {host_di.AGENT}\nvm.lxc.unionfs.bind.fstab = 1\n"
            "internal.hkd.timeout.vm.state.stopping_shutdown = 10\n")


def usable() -> str | None:
    """Why this benchmark cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, LXC)"
    missing = [tool for tool in ("ip", "nft", "lxc-start") if not shutil.which(tool)]
    return f"missing {', '.join(missing)}" if missing else None


class ClusterEnv:
    """What tests/netns_cluster.py asks of the tests' QvdEnv, over a private database."""

    def __init__(self, home: str, params: dict, l7r_password: str):
        self.home, self.params, self.l7r_password = home, params, l7r_password
        self.storage = os.path.join(home, "storage")
        self.server = SimpleNamespace(params=params)
        self.engine = make_engine(params, poolclass=NullPool)
        self.conf = os.path.join(home, "admin.conf")
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.write(f"nodename = admin\npath.home = {home}\n"
                         f"path.storage.root = {self.storage}\n{self.database_conf()}")

    def database_conf(self) -> str:
        return database_conf(self.params, self.l7r_password)

    def sql(self, query: str, **params):
        with self.engine.begin() as conn:
            result = conn.execute(text(query), params)
            return result.all() if result.returns_rows else None

    def ok(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QVD_")}
        done = subprocess.run([os.path.join(BIN, "qvd-admin"), *args], capture_output=True,
                              text=True, env=dict(env, QVD_CONFIG=self.conf, QVD_HOME=self.home),
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"qvd-admin {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def _desktop(node, cert: str) -> float:
    """Seconds from a new TLS connection to the desktop's first byte through node's L7R."""
    began = time.perf_counter()
    conn = QvdConnection(node.address, node.port, tls_context(cafile=cert, verify=False))
    try:
        conn.login("bench", "bench")
        assert conn.list_of_vm().status == 200
        reply = conn.request("/qvd/connect_to_vm", {"id": 1}, UPGRADE)
        assert reply.status == 101, (reply.status, reply.body)
        if not conn.buffer:
            conn.buffer = conn.sock.recv(64)
        return time.perf_counter() - began
    finally:
        conn.close()


def _vm(env) -> tuple:
    return tuple(env.sql("SELECT h.name, r.vm_state, r.user_state FROM vm_runtimes r "
                         "LEFT JOIN hosts h ON h.id = r.host_id WHERE r.vm_id = 1")[0])


def _backends(env, cluster, serving) -> None:
    """Only `serving` takes VMs (the other node still serves clients: backend=0)."""
    for node in cluster.nodes:
        env.ok("host", "edit", "-f", f"name={node.name}", f"backend={int(node is serving)}")


def run(count: int) -> dict:
    reason = usable()
    if reason:
        return {"skipped": reason}
    sys.path.insert(0, TESTS)
    from hkd_nodes import FAST
    from netns_cluster import LAN_LINK, UPLINK, VM_NETWORK, NetnsCluster, in_node
    from netns_lab import ip
    from test_lxc import open_way
    fast = Config(node=dict(line.split(" = ", 1) for line in FAST.splitlines()
                            if " = " in line and not line.startswith("#")))
    with private_database("netns") as (_, params), tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o755)
        l7r_password = os.urandom(12).hex()
        enable_l7r_role(make_engine(params, poolclass=NullPool), l7r_password)
        env = ClusterEnv(home, params, l7r_password)
        open_way(os.path.join(env.storage, "lxc"))
        image = os.path.join(home, "host-di.tar")
        host_di.build(image)
        write_certificate(home)
        cert = os.path.join(home, "cert.pem")
        env.ok("config", "ssl", "--cert", cert, "--key", os.path.join(home, "key.pem"))
        env.ok("osf", "add", "name=lxc", "memory=256")
        env.ok("di", "add", f"path={image}", "osf=lxc", "version=host", "trusted=1")
        env.ok("config", "set", *(f"{key}={value}" for key, value in VM_NETWORK.items()))
        env.ok("user", "add", "login=bench", "password=bench")
        env.ok("vm", "add", "name=box", "user=bench", "osf=lxc")
        cluster = NetnsCluster(env, 2)
        try:
            cluster.up()
            for number in (1, 2):
                node = cluster.node(f"node{number}", number, LXC_CONF)
                node.start()
                wait(lambda: accepting(node.address, node.port), 30)
            node1, node2 = cluster.nodes
            lxc = os.path.join(env.storage, "lxc")

            def stopped_on_node2() -> bool:
                shown = in_node(node2, "lxc-info", "-n", "qvd-1", "-P", lxc, "-s").stdout
                return "RUNNING" not in shown

            _backends(env, cluster, node1)  # a cold connect through node 1: the floor
            cold = _desktop(node1, cert)
            env.ok("vm", "stop", "-f", "name=box")
            wait(lambda: _vm(env)[:2] == (None, "stopped"), 60)
            _backends(env, cluster, node2)
            _desktop(node2, cert)  # the container now runs on node 2
            own, other = [], []
            for _ in range(count):
                for node, samples in ((node2, own), (node1, other)):
                    wait(lambda: _vm(env)[2] == "disconnected", 30)
                    samples.append(_desktop(node, cert))
            _backends(env, cluster, node1)
            wait(lambda: _vm(env)[2] == "disconnected", 30)
            cut = time.monotonic()
            for link in (LAN_LINK, UPLINK):
                ip("-n", node2.ns, "link", "set", link, "down")
            fenced = released = None  # seconds from the cut
            while released is None:
                if fenced is None and stopped_on_node2():
                    fenced = time.monotonic() - cut
                if _vm(env)[:2] == (None, "stopped"):
                    released = time.monotonic() - cut
            again = time.monotonic() - cut + _desktop(node1, cert)
            for link in (LAN_LINK, UPLINK):
                ip("-n", node2.ns, "link", "set", link, "up")
            wait(lambda: node2.state()[0] == "running", 60)
        finally:
            with contextlib.redirect_stdout(io.StringIO()):  # the nodes' logs, for tests
                cluster.down()
    return {"own": summary(ms(own)), "other": summary(ms(other)), "cold_s": cold,
            "fenced_s": fenced, "released_s": released, "again_s": again,
            "fence_timeout": fast.get_float("hkd.lease.fence_timeout"),
            "node_timeout": fast.get_float("hkd.cluster.node_timeout")}


def rows(result: dict) -> list[Row]:
    if "skipped" in result:
        return [Row("netns_warm_other_p50", "warm connect through another node", None, "ms",
                    note=result["skipped"])]
    own, other = result["own"], result["other"]
    return [
        Row("netns_warm_other_p50", "warm connect through the other node's L7R, p50",
            other["p50"], "ms", own["p50"], "through the VM's own node, p50"),
        Row("netns_warm_other_p99", "warm connect through the other node's L7R, p99",
            other["p99"], "ms", own["p99"], "through the VM's own node, p99"),
        Row("netns_cut_fenced", "node cut off: its container stopped", result["fenced_s"], "s",
            result["fence_timeout"], "hkd.lease.fence_timeout",
            "" if result["fenced_s"] is not None else "not stopped before its VM was released"),
        Row("netns_cut_released", "node cut off: its VM released by the other",
            result["released_s"], "s", result["node_timeout"], "hkd.cluster.node_timeout"),
        Row("netns_cut_again", "node cut off: the desktop again, on the other node",
            result["again_s"], "s", result["node_timeout"] + result["cold_s"],
            "node timeout + a cold connect"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="warm connects per node")
    args = parser.parse_args()
    print(table(rows(run(args.count)), "qvd cluster"))


if __name__ == "__main__":
    main()
