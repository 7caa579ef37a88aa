"""Failover benchmark (python -m bench.failover_bench; part of make bench).

Two real qvd-hkd processes (process backend: each VM is a real qvd-vma process) on one private
database. Node 1 runs every VM; it is then killed (SIGKILL: its death, as a crash or a power
cut looks from the cluster). Measured from the kill:
  - until the dead node's watchdog has killed its VMs, against hkd.lease.fence_timeout;
  - until node 2's cluster monitor has declared node 1 lost and released its VMs (stopped,
    no host: startable elsewhere), against hkd.cluster.node_timeout;
  - until every VM runs again on node 2, each started (placement + command, as qvd-admin
    does) as soon as it is released, against the node timeout plus a VM start on a live
    node measured in the same run.
The timings are the node files' (the shipped defaults unless told otherwise).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import psycopg

from qvd.db.config import Config
from qvd.db.placement import CANDIDATES, placement_params
from qvd.hkd.backends.procfs import alive
from qvd.hkd.backends.process import ProcessBackend
from qvd.hkd.pidfile import PidFile, end_child

from .common import Row, private_database, table
from .node import wait

QVD_HKD = os.path.join(os.path.dirname(sys.executable), "qvd-hkd")
TIMINGS = ("hkd.lease.interval", "hkd.lease.fence_timeout", "hkd.cluster.node_timeout")

SEED = """
INSERT INTO users (tenant_id, login) VALUES (1, 'bench');
INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'bench', 1);
INSERT INTO dis (osf_id, path, version) VALUES (1, 'bench.tar', 'v1');
INSERT INTO di_tags (di_id, osf_id, tag) VALUES (1, 1, 'default');
INSERT INTO hosts (name, address) VALUES ('node1', '127.0.0.1'), ('node2', '127.0.0.2');
INSERT INTO host_runtimes (host_id) VALUES (1), (2);
"""

# What qvd-admin vm start writes once placement chose the node.
START = """
UPDATE vm_runtimes SET host_id = %(host)s, vm_cmd = 'start', last_error = NULL,
       last_error_at = NULL
