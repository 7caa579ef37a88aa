"""Cluster-scale benchmark (python -m bench.scale_bench; part of make bench).

A simulated cluster: N nodes (the real node code with the fake backend and fake VMAs:
bench.fake_nodes.BenchFakeNode), each managing 200 running VMs, on one private PostgreSQL;
the nodes run as asyncio tasks in a few worker processes. For N = 10, 25, 50:
  - idle load: statements per second the nodes send (each node counts the statements it
    sends, as bench.hkd_bench does), against its linear growth from the smallest cluster
    (N / 10 times the 10-node cluster's, same run). Not pg_stat_database.xact_commit:
    PostgreSQL publishes an idle connection's counts up to 10 s late, which a 10 s window
    cannot absorb;
  - a storm of 1,000 starts: 1,000 stopped VMs, each placed and commanded (placement query +
    UPDATE, one transaction each, 4 concurrent clients, as qvd-admin or the L7R do), timed
    until all 1,000 are running, against the time the commands alone took to commit.
Every process (PostgreSQL, the nodes, the clients) shares this machine's cores: real nodes
each have their own machine, so the storm figures are an upper bound.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time

import psycopg

from qvd.db.config import Config
from qvd.db.placement import CANDIDATES, placement_params

from .common import Row, private_database, table
from .fake_nodes import CLUSTER_SEED, NodeProcesses, seed
from .node import wait

SIZES = (10, 25, 50)
VMS_PER_NODE = 200
STORM = 1000
CLIENTS = 4

# VMs 1..running are running, VMS_PER_NODE per node (as a restarted node finds them and adopts
# them); the STORM others are stopped.
SEED = CLUSTER_SEED + """
INSERT INTO users (tenant_id, login) VALUES (1, 'bench');
INSERT INTO vms (name, user_id, osf_id, ip)
  SELECT 'vm' || n, 1, 1, '10.1.0.0'::inet + n FROM generate_series(1, %(vms)s) n;
INSERT INTO vm_runtimes (vm_id) SELECT id FROM vms;
INSERT INTO vm_counters (vm_id) SELECT id FROM vms;
UPDATE vm_runtimes SET host_id = (vm_id - 1) / %(per_node)s + 1, vm_state = 'running',
       vm_address = '127.0.0.1', vm_vma_port = 10000 + vm_id, vm_x_port = 20000 + vm_id
WHERE vm_id <= %(running)s;
"""

START = """
UPDATE vm_runtimes SET host_id = %(host)s, vm_cmd = 'start', last_error = NULL,
       last_error_at = NULL
