"""Desktop pools (python -m bench.pool_bench [--storm]; issue 17).

First login (the default mode): one node (process backend), a pool with `spare` spares and
room for every user. Each sample is a user with no VM of the pool: new TLS connection,
password login, list_of_vm, connect_to_vm?id=-<pool>, 101, the first desktop byte; the spares
are refilled, and their display servers prepared (not timed), before the next sample: a spare
waits minutes for its user, not milliseconds. Peers in the same run: a warm connect (the
same steps to the user's own running VM; goal: the pool's first login within 1.2x of it),
taken in turns with the first logins, each once the refill is over (a keeper starting a spare
meanwhile would slow whichever ran then), and a cold connect (to a stopped VM of one's own:
the start is in it; the gain the spares buy).

Login storm (--storm): bench/pool_storm.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request

from qvd.vma import secret

from .common import Row, ms, summary, table
from .node import BenchNode, bench_node, wait
from .pool_storm import SPARE, USERS, run_storm, storm_details, storm_rows

SPARES = "SELECT host(r.vm_address), r.vm_vma_port, r.vma_secret FROM vms v " \
         "JOIN vm_runtimes r ON r.vm_id = v.id WHERE v.pool_id = 1 AND v.user_id IS NULL " \
         "AND r.vm_state = 'running' AND r.vm_cmd IS NULL"


# --- first login ----------------------------------------------------------------------------
def _x_state(address: str, port: int, key: str) -> str | None:
    request = urllib.request.Request(f"http://{address}:{port}/vma/x_state",
                                     headers=secret.bearer(key))
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.load(reply).get("x_state")


def _prepared_spares(node: BenchNode) -> int:
    """Running spares whose agent has the display server prepared (qvd-hkd's x_prepare)."""
    return sum(_x_state(*row) == "prepared" for row in node.db.execute(SPARES).fetchall())


def _disconnected(node: BenchNode, vm_id: int) -> bool:
    return node.state(vm_id)[1] == "disconnected"


def _connect(node: BenchNode, user: int, vm_id: int) -> float:
    began = time.perf_counter()
    conn = node.connect_desktop(user, vm_id)
    took = time.perf_counter() - began
    conn.close()
    return took


def run(count: int, spare: int) -> dict:
    users = count + 1
    conf = f"pool.max_preparing = {spare}\n"
    with bench_node(users=users, node_conf=conf) as node:
        logins = ",".join(f"bench{user}" for user in range(users))
        node.admin("pool", "add", "name=pool", "osf=desk", f"min={spare}", f"spare={spare}",
                   f"max={count + spare}")
        node.admin("pool", "members", "-f", "name=pool", f"add={logins}")
        warm, cold, first = [], [], []
        for user in range(1, users):  # cold: each user's own VM (desk<user>), stopped
            cold.append(_connect(node, user, user + 1))
        _connect(node, 0, 1)  # bench0's VM now runs: the warm peer
        for user in range(1, users):  # taken in turns, each once the spares are refilled
            wait(lambda: _prepared_spares(node) >= spare, 120)
            first.append(_connect(node, user, -1))
            wait(lambda: _prepared_spares(node) >= spare and _disconnected(node, 1), 120)
            warm.append(_connect(node, 0, 1))
    return {"first": summary(ms(first)), "warm": summary(ms(warm)),
            "cold": summary(ms(cold))}


def first_rows(result: dict) -> list[Row]:
    first, warm, cold = result["first"], result["warm"], result["cold"]
    return [
        Row("pool_first_p50", "pool, first login (a spare), p50", first["p50"], "ms",
            warm["p50"], "warm connect p50"),
        Row("pool_first_p99", "pool, first login (a spare), p99", first["p99"], "ms",
            warm["p99"], "warm connect p99"),
        Row("pool_vs_cold_p50", "pool, first login, p50", first["p50"], "ms", cold["p50"],
            "cold connect p50 (the VM starts)"),
    ]


# --- both modes (bench.run_all runs both: one result dict) ------------------------------------
def rows(result: dict) -> list[Row]:
    return (first_rows(result) if "first" in result else []) + \
        (storm_rows(result) if result.get("storm") else [])


def distributions(result: dict) -> dict:
    if not result.get("storm"):
        return {}
    return {"pool_storm": (f"{result['users']} logins at once: their VM runs, from the first "
                           "login", "s", {"to a pool with spares": result["desktops"],
                                          "to a stopped VM of their own (no pool)":
                                              result["own_desktops"]})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storm", action="store_true",
                        help="the login storm on simulated nodes (default: first login)")
    parser.add_argument("--count", type=int, default=10, help="first login: samples")
    parser.add_argument("--spare", type=int, default=None,
                        help=f"spares per pool (default: 2; {SPARE} with --storm)")
    parser.add_argument("--users", type=int, default=USERS, help="storm: logins")
    parser.add_argument("--processes", type=int, default=2,
                        help="storm: worker processes the simulated nodes run in")
    parser.add_argument("--max-preparing", type=int, default=None,
                        help="storm: pool.max_preparing (default: the built-in default)")
    parser.add_argument("--json", help="storm: also write the whole result to this file")
    args = parser.parse_args()
    if not args.storm:
        print(table(rows(run(args.count, 2 if args.spare is None else args.spare)),
                    "qvd pools"))
        return
    result = run_storm(args.users, SPARE if args.spare is None else args.spare,
                       args.processes, args.max_preparing)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1, default=str)
    print(table(rows(result), "qvd pools"))
    print()
    print(storm_details(result))
    if not all(result["checks"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
