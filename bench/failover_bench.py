"""Failover benchmark (python -m bench.failover_bench; part of make bench).

Two real qvd-hkd processes (process backend: each VM is a real qvd-vma process) on one private
database. Node 1 runs every VM; then it is cut from the cluster, in two ways: killed (SIGKILL:
a crash or a power cut, as the cluster sees it), or partitioned (its daemon and watchdog run
on, but its database traffic goes through a forwarder that is stopped: nothing fails, nothing
answers). Measured from the cut:
  - until node 1's VMs are dead (killed by its watchdog, or by node 1 itself when partitioned),
    against hkd.lease.fence_timeout;
  - until node 2's cluster monitor has declared node 1 lost and released its VMs (stopped,
    no host: startable elsewhere), against hkd.cluster.node_timeout;
  - until every VM runs again on node 2, each started (placement + command, as qvd-admin
    does) as soon as it is released, against the node timeout plus a VM start on a live
    node measured in the same run;
  - how many VMs ever ran on both nodes at once (sampled all along; goal 0).
The timings are the node files' (the shipped defaults unless told otherwise). The database
going away under both nodes (an outage, a standby promotion) is bench/db_away.py's, run here
too, always with the shipped timeouts.
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
from qvd.hkd.backends.procfs import alive

from . import db_away
from .cluster_nodes import Hkd, database_conf, host_state, place_and_start, seed, states
from .common import Row, private_database, table
from .node import wait

TIMINGS = ("hkd.lease.interval", "hkd.lease.fence_timeout", "hkd.cluster.node_timeout")
TCP_PROXY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                         "tcp_proxy.py")  # a TCP forwarder run as its own process


def _forwarder(params: dict) -> tuple[subprocess.Popen, int]:
    """A forwarder to the database (SIGSTOP on it is the partition) and its port."""
    proc = subprocess.Popen([sys.executable, TCP_PROXY, "127.0.0.1", str(params["port"])],
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def _cut_node1(vms: int, timings: dict, cut: str) -> dict:
    """cut: 'kill' (SIGKILL of node 1's daemon) or 'partition' (its database traffic stopped)."""
    conf = {key: str(value) for key, value in timings.items()}
    cfg = Config(node=conf)
    with private_database() as (root, params), \
            psycopg.connect(**params, autocommit=True) as db:
        seed(db, root, vms)
        proxy, database1 = None, database_conf(params)
        if cut == "partition":
            proxy, port = _forwarder(params)
            database1 = dict(database1, **{"database.host": "127.0.0.1", "database.port": port})
        nodes = [Hkd(root, database1, "node1", conf), Hkd(root, database_conf(params), "node2",
                                                          conf)]
        try:
            for node in nodes:
                node.start()
            wait(lambda: all(host_state(db, h) == "running" for h in (1, 2)), 60)
            # Every VM on node 1; how long a start takes on a live node (the last VM's).
            began = time.monotonic()
            db.execute("UPDATE vm_runtimes SET host_id = 1, vm_cmd = 'start'")
            wait(lambda: all(s[0] == "running" for s in states(db).values()), 120)
            start_s = time.monotonic() - began
            pids = {vm: pid for vm, (_, _, pid) in states(db).items()}
            # The cut, right after a lease renewal of node 1 would be the best case and right
            # before one the worst: it comes at an arbitrary moment.
            if cut == "kill":
                os.kill(nodes[0].proc.pid, signal.SIGKILL)
                nodes[0].proc.wait()
            else:
                proxy.send_signal(signal.SIGSTOP)
            cut_at = time.monotonic()
            seen: dict[str, float] = {}
            released: dict[int, float] = {}
            running: dict[int, float] = {}
            twice: set[int] = set()  # VMs seen on node 2 while their node 1 copy still ran
            deadline = cut_at + 3 * timings["hkd.cluster.node_timeout"] + 60
            while len(running) < vms:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"failover incomplete: {len(released)} released, "
                                       f"{len(running)} running again")
                now = time.monotonic() - cut_at
                if "killed" not in seen and not any(alive(pid) for pid in pids.values()):
                    seen["killed"] = now
                if "lost" not in seen and host_state(db, 1) == "lost":
                    seen["lost"] = now
                for vm, (state, host, _) in states(db).items():
                    if vm not in released and state == "stopped" and host is None:
                        released[vm] = now
                        if place_and_start(db, cfg, vm) != 2:
                            raise RuntimeError(f"vm {vm} could not be placed on node2")
                    elif vm in released and vm not in running and state == "running":
                        assert host == 2
                        running[vm] = now
                    if host == 2 and state in ("starting", "running") and alive(pids[vm]):
                        twice.add(vm)
                time.sleep(0.02)
        finally:
            if proxy is not None:
                proxy.send_signal(signal.SIGCONT)
            for node in nodes:
                node.cleanup()
            if proxy is not None:
                proxy.kill()
                proxy.wait()
    return {"vms": vms, **timings, "start_s": start_s, "killed_s": seen.get("killed"),
            "lost_s": seen.get("lost"), "released_s": max(released.values()),
            "running_s": max(running.values()), "overlap": len(twice),
            "released": sorted(released.values()), "running": sorted(running.values())}