WHERE vm_id = %(vm)s AND vm_state = 'stopped' AND vm_cmd IS NULL AND NOT blocked
RETURNING clock_timestamp()"""


# --- the measurements ---------------------------------------------------------------------
async def _storm(params: dict, first_vm: int) -> tuple[float, list[float], int]:
    """Place and command STORM VMs from CLIENTS connections; (seconds to commit them all,
    the DB clock time of each commit relative to the first, VMs no node would take)."""
    cfg_params = placement_params(Config(), 1)
    todo = iter(range(first_vm, first_vm + STORM))
    committed, refused = [], 0

    async def client():
        nonlocal refused
        async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
            for vm in todo:
                async with conn.transaction():
                    host = await (await conn.execute(CANDIDATES, cfg_params)).fetchone()
                    row = host and await (await conn.execute(
                        START, {"host": host[0], "vm": vm})).fetchone()
                if row:
                    committed.append(row[0])
                else:
                    refused += 1
    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.monotonic() - began, committed, refused


def measure_size(params: dict, root: str, nodes: int, processes: int, idle_seconds: float,
                 settle: float) -> dict:
    running_vms = nodes * VMS_PER_NODE
    with psycopg.connect(**params, autocommit=True) as db:
        values = {"nodes": nodes, "vms": running_vms + STORM, "per_node": VMS_PER_NODE,
                  "running": running_vms}
        seed(db, SEED, values)
        db.execute("VACUUM ANALYZE")  # as a database in service is: planner statistics known
        workers = NodeProcesses(params, root, [f"node{n}" for n in range(1, nodes + 1)],
                                processes, running=VMS_PER_NODE)
        try:
            began = time.monotonic()
            wait(lambda: (s := workers.status())["serving"] == nodes
                 and s["machines"] == running_vms, 300)
            ready_s = time.monotonic() - began
            time.sleep(settle)
            q0, t0 = workers.status()["queries"], time.monotonic()
            # One node's few periodic statements (every 2, 10 and 30 s) make a coarse rate:
            # it is counted over three times as long.
            time.sleep(idle_seconds * (3 if nodes == 1 else 1))
            q1, t1 = workers.status()["queries"], time.monotonic()
            # The storm: DB clock at its start, then every VM's running time by the DB clock.
            (storm_began,) = db.execute("SELECT clock_timestamp()").fetchone()
            q2 = workers.status()["queries"]
            issue_s, committed, refused = asyncio.run(_storm(params, running_vms + 1))
            if refused:
                raise RuntimeError(f"{refused} storm VMs found no node")
            wait(lambda: time.sleep(0.1) or db.execute(
                "SELECT count(*) FROM vm_runtimes WHERE vm_id > %s AND vm_state = 'running'",
                (running_vms,)).fetchone()[0] == STORM, 600)
            q3 = workers.status()["queries"]
            done = [row[0] for row in db.execute(
                "SELECT extract(epoch FROM vm_state_ts - %s) FROM vm_runtimes WHERE vm_id > %s "
                "ORDER BY 1", (storm_began, running_vms))]
            spread = [row[0] for row in db.execute(
                "SELECT count(*) FROM vm_runtimes WHERE vm_id > %s GROUP BY host_id",
                (running_vms,))]
        finally:
            workers.stop()
    return {"nodes": nodes, "vms": running_vms, "ready_s": ready_s,
            "idle_qps": (q1 - q0) / (t1 - t0),
            "storm_issue_s": issue_s, "storm_s": float(max(done)),
            "storm_running": [float(d) for d in done],
            "storm_committed": sorted((c - storm_began).total_seconds() for c in committed),
            "storm_statements": q3 - q2, "storm_hosts": len(spread),
            "storm_most_on_a_node": max(spread)}


def run(sizes=SIZES, processes: int = 4, idle_seconds: float = 10.0,
        settle: float = 3.0) -> dict:
    """One private PostgreSQL; each cluster size in a database of its own."""
    found = []
    with private_database(settings={"max_connections": "400"}) as (root, params):
        maintenance = dict(params, dbname="postgres")
        for nodes in sizes:
            dbname = f"scale{nodes}"
            with psycopg.connect(**maintenance, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {dbname} TEMPLATE {params['dbname']}")
            try:
                found.append(measure_size(dict(params, dbname=dbname),
                                          os.path.join(root, dbname), nodes, processes,
                                          idle_seconds, settle))
            finally:
                with psycopg.connect(**maintenance, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE {dbname} WITH (FORCE)")
    return {"sizes": found, "processes": processes, "idle_seconds": idle_seconds}


def rows(result: dict) -> list[Row]:
    found = []
    base = min(result["sizes"], key=lambda s: s["nodes"])
    for size in result["sizes"]:
        n = size["nodes"]
        label = f"{n} node{'s' if n > 1 else ''} x {VMS_PER_NODE} running VMs"
        grows = n > base["nodes"]
        found.append(Row(f"scale_idle_{n}", f"scale: idle DB statements/s, {label}",
                         size["idle_qps"], "/s",
                         base["idle_qps"] * n / base["nodes"] if grows else None,
                         f"{n / base['nodes']:g} x the {base['nodes']}-node cluster's, same run"
                         if grows else "- (the base of the rows below)"))
    for size in result["sizes"]:
        n = size["nodes"]
        label = f"{n} node{'s' if n > 1 else ''} x {VMS_PER_NODE} VMs"
        found.append(Row(f"scale_storm_{n}", f"scale: storm of {STORM:,} starts -> all running, "
                         f"{label}", size["storm_s"], "s", size["storm_issue_s"],
                         f"committing the {STORM:,} start commands, {CLIENTS} clients"))
    return found


def details(result: dict) -> str:
    """The per-size table of results.md (one run)."""
    lines = ["| nodes | running VMs | idle statements/s (per node) | storm: commands committed "
             f"| storm: all {STORM:,} running | storm: node statements per start | storm: nodes "
             "used (most VMs on one) | simulated nodes up after |",
             "|---|---|---|---|---|---|---|---|"]
    for s in result["sizes"]:
        lines.append(f"| {s['nodes']} | {s['vms']:,} | {s['idle_qps']:.1f} "
                     f"({s['idle_qps'] / s['nodes']:.2f}) | {s['storm_issue_s']:.2f} s | "
                     f"{s['storm_s']:.2f} s | {s['storm_statements'] / STORM:.1f} | "
                     f"{s['storm_hosts']:.0f} ({s['storm_most_on_a_node']:.0f}) | "
                     f"{s['ready_s']:.1f} s |")
    return "\n".join(lines)


def distributions(result: dict) -> dict:
    series = {}
    for s in result["sizes"]:
        series[f"{s['nodes']} nodes: start committed"] = s["storm_committed"]
        series[f"{s['nodes']} nodes: VM running"] = s["storm_running"]
    return {"storm": (f"storm of {STORM:,} starts, from its first command (DB clock)", "s",
                      series)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="cluster sizes, comma-separated (default %(default)s)")
    parser.add_argument("--processes", type=int, default=4,
                        help="worker processes the nodes are spread over")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = run(tuple(int(n) for n in args.sizes.split(",")), args.processes,
                 args.idle_seconds)
    print(table(rows(result)))
    print()
    print(details(result))


if __name__ == "__main__":
    main()
