"""L7R benchmark (python -m bench.l7r_bench; part of make bench).

Warm connect: a running VM, a new TLS connection, authentication, list_of_vm, connect_to_vm,
101 and the first desktop byte (Xvnc's RFB banner), against its floor measured in the same
run: a new TLS connection to the same L7R plus one HTTP round trip (/qvd/ping).
Tunnel throughput: bytes pushed through the L7R (TLS, then the proxy) into a sink that
stands in for the desktop port, against the same bytes over a direct TCP connection.
Real processes: PostgreSQL, qvd-hkd, qvd-l7r, qvd-vma (process backend) and Xvnc.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

from qvd.hkd.backends.process import free_port
from qvd.l7r.client import QvdConnection, accepting, tls_context
from qvd.l7r.tls import self_signed

from .common import private_database, summary

BIN = os.path.dirname(sys.executable)


def _wait(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def run(count: int) -> dict:
    with private_database() as (root, params), tempfile.TemporaryDirectory() as home:
        port = free_port()
        conf = os.path.join(home, "node.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(f"nodename = bench\npath.home = {home}\npath.run = {home}/run\n"
                         f"path.log = {home}/log\npath.storage.root = {home}/storage\n"
                         f"vm.hypervisor = process\nl7r.address = 127.0.0.1\nl7r.port = {port}\n"
                         f"database.host = {params['host']}\ndatabase.port = {params['port']}\n"
                         f"database.user = {params['user']}\n"
                         f"database.password = {params['password']}\n"
                         f"database.name = {params['dbname']}\n")
        env = dict(os.environ, QVD_CONFIG=conf)
        cert, key = self_signed("bench")
        for name, text in (("cert.pem", cert), ("key.pem", key), ("image.tar", "")):
            with open(os.path.join(home, name), "w", encoding="ascii") as handle:
                handle.write(text)
        admin = os.path.join(BIN, "qvd-admin")
        for step in (["config", "ssl", "--cert", f"{home}/cert.pem", "--key", f"{home}/key.pem"],
                     ["user", "add", "login=bench", "password=bench"],
                     ["osf", "add", "name=desk"],
                     ["di", "add", f"path={home}/image.tar", "osf=desk"],
                     ["vm", "add", "name=desk", "user=bench", "osf=desk"],
                     ["host", "add", "name=bench", "address=127.0.0.1"]):
            subprocess.run([admin, *step], env=env, check=True, capture_output=True)
        with open(os.path.join(home, "hkd.log"), "ab") as log:
            hkd = subprocess.Popen([os.path.join(BIN, "qvd-hkd")], env=env, stdout=log,
                                   stderr=log)
        db = psycopg.connect(**params, autocommit=True)
        tls = tls_context(verify=False)
        try:
            _wait(lambda: accepting("127.0.0.1", port))
            subprocess.run([admin, "vm", "start", "-f", "name=desk"], env=env, check=True,
                           capture_output=True)
            _wait(lambda: _user_state(db) == ("running", "disconnected"))
            floor, warm = [], []
            for round_ in range(count + 1):  # round 0 starts the desktop session: not timed
                began = time.perf_counter()
                with QvdConnection("127.0.0.1", port, tls) as conn:
                    assert conn.ping().status == 200
                if round_:
                    floor.append(time.perf_counter() - began)
                began = time.perf_counter()
                with QvdConnection("127.0.0.1", port, tls) as conn:
                    conn.login("bench", "bench")
                    assert conn.list_of_vm().status == 200
                    reply = conn.request("/qvd/connect_to_vm", {"id": 1},
                                         {"Connection": "Upgrade", "Upgrade": "QVD/1.0"})
                    assert reply.status == 101, reply.body
                    if not conn.buffer:
                        conn.buffer = conn.sock.recv(64)
                    if round_:
                        warm.append(time.perf_counter() - began)
                _wait(lambda: _user_state(db) == ("running", "disconnected"))
            tunnel = measure_throughput(db, port, tls)  # last: it repoints the desktop port
        finally:
            hkd.terminate()
            hkd.wait(60)
            db.close()
        return {"floor": summary(floor), "warm": summary(warm), **tunnel}


class Sink:
    """A stand-in desktop port that reads and counts everything."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            conn, _ = self.server.accept()
            with conn:
                while data := conn.recv(1 << 20):
                    self.received += len(data)


def _push(sock, sink: Sink, total: int) -> float:
    chunk = b"\x5a" * (1 << 16)
    start, goal = time.perf_counter(), sink.received + total
    for _ in range(total // len(chunk)):
        sock.sendall(chunk)
    while sink.received < goal:
        time.sleep(0.001)
    return total / (time.perf_counter() - start) / 1e6


def measure_throughput(db, port, tls, total: int = 256 << 20) -> dict:
    sink = Sink()
    with socket.create_connection(("127.0.0.1", sink.port)) as direct:
        direct_mbps = _push(direct, sink, total)
    # The desktop the L7R connects to is whatever the VM's row names: point it at the sink.
    db.execute("UPDATE vm_runtimes SET vm_x_port = %s", (sink.port,))
    with QvdConnection("127.0.0.1", port, tls) as conn:
        conn.login("bench", "bench")
        reply = conn.request("/qvd/connect_to_vm", {"id": 1},
                             {"Connection": "Upgrade", "Upgrade": "QVD/1.0"})
        assert reply.status == 101, reply.body
        tunnel_mbps = _push(conn.sock, sink, total)
    return {"tunnel_mbps": tunnel_mbps, "direct_mbps": direct_mbps, "tunnel_bytes": total}


def _user_state(db) -> tuple:
    return tuple(db.execute("SELECT vm_state, user_state FROM vm_runtimes").fetchone())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    result = run(parser.parse_args().count)
    floor, warm = result["floor"], result["warm"]
    print("| figure | qvd-l7r | floor | ratio |\n|---|---|---|---|")
    print(f"| tunnel throughput client -> desktop ({result['tunnel_bytes'] >> 20} MiB) | "
          f"{result['tunnel_mbps']:.0f} MB/s | {result['direct_mbps']:.0f} MB/s (direct TCP) | "
          f"{result['tunnel_mbps'] / result['direct_mbps']:.2f} |")
    for label in ("p50", "p99"):
        print(f"| warm connect to the first desktop byte, {label} (n={warm['n']}) | "
              f"{warm[label] * 1000:.1f} ms | {floor[label] * 1000:.1f} ms (new TLS connection "
              f"+ one HTTP round trip) | {warm[label] / floor[label]:.2f} |")


if __name__ == "__main__":
    main()