WHERE vm_id = %(vm)s AND vm_state = 'stopped' AND vm_cmd IS NULL AND NOT blocked
RETURNING vm_id"""


class Hkd:
    """One qvd-hkd process and what it leaves behind."""

    def __init__(self, root: str, params: dict, name: str, timings: dict):
        self.name, self.params = name, params
        self.home = os.path.join(root, name)
        self.run_dir, self.storage = os.path.join(self.home, "run"), os.path.join(root, "storage")
        self.conf = os.path.join(self.home, "node.conf")
        os.makedirs(self.home)
        lines = {"nodename": name, "path.home": self.home, "path.run": self.run_dir,
                 "path.log": f"{self.home}/log", "path.storage.root": self.storage,
                 "vm.hypervisor": "process", "database.host": params["host"],
                 "database.port": params["port"], "database.user": params["user"],
                 "database.password": params["password"], "database.name": params["dbname"],
                 **timings}
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.writelines(f"{key} = {value}\n" for key, value in lines.items())
        env = {k: v for k, v in os.environ.items() if not k.startswith("QVD_")}
        with open(os.path.join(self.home, "hkd.log"), "ab") as log:
            self.proc = subprocess.Popen([QVD_HKD], env=dict(env, QVD_CONFIG=self.conf),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def cleanup(self) -> None:
        """Stop everything this node started, by PID: qvd-hkd, its watchdog, its VMs."""
        end_child(self.proc, 60)
        PidFile(os.path.join(self.run_dir, f"watchdog-{self.name}.pid")).stop(wait=2)
        ProcessBackend(self.storage, self.run_dir).kill_all()


def _states(db) -> dict[int, tuple]:
    return {vm: (state, host, pid) for vm, state, host, pid in db.execute(
        "SELECT vm_id, vm_state, host_id, vm_pid FROM vm_runtimes ORDER BY vm_id")}


def _host_state(db, host: int) -> str:
    return db.execute("SELECT state FROM host_runtimes WHERE host_id = %s", (host,)).fetchone()[0]


def _place_and_start(db, cfg: Config, vm: int) -> int | None:
    """Placement, then the start command, in one transaction (qvd-admin vm start's way)."""
    with db.transaction():
        host = db.execute(CANDIDATES, placement_params(cfg, 1)).fetchone()
        if host is None or not db.execute(START, {"host": host[0], "vm": vm}).fetchone():
            return None
        return host[0]


def run(vms: int, timings: dict) -> dict:
    cfg = Config(node={key: str(value) for key, value in timings.items()})
    timings = {key: cfg.get_float(key) for key in TIMINGS}
    with private_database() as (root, params), \
            psycopg.connect(**params, autocommit=True) as db:
        db.execute(SEED)
        db.execute("INSERT INTO vms (name, user_id, osf_id, ip) SELECT 'vm' || n, 1, 1, "
                   "'10.1.0.0'::inet + n FROM generate_series(1, %s) n", (vms,))
        db.execute("INSERT INTO vm_runtimes (vm_id) SELECT id FROM vms")
        db.execute("INSERT INTO vm_counters (vm_id) SELECT id FROM vms")
        os.makedirs(os.path.join(root, "storage", "images"))
        open(os.path.join(root, "storage", "images", "bench.tar"), "wb").close()
        nodes = [Hkd(root, params, name, {k: str(v) for k, v in timings.items()})
                 for name in ("node1", "node2")]
        try:
            wait(lambda: all(_host_state(db, h) == "running" for h in (1, 2)), 60)
            # Every VM on node 1; how long a start takes on a live node (the last VM's).
            began = time.monotonic()
            db.execute("UPDATE vm_runtimes SET host_id = 1, vm_cmd = 'start'")
            wait(lambda: all(s[0] == "running" for s in _states(db).values()), 120)
            start_s = time.monotonic() - began
            pids = [pid for _, _, pid in _states(db).values()]
            # The kill, right after a lease renewal of node 1 would be the best case and
            # right before one the worst: the kill comes at an arbitrary moment.
            os.kill(nodes[0].proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            nodes[0].proc.wait()
            seen: dict[str, float] = {}
            released: dict[int, float] = {}
            running: dict[int, float] = {}
            overlap = 0  # VMs started on node 2 while their node 1 copy still ran
            deadline = killed_at + 3 * timings["hkd.cluster.node_timeout"] + 60
            while len(running) < vms:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"failover incomplete: {len(released)} released, "
                                       f"{len(running)} running again")
                now = time.monotonic() - killed_at
                if "watchdog" not in seen and not any(alive(pid) for pid in pids):
                    seen["watchdog"] = now
                if "lost" not in seen and _host_state(db, 1) == "lost":
                    seen["lost"] = now
                for vm, (state, host, _) in _states(db).items():
                    if vm not in released and state == "stopped" and host is None:
                        released[vm] = now
                        overlap += any(alive(pid) for pid in pids)
                        if _place_and_start(db, cfg, vm) != 2:
                            raise RuntimeError(f"vm {vm} could not be placed on node2")
                    elif vm in released and vm not in running and state == "running":
                        assert host == 2
                        running[vm] = now
                time.sleep(0.02)
        finally:
            for node in nodes:
                node.cleanup()
    return {"vms": vms, **timings, "start_s": start_s, "watchdog_s": seen.get("watchdog"),
            "lost_s": seen.get("lost"), "released_s": max(released.values()),
            "running_s": max(running.values()), "overlap": overlap,
            "released": sorted(released.values()), "running": sorted(running.values())}


def rows(result: dict) -> list[Row]:
    n, timeout = result["vms"], result["hkd.cluster.node_timeout"]
    return [
        Row("failover_watchdog", f"failover: node 1 killed -> its {n} VMs killed by its "
            "watchdog", result["watchdog_s"], "s", result["hkd.lease.fence_timeout"],
            "hkd.lease.fence_timeout, configured"),
        Row("failover_released", f"failover: node 1 killed -> its {n} VMs released, startable "
            "elsewhere", result["released_s"], "s", timeout,
            "hkd.cluster.node_timeout, configured"),
        Row("failover_running", f"failover: node 1 killed -> its {n} VMs running on node 2",
            result["running_s"], "s", timeout + result["start_s"],
            f"node timeout + starting {n} VMs on a live node, same run"),
    ]


def distributions(result: dict) -> dict:
    return {"failover": ("failover: from node 1's death (SIGKILL), per VM", "s", {
        "released (stopped, no host)": result["released"],
        "running again on node 2": result["running"]})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=5)
    for key in TIMINGS:
        parser.add_argument("--" + key.rsplit(".", 1)[1].replace("_", "-"), type=float,
                            dest=key, help=f"{key} (default: the shipped default)")
    args = parser.parse_args()
    timings = {key: getattr(args, key) for key in TIMINGS if getattr(args, key) is not None}
    result = run(args.vms, timings)
    print(table(rows(result)))
    print(f"\nVMs started on node 2 while their copy on node 1 still ran: {result['overlap']}")


if __name__ == "__main__":
    main()
