"""qvd-hkd benchmarks (python -m bench.hkd_bench; part of make bench).

1. Command latency: a committed `vm start` until the node has claimed it (state `starting`,
   observed through the state notification), against its floor: a bare NOTIFY round trip
   (NOTIFY to a listener that answers with a NOTIFY) on the same server, same event loop.
2. The cost of metrics: the same command latency with the node's /metrics served
   (hkd.metrics.address) and scraped 5 times a second by another process (75 times
   Prometheus' default rate), against metrics off in the same run; the rounds alternate
   (off, on, off, on), so drift of the machine falls on both. The counters and histograms
   are updated either way: "off" means no endpoint, no scrapes and no cluster gauges.
3. Idle database statements per second of one node managing N running VMs (fake backend,
   fake VMAs: the database load is what is measured). No floor: bench.scale_bench compares
   clusters of 1 to 50 such nodes.
4. The scrape time of that node's /metrics with its N VMs, against a scrape of the node of
   item 2 with no VM running, same run.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import psycopg

from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.backends.process import free_port
from qvd.hkd.fake_node import fake_node_config

from .common import Row, ms, private_database, summary, table
from .fake_nodes import BenchFakeNode

SEED = """
INSERT INTO users (tenant_id, login) VALUES (1, 'bench');
INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'bench', 1);
INSERT INTO dis (osf_id, path, version) VALUES (1, 'bench.tar', 'v1');
INSERT INTO di_tags (di_id, osf_id, tag) VALUES (1, 1, 'default');
INSERT INTO hosts (name, address) VALUES ('bench-node', '127.0.0.1');
INSERT INTO host_runtimes (host_id) VALUES (1);
"""


async def notify_round_trips(params: dict, count: int) -> list[float]:
    connect = psycopg.AsyncConnection.connect
    async with await connect(**params, autocommit=True) as echo, \
            await connect(**params, autocommit=True) as answer_conn, \
            await connect(**params, autocommit=True) as client:
        await echo.execute("LISTEN bench_ping")
        await client.execute("LISTEN bench_pong")

        async def answer():  # a listener answering on its own connection, like the node
            async for note in echo.notifies():
                await answer_conn.execute("SELECT pg_notify('bench_pong', %s)", (note.payload,))
        echo_task = asyncio.create_task(answer())
        samples = []
        for i in range(count):
            began = time.perf_counter()
            await client.execute("SELECT pg_notify('bench_ping', %s)", (str(i),))
            async for _ in client.notifies(stop_after=1):
                samples.append(time.perf_counter() - began)
        echo_task.cancel()
        return samples


async def _settled(node, vm_id: int, running: bool) -> None:
    """Until the node's machine for the VM exists (running) or is gone with nothing pending.
    A stop sent between the node's claim of a start and its machine's creation, or a start
    sent while the previous machine winds down, meets a race of the node (two machines for
    one VM): the benchmark measures commands, not that race, so it leaves the node settle."""
    async with asyncio.timeout(30):
        while (vm_id in node.machines) != running or (not running and node._tasks):
            await asyncio.sleep(0.0005)


async def command_latencies(params: dict, count: int, node) -> list[float]:
    samples = []
    connect = psycopg.AsyncConnection.connect
    async with await connect(**params, autocommit=True) as conn, \
            await connect(**params, autocommit=True) as admin:
        await conn.execute("LISTEN qvd_state_of_vm1")
        for _ in range(count):
            await _settled(node, 1, running=False)
            began = time.perf_counter()
            await admin.execute("UPDATE vm_runtimes SET host_id = 1, vm_cmd = 'start' "
                               "WHERE vm_id = 1 AND vm_state = 'stopped'")
            async with asyncio.timeout(30):
                async for note in conn.notifies():
                    if note.payload.startswith("starting"):
                        samples.append(time.perf_counter() - began)
                        break
            await _settled(node, 1, running=True)
            await admin.execute("UPDATE vm_runtimes SET vm_cmd = 'stop' WHERE vm_id = 1")
            async with asyncio.timeout(30):
                async for note in conn.notifies():
                    if note.payload.startswith("stopped"):
                        break
    return samples


SCRAPER = """
import sys, time, urllib.request
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=5).read()
    except OSError:
        pass
    time.sleep(float(sys.argv[2]))
"""
SCRAPE_PERIOD = 0.2  # seconds between the scraper's requests (Prometheus' default: 15)
SCRAPES = 50         # scrapes timed per node


async def scrape_times(port: int, count: int) -> tuple[list[float], int]:
    """Seconds of each of `count` GET /metrics (connect to last byte), and the body's size."""
    samples, size = [], 0
    for _ in range(count):
        began = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        answer = await reader.read()  # HTTP/1.0: the server closes after the body
        samples.append(time.perf_counter() - began)
        writer.close()
        assert answer.startswith(b"HTTP/1.0 200"), answer[:80]
        size = len(answer.partition(b"\r\n\r\n")[2])
    return samples, size


