"""L7R benchmark (python -m bench.l7r_bench; part of make bench).

Warm connect: a running VM, a new TLS connection, authentication, list_of_vm, connect_to_vm,
101 and the first desktop byte (Xvnc's RFB banner), against its floor measured in the same
run: a new TLS connection to the same L7R plus one HTTP round trip (/qvd/ping).
Tunnel throughput: bytes pushed through the L7R (TLS, then the proxy) into a sink that
stands in for the desktop port, against the same bytes over a direct TCP connection and
through a TLS proxy peer (socat, Debian's package: OPENSSL-LISTEN to TCP, with the L7R's
256 KiB buffer) pushed from the same Python ssl client.
Memory: USS (private pages) of each L7R process serving a connected desktop, against a bare
forked Python process. Rate: desktop connects per second one node sustains with concurrent
clients, against TLS + /qvd/ping connections per second with as many clients.
Real processes: PostgreSQL, qvd-hkd, qvd-l7r, qvd-vma (process backend) and Xvnc.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from qvd.hkd.backends.process import free_port
from qvd.l7r.client import tls_context
from qvd.l7r.proxy import BUFFER
from qvd.l7r.tls import self_signed

from .common import Row, ms, summary, table
from .node import UPGRADE, BenchNode, bench_node, uss_kib, wait

WORKERS = 4


def warm_connects(node: BenchNode, count: int) -> tuple[list[float], list[float]]:
    floor, warm = [], []
    for round_ in range(count + 1):  # round 0 starts the desktop session: not timed
        began = time.perf_counter()
        with node.login() as conn:
            assert conn.ping().status == 200
        if round_:
            floor.append(time.perf_counter() - began)
        began = time.perf_counter()
        with node.connect_desktop():
            if round_:
                warm.append(time.perf_counter() - began)
        wait(lambda: node.state(1) == ("running", "disconnected"))
    return floor, warm


def session_memory(node: BenchNode) -> dict:
    """USS of each L7R process while WORKERS desktops are connected at once."""
    conns = [node.connect_desktop(user) for user in range(WORKERS)]
    try:
        time.sleep(0.5)
        l7r = [uss_kib(pid) for pid in node.l7r_children()]
    finally:
        for conn in conns:
            conn.close()
    read, write = os.pipe()
    bare = os.fork()
    if bare == 0:  # a forked Python that does nothing: the least a process per session costs
        os.close(read)
        os.write(write, b"x")
        time.sleep(30)
        os._exit(0)
    os.close(write)
    os.read(read, 1)
    floor = uss_kib(bare)
    os.kill(bare, 9)
    os.waitpid(bare, 0)
    return {"uss_kib": statistics.median(l7r), "sessions": len(l7r), "bare_kib": floor}


def _rate(seconds: float, work) -> float:
    done, stop = [0] * WORKERS, time.monotonic() + seconds

    def worker(index):
        while time.monotonic() < stop:
            work(index)
            done[index] += 1
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - began)


def connect_rates(node: BenchNode, seconds: float) -> dict:
    def ping(index):
        with node.login(index) as conn:
            assert conn.ping().status == 200

    def desktop(index):
        node.connect_desktop(index).close()
        wait(lambda: node.state(index + 1)[1] == "disconnected")
    return {"ping_per_s": _rate(seconds, ping), "connects_per_s": _rate(seconds, desktop)}


def run(count: int, seconds: float) -> dict:
    with bench_node(users=WORKERS) as node:
        for vm in range(1, WORKERS + 1):
            node.admin("vm", "start", "-f", f"name=desk{vm - 1}")
        wait(lambda: all(state == "running" for _, state, _ in node.states()))
        floor, warm = warm_connects(node, count)
        for user in range(1, WORKERS):  # every desktop session up before the timed rounds
            node.connect_desktop(user).close()
        memory = session_memory(node)
        wait(lambda: all(user == "disconnected" for _, _, user in node.states()))
        rates = connect_rates(node, seconds)
        tunnel = measure_throughput(node)  # last: it repoints a desktop port
    return {"floor": summary(floor), "warm": summary(warm), **memory, **rates, **tunnel}


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


def socat_throughput(sink: Sink, total: int) -> float | None:
    """The same bytes through socat's TLS-to-TCP proxy into the same sink (None: no socat)."""
    socat = shutil.which("socat")
    if socat is None:
        return None
    cert, key = self_signed("bench")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("cert.pem", cert), ("key.pem", key)):
            with open(os.path.join(tmp, name), "w", encoding="ascii") as handle:
                handle.write(text)
        port = free_port()
        proxy = subprocess.Popen(
            [socat, "-b", str(BUFFER), f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,"
             f"cert={tmp}/cert.pem,key={tmp}/key.pem,verify=0", f"TCP:127.0.0.1:{sink.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:  # socat serves one connection: no probing, connect when it listens
                try:
                    raw = socket.create_connection(("127.0.0.1", port))
                    break
                except ConnectionRefusedError:
                    if proxy.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("socat did not start listening") from None
                    time.sleep(0.05)
            with tls_context(verify=False).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                return _push(sock, sink, total)
        finally:
            proxy.kill()
            proxy.wait()


def measure_throughput(node: BenchNode, total: int = 256 << 20) -> dict:
    sink = Sink()
    with socket.create_connection(("127.0.0.1", sink.port)) as direct:
        direct_mbps = _push(direct, sink, total)
    socat_mbps = socat_throughput(sink, total)
    # The desktop the L7R connects to is whatever the VM's row names: point it at the sink.
    node.db.execute("UPDATE vm_runtimes SET vm_x_port = %s WHERE vm_id = 1", (sink.port,))
    with node.login() as conn:
        reply = conn.request("/qvd/connect_to_vm", {"id": 1}, UPGRADE)
        assert reply.status == 101, reply.body
        tunnel_mbps = _push(conn.sock, sink, total)
    return {"tunnel_mbps": tunnel_mbps, "direct_mbps": direct_mbps, "socat_mbps": socat_mbps,
            "tunnel_bytes": total}


def rows(result: dict) -> list[Row]:
    floor, warm = result["floor"], result["warm"]
    mib = result["tunnel_bytes"] >> 20
    found = [Row(f"warm_{label}", "warm connect (TLS + auth + list + connect -> 101 -> first "
                 f"desktop byte), {label} (n={warm['n']})", warm[label] * 1000, "ms",
                 floor[label] * 1000, "new TLS connection + one HTTP round trip")
             for label in ("p50", "p99")]
    found.append(Row("tunnel_direct", f"tunnel throughput client -> desktop ({mib} MiB, TLS "
                     "included)", result["tunnel_mbps"], "MB/s", result["direct_mbps"],
                     "direct TCP, no TLS"))
    tunnel = Row("tunnel_socat", f"tunnel throughput client -> desktop ({mib} MiB, TLS "
                 "included)", result["tunnel_mbps"], "MB/s", result["socat_mbps"],
                 "socat TLS proxy, same client")
    if result["socat_mbps"] is None:
        tunnel.value, tunnel.note = None, "socat is not installed (make bench installs it as root)"
    found.append(tunnel)
    found.append(Row("session_uss", f"memory per connected session, USS (median of "
                     f"{result['sessions']} sessions)", result["uss_kib"] / 1024, "MiB",
                     result["bare_kib"] / 1024, "a bare forked Python"))
    found.append(Row("connect_rate", f"desktop connects per second, {WORKERS} clients",
                     result["connects_per_s"], "/s", result["ping_per_s"], "TLS + /qvd/ping"))
    return found


def distributions(result: dict) -> dict:
    return {"warm_connect": ("warm connect to the first desktop byte", "ms", {
        "qvd-l7r": ms(result["warm"]["samples"]),
        "new TLS connection + one HTTP round trip": ms(result["floor"]["samples"])})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(table(rows(run(args.count, args.seconds)), "qvd-l7r"))


if __name__ == "__main__":
    main()
