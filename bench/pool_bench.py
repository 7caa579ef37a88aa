"""Desktop pools (python -m bench.pool_bench; issue 17): a first login to a pool with spares.

One node (process backend), a pool with `spare` spares and room for every user. Each sample
is a user with no VM of the pool: new TLS connection, password login, list_of_vm,
connect_to_vm?id=-<pool>, 101, the first desktop byte; the spares are refilled (not timed)
before the next sample. Peers in the same run: a warm connect (the same steps to the user's
own running VM; goal: the pool's first login within 1.2x of it) and a cold connect (to a
stopped VM of one's own: the start is in it; the gain the spares buy).
Not measured yet: the login storm against pools on 10 simulated nodes.
"""
from __future__ import annotations

import argparse
import time

from .common import Row, ms, summary, table
from .node import BenchNode, bench_node, wait

SPARES = "SELECT count(*) FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id WHERE v.pool_id = 1 " \
         "AND v.user_id IS NULL AND r.vm_state = 'running' AND r.vm_cmd IS NULL"


def _spares(node: BenchNode) -> int:
    return node.db.execute(SPARES).fetchone()[0]


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
        for _ in range(count):
            wait(lambda: _disconnected(node, 1))
            warm.append(_connect(node, 0, 1))
        for user in range(1, users):
            wait(lambda: _spares(node) >= spare, 120)
            first.append(_connect(node, user, -1))
    return {"first": summary(ms(first)), "warm": summary(ms(warm)),
            "cold": summary(ms(cold))}


def rows(result: dict) -> list[Row]:
    first, warm, cold = result["first"], result["warm"], result["cold"]
    return [
        Row("pool_first_p50", "pool, first login (a spare), p50", first["p50"], "ms",
            warm["p50"], "warm connect p50"),
        Row("pool_first_p99", "pool, first login (a spare), p99", first["p99"], "ms",
            warm["p99"], "warm connect p99"),
        Row("pool_vs_cold_p50", "pool, first login, p50", first["p50"], "ms", cold["p50"],
            "cold connect p50 (the VM starts)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--spare", type=int, default=2)
    args = parser.parse_args()
    print(table(rows(run(args.count, args.spare)), "qvd pools"))


if __name__ == "__main__":
    main()