async def metrics_rounds(params: dict, count: int, cfg, on_cfg, backend, port: int) -> dict:
    """Command latencies with metrics off and on, alternating rounds of count // 2; then the
    scrape times of the last node with metrics on (no VM running: the rounds end stopped)."""
    found = {"off": [], "on": []}
    modes = ("off", "on", "off", "on")
    for number, mode in enumerate(modes, 1):
        node = BenchFakeNode(on_cfg if mode == "on" else cfg, backend)
        node_task = asyncio.create_task(node.run())
        await asyncio.sleep(1)
        scraper = (subprocess.Popen([sys.executable, "-c", SCRAPER,
                                     f"http://127.0.0.1:{port}/metrics", str(SCRAPE_PERIOD)])
                   if mode == "on" else None)
        try:
            found[mode] += await command_latencies(params, max(1, count // 2), node)
        finally:
            if scraper is not None:
                scraper.terminate()
                scraper.wait(10)
        if number == len(modes):
            found["scrape_idle"], _ = await scrape_times(port, SCRAPES)
        node.request_stop()
        await node_task
    return found


def all_running(params: dict, backend: FakeBackend, vms: int) -> None:
    """Every VM running on the node, in the database and the backend: adopted at its start."""
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute("UPDATE vm_runtimes SET host_id = 1, vm_state = 'running', "
                     "vm_address = '127.0.0.1', vm_vma_port = 10000 + vm_id, "
                     "vm_x_port = 20000 + vm_id")
    backend.running = {vm: None for vm in range(1, vms + 1)}


async def run(count: int, vms: int, idle_seconds: float) -> dict:
    with private_database() as (root, params):
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(SEED)
            conn.execute("INSERT INTO vms (name, user_id, osf_id, ip) SELECT 'vm' || n, 1, 1, "
                         "'10.1.0.0'::inet + n FROM generate_series(1, %s) n", (vms,))
            conn.execute("INSERT INTO vm_runtimes (vm_id) SELECT id FROM vms")
            conn.execute("INSERT INTO vm_counters (vm_id) SELECT id FROM vms")
        os.makedirs(f"{root}/storage/images", exist_ok=True)
        backend = FakeBackend()
        cfg = fake_node_config(params, root, f"{root}/storage", nodename="bench-node")
        node = BenchFakeNode(cfg, backend)
        node_task = asyncio.create_task(node.run())
        await asyncio.sleep(1)
        floor = await notify_round_trips(params, count)
        latency = await command_latencies(params, count, node)
        node.request_stop()
        await node_task
        port = free_port()
        on_cfg = fake_node_config(params, root, f"{root}/storage", nodename="bench-node",
                                  **{"hkd.metrics.address": f"127.0.0.1:{port}"})
        rounds = await metrics_rounds(params, count, cfg, on_cfg, backend, port)
        # Now the idle load: every other VM running on the node, adopted at start-up.
        all_running(params, backend, vms)
        node = BenchFakeNode(cfg, backend)
        node_task = asyncio.create_task(node.run())
        await asyncio.sleep(3)
        before = node.queries
        await asyncio.sleep(idle_seconds)
        idle_qps = (node.queries - before) / idle_seconds
        managed = len(node.machines)
        node.request_stop()
        await node_task
        # The same node and VMs with metrics on (its stop stopped them: running again), for
        # the scrape of a node with N VMs.
        all_running(params, backend, vms)
        node = BenchFakeNode(on_cfg, backend)
        node_task = asyncio.create_task(node.run())
        await asyncio.sleep(3)
        scrape_many, size = await scrape_times(port, SCRAPES)
        scraped_vms = len(node.machines)
        node.request_stop()
        await node_task
        return {"floor": summary(floor), "latency": summary(latency), "idle_qps": idle_qps,
                "vms": managed, "metrics_off": summary(rounds["off"]),
                "metrics_on": summary(rounds["on"]), "scrape_idle": summary(rounds["scrape_idle"]),
                "scrape_many": summary(scrape_many), "scrape_vms": scraped_vms,
                "scrape_bytes": size}


def rows(result: dict) -> list[Row]:
    floor, latency = result["floor"], result["latency"]
    found = [Row(f"command_{label}", "command latency: `vm start` committed -> node claims it, "
                 f"{label} (n={latency['n']})", latency[label] * 1000, "ms",
                 floor[label] * 1000, "bare NOTIFY round trip") for label in ("p50", "p99")]
    off, on = result["metrics_off"], result["metrics_on"]
    found += [Row(f"metrics_on_{label}", "command latency with metrics served and scraped "
                  f"5/s, {label} (n={on['n']})", on[label] * 1000, "ms", off[label] * 1000,
                  "the same with metrics off, alternating rounds") for label in ("p50", "p99")]
    found.append(Row("idle_one_node", f"idle DB statements/s, one node, {result['vms']} running "
                     "VMs", result["idle_qps"], "/s", None, "- (see the scale rows)"))
    many, idle = result["scrape_many"], result["scrape_idle"]
    found.append(Row("scrape_many", f"GET /metrics of a node with {result['scrape_vms']} "
                     f"running VMs ({result['scrape_bytes']:,} bytes), p50 (n={many['n']})",
                     many["p50"] * 1000, "ms", idle["p50"] * 1000,
                     "the same node with no VM running"))
    return found


def distributions(result: dict) -> dict:
    return {"command_latency": ("vm start committed -> node claims it", "ms", {
        "qvd-hkd": ms(result["latency"]["samples"]),
        "qvd-hkd, metrics off (alternating rounds)": ms(result["metrics_off"]["samples"]),
        "qvd-hkd, metrics on, scraped 5/s": ms(result["metrics_on"]["samples"]),
        "bare NOTIFY round trip": ms(result["floor"]["samples"])})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=30)
    args = parser.parse_args()
    print(table(rows(asyncio.run(run(args.count, args.vms, args.idle_seconds))), "qvd-hkd"))


if __name__ == "__main__":
    main()
