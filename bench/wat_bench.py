"""The WAT's live updates (python -m bench.wat_bench; part of make bench).

The figure: a VM state UPDATE sent and committed (as the node writes it) until its
`vm-N-state` event arrives at a Server-Sent Events client of /wat/events, over TLS from a
real qvd-api process (trigger, NOTIFY, the API's listener thread, the stream's queue, the
HTTP chunk). Floor: the database's own NOTIFY round trip on the same server in the same run
(bench.hkd_bench.notify_round_trips: NOTIFY to a listener that answers with a NOTIFY).
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import shutil
import tempfile
import time

import psycopg

from .api_bench import LOGIN, PASSWORD, ApiServer, _make_admin
from .common import Row, ms, private_database, summary, table
from .hkd_bench import notify_round_trips

SEED = """
INSERT INTO tenants (name) VALUES ('acme');
INSERT INTO users (tenant_id, login) SELECT id, 'alice' FROM tenants WHERE name = 'acme';
INSERT INTO osfs (tenant_id, name, memory) SELECT id, 'desktop', 256 FROM tenants
  WHERE name = 'acme';
INSERT INTO vms (name, user_id, osf_id, ip) SELECT 'desk', u.id, o.id, '10.0.0.100'
  FROM users u, osfs o;
INSERT INTO hosts (name, address) VALUES ('node1', '127.0.0.2');
INSERT INTO host_runtimes (host_id) SELECT id FROM hosts;
INSERT INTO vm_runtimes (vm_id, host_id) SELECT v.id, h.id FROM vms v, hosts h;
"""
STATES = ("starting", "running")  # alternated: each UPDATE changes the state


class EventStream:
    """GET /wat/events as an EventSource reads it: event names and their data."""

    def __init__(self, server: ApiServer, token: str):
        self.conn = http.client.HTTPSConnection("127.0.0.1", server.port,
                                                context=server.context, timeout=30)
        self.conn.request("GET", "/wat/events", headers={"Authorization": f"Bearer {token}"})
        self.reply = self.conn.getresponse()
        if self.reply.status != 200:
            raise RuntimeError(f"GET /wat/events: {self.reply.status} (does api/app.py "
                               "mount the WAT?)")

    def wait_for(self, name: str, data: str) -> None:
        event, lines = None, []
        while True:
            line = self.reply.readline()
            if not line:
                raise RuntimeError("the event stream ended")
            line = line.rstrip(b"\r\n").decode()
            if not line:
                if event == name and "\n".join(lines) == data:
                    return
                event, lines = None, []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].lstrip(" "))

    def close(self) -> None:
        self.conn.close()


def live_latencies(server: ApiServer, params: dict, count: int) -> list[float]:
    token = server.call("POST", "/api/v1/login", {"login": LOGIN, "password": PASSWORD})["token"]
    stream = EventStream(server, token)
    samples = []
    try:
        with psycopg.connect(**params, autocommit=True) as writer:
            (vm_id,), = writer.execute("SELECT id FROM vms").fetchall()
            for i in range(count + 1):
                state = STATES[i % 2]
                began = time.perf_counter()
                writer.execute("UPDATE vm_runtimes SET vm_state = %s WHERE vm_id = %s",
                               (state, vm_id))
                stream.wait_for(f"vm-{vm_id}-state", state)
                if i:  # the first warms the connections
                    samples.append(time.perf_counter() - began)
    finally:
        stream.close()
    return samples


def run(count: int) -> dict:
    with private_database("bench_wat") as (root, params):
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(SEED)
        _make_admin(params)
        floor = asyncio.run(notify_round_trips(params, count))
        workdir = tempfile.mkdtemp(prefix="qvd-bench-wat-")
        server = ApiServer(workdir, params)
        try:
            latency = live_latencies(server, params, count)
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    return {"floor": summary(floor), "latency": summary(latency)}


def rows(result: dict) -> list[Row]:
    floor, latency = result["floor"], result["latency"]
    return [Row(f"wat_live_{label}", "WAT live update: VM state UPDATE committed -> its SSE "
                f"event at a /wat/events client, {label} (n={latency['n']})",
                latency[label] * 1000, "ms", floor[label] * 1000, "bare NOTIFY round trip")
            for label in ("p50", "p99")]


def distributions(result: dict) -> dict:
    return {"wat_live": ("VM state UPDATE committed -> SSE event at the client", "ms", {
        "qvd-api /wat/events over TLS": ms(result["latency"]["samples"]),
        "bare NOTIFY round trip": ms(result["floor"]["samples"])})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="updates timed one by one")
    args = parser.parse_args()
    print(table(rows(run(args.count))))


if __name__ == "__main__":
    main()