def run(vms: int, timings: dict, outage: bool = True) -> dict:
    """The kill and the partition with `timings`; the outage and the promotion (shipped
    timings) unless `outage` is False."""
    cfg = Config(node={key: str(value) for key, value in timings.items()})
    timings = {key: cfg.get_float(key) for key in TIMINGS}
    result = _cut_node1(vms, timings, "kill")
    result["partition"] = _cut_node1(vms, timings, "partition")
    result["overlap"] += result["partition"]["overlap"]
    if outage:
        result["outage"] = db_away.outage()
        result["promotion"] = db_away.promotion()
    return result


def _cut_rows(result: dict, key: str, how: str, killed_by: str) -> list[Row]:
    n, timeout = result["vms"], result["hkd.cluster.node_timeout"]
    return [
        Row(f"{key}_watchdog" if key == "failover" else f"{key}_fenced",
            f"{how} -> its {n} VMs killed by {killed_by}", result["killed_s"], "s",
            result["hkd.lease.fence_timeout"], "hkd.lease.fence_timeout, configured"),
        Row(f"{key}_released", f"{how} -> its {n} VMs released, startable elsewhere",
            result["released_s"], "s", timeout, "hkd.cluster.node_timeout, configured"),
        Row(f"{key}_running", f"{how} -> its {n} VMs running on node 2", result["running_s"],
            "s", timeout + result["start_s"],
            f"node timeout + starting {n} VMs on a live node, same run"),
    ]


def rows(result: dict) -> list[Row]:
    found = _cut_rows(result, "failover", "failover: node 1 killed", "its watchdog")
    partition = result["partition"]
    found += _cut_rows(partition, "partition", "partition: node 1 cut off from a live "
                       "database", "node 1 itself (fenced)")
    found.append(Row("partition_twice", "partition: VMs that ran on both nodes at once "
                     "(sampled all along)", partition["overlap"], "VMs", None, "goal 0"))
    if "outage" in result:
        away, promoted = result["outage"], result["promotion"]
        lease = away["hkd.lease.interval"]
        found += [
            Row("outage_lost", f"database outage of {away['outage_s']:g} s, 2 nodes, "
                f"{away['desktops']} desktops connected through their L7Rs -> desktops lost",
                away["lost"], "desktops", None, "goal 0"),
            Row("outage_served", "database outage -> first command served (claimed) by each "
                "node after the database returns", away["served_s"], "s", lease,
                "hkd.lease.interval, shipped default"),
            Row("promotion_lost", f"standby promotion (pg_basebackup standby, pg_ctl promote), "
                f"2 nodes -> VMs lost of {promoted['vms']}", promoted["lost"], "VMs", None,
                "goal 0"),
            Row("promotion_served", "standby promotion -> a command served (claimed) by each "
                "node, from the promotion", promoted["served_s"], "s", lease,
                "hkd.lease.interval, shipped default"),
        ]
    return found


def distributions(result: dict) -> dict:
    return {"failover": ("failover: from node 1's death (SIGKILL), per VM", "s", {
        "released (stopped, no host)": result["released"],
        "running again on node 2": result["running"]})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=5)
    parser.add_argument("--no-outage", action="store_true",
                        help="leave out the database outage and the standby promotion")
    for key in TIMINGS:
        parser.add_argument("--" + key.rsplit(".", 1)[1].replace("_", "-"), type=float,
                            dest=key, help=f"{key} (default: the shipped default)")
    args = parser.parse_args()
    timings = {key: getattr(args, key) for key in TIMINGS if getattr(args, key) is not None}
    result = run(args.vms, timings, outage=not args.no_outage)
    print(table(rows(result)))
    print(f"\nVMs started on node 2 while their copy on node 1 still ran: {result['overlap']}")
    if "outage" in result:
        away = result["outage"]
        print(f"outage: nodes declared lost {away['nodes_lost']}, nodes that fenced "
              f"{away['fenced']}, a bare query {away['bare_query_s'] * 1000:.0f} ms after the "
              "restart; the promotion itself (stop + promote) took "
              f"{result['promotion']['failover_s']:.2f} s")


if __name__ == "__main__":
    main()
