"""L7R benchmark (python -m bench.l7r_bench; part of make bench).

Floor: a minimal Python TLS server on the same machine (same certificate, TCP_NODELAY, one
thread): a new TLS connection plus one HTTP round trip, the least any HTTPS edge costs.
Ping: the same against the L7R's /qvd/ping (a forked process, the node's row read).
Warm connect: a running VM, a new TLS connection, authentication (a token, or a password:
one Argon2id, whose cost is measured in the same run), list_of_vm, connect_to_vm, 101 and
the first desktop byte (Xvnc's RFB banner).
Tunnel throughput, both ways: bytes through the L7R (TLS, then the proxy) to or from a
stand-in desktop port, against the same bytes over a direct TCP connection and through a
TLS proxy peer (socat, Debian's package: OPENSSL-LISTEN to TCP, the L7R's 256 KiB buffer),
from and to the same Python ssl client. kTLS: not in Python 3.11's ssl (OP_ENABLE_KTLS comes
with 3.12) and it needs the kernel's tls ULP; the row says which is missing.
Memory: USS (private pages) of each L7R process serving a connected desktop, against a bare
forked Python process; database connections the L7R holds meanwhile. Rate: desktop connects
per second (token auth) one node sustains with concurrent clients, against TLS + /qvd/ping
connections per second with as many clients.
Real processes: PostgreSQL, qvd-hkd, qvd-l7r, qvd-vma (process backend) and Xvnc.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time

from qvd.db.passwords import hash_password, verify_password
from qvd.hkd.backends.process import free_port
from qvd.l7r import prefork
from qvd.l7r.client import QvdConnection, tls_context
from qvd.l7r.proxy import BUFFER

from .common import Row, concurrent_rate, ms, summary, table, timed, write_certificate
from .node import UPGRADE, BenchNode, bench_node, uss_kib, wait

WORKERS = 4
PONG = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nI am alive!\n"


class BareTlsServer:
    """The floor: TLS handshake, read one request head, answer it in one write, close."""

    def __init__(self, cert_dir: str):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(f"{cert_dir}/cert.pem", f"{cert_dir}/key.pem")
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            conn, _ = self.server.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += tls.recv(4096)
                    tls.sendall(PONG)
            except (OSError, ssl.SSLError):
                pass


def token_for(node: BenchNode, user: int) -> str:
    with node.login(user) as conn:
        return conn.create_auth_token().json()["auth_token"]


def connect_with_token(node: BenchNode, token: str, vm_id: int) -> QvdConnection:
    conn = QvdConnection("127.0.0.1", node.port, node.tls)
    conn.use_token(token)
    assert conn.list_of_vm().status == 200
    reply = conn.request("/qvd/connect_to_vm", {"id": vm_id}, UPGRADE)
    assert reply.status == 101, reply.body
    if not conn.buffer:
        conn.buffer = conn.sock.recv(64)
    return conn


def argon2id_verify(count: int) -> list[float]:
    """One Argon2id check with the parameters user passwords are stored with."""
    stored = hash_password("bench")
    return timed(lambda: verify_password("bench", stored), count)


def latencies(node: BenchNode, bare: BareTlsServer, tokens: list[str], count: int) -> dict:
    def floor():
        with QvdConnection("127.0.0.1", bare.port, node.tls) as conn:
            assert conn.ping().status == 200

    def ping():
        with node.login() as conn:
            assert conn.ping().status == 200

    def disconnected():
        wait(lambda: node.state(1) == ("running", "disconnected"))
    found = {"floor": [], "ping": [], "warm_token": [], "warm_password": []}
    for round_ in range(count + 1):  # round 0 starts the desktop session: not timed
        samples = {"floor": timed(floor, 1), "ping": timed(ping, 1),
                   "warm_token": timed(lambda: connect_with_token(node, tokens[0], 1).close(), 1)}
        disconnected()
        samples["warm_password"] = timed(lambda: node.connect_desktop().close(), 1)
        disconnected()
        if round_:
            for name, values in samples.items():
                found[name] += values
    return {name: summary(values) for name, values in found.items()}


def l7r_database_connections(node: BenchNode) -> int:
    """Those of connection processes (a ready child's warm one is the node's own)."""
    return node.db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                           "LIKE 'qvd-l7r%%' AND application_name <> %s",
                           (prefork.READY_TITLE,)).fetchone()[0]


def session_memory(node: BenchNode, tokens: list[str]) -> dict:
    """USS of each L7R process, and the L7R's database connections, while WORKERS desktops
    are connected at once."""
    conns = [connect_with_token(node, tokens[user], user + 1) for user in range(WORKERS)]
    try:
        wait(lambda: all(user == "connected" for _, _, user in node.states()))
        l7r = [uss_kib(pid) for pid in node.l7r_children()]
        held = l7r_database_connections(node)
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
    return {"uss_kib": statistics.median(l7r), "sessions": len(l7r), "bare_kib": floor,
            "db_connections": held}


def _rate(seconds: float, work) -> float:
    return concurrent_rate(work, WORKERS, seconds)


def connect_rates(node: BenchNode, tokens: list[str], seconds: float) -> dict:
    def ping(index):
        with node.login(index) as conn:
            assert conn.ping().status == 200

    def desktop(index):
        connect_with_token(node, tokens[index], index + 1).close()
        wait(lambda: node.state(index + 1)[1] == "disconnected")
    return {"ping_per_s": _rate(seconds, ping), "connects_per_s": _rate(seconds, desktop)}


def run(count: int, seconds: float) -> dict:
    with bench_node(users=WORKERS) as node, tempfile.TemporaryDirectory() as certs:
        write_certificate(certs)
        bare = BareTlsServer(certs)
        for vm in range(1, WORKERS + 1):
            node.admin("vm", "start", "-f", f"name=desk{vm - 1}")
        wait(lambda: all(state == "running" for _, state, _ in node.states()))
        tokens = [token_for(node, user) for user in range(WORKERS)]
        timings = latencies(node, bare, tokens, count)
        for user in range(1, WORKERS):  # every desktop session up before the timed rounds
            connect_with_token(node, tokens[user], user + 1).close()
        wait(lambda: all(user == "disconnected" for _, _, user in node.states()))
        memory = session_memory(node, tokens)
        wait(lambda: all(user == "disconnected" for _, _, user in node.states()))
        rates = connect_rates(node, tokens, seconds)
        tunnel = measure_throughput(node, certs)  # last: it repoints a desktop port
    return {**timings, "argon2id": summary(argon2id_verify(max(3, count // 3))), **memory,
            **rates, **tunnel}


# --- tunnel throughput -------------------------------------------------------------------
class DesktopPort:
    """A stand-in desktop port: `sink` reads and counts everything; `source` sends `total`
    bytes to whoever connects (the L7R's relay greeting is read and ignored)."""

    def __init__(self, total: int, source: bool):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.total, self.received = total, 0
        threading.Thread(target=self._send if source else self._count, daemon=True).start()

    def _count(self):
        while True:
            conn, _ = self.server.accept()
            with conn:
                while data := conn.recv(1 << 20):
                    self.received += len(data)

    def _send(self):
        chunk = b"\xa5" * (1 << 16)
        while True:
            conn, _ = self.server.accept()
            with conn:
                try:
                    for _ in range(self.total // len(chunk)):
                        conn.sendall(chunk)
                    # A graceful end: closing over the unread greeting would reset the
                    # connection and drop the bytes still in flight.
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(1 << 16):
                        pass
                except OSError:
                    pass


def push(sock, sink: DesktopPort) -> float:
    """MB/s from the client to the desktop port, until the port has every byte."""
    chunk = b"\x5a" * (1 << 16)
    start, goal = time.perf_counter(), sink.received + sink.total
    for _ in range(sink.total // len(chunk)):
        sock.sendall(chunk)
    while sink.received < goal:
        time.sleep(0.001)
    return sink.total / (time.perf_counter() - start) / 1e6


def pull(sock, source: DesktopPort, already: int = 0) -> float:
    """MB/s from the desktop port to the client (`already`: bytes read before the clock)."""
    got, start = already, time.perf_counter()
    while got < source.total:
        data = sock.recv(1 << 20)
        if not data:
            raise RuntimeError(f"stream ended after {got} of {source.total} bytes")
        got += len(data)
    return source.total / (time.perf_counter() - start) / 1e6


def through_socat(port: DesktopPort, certs: str, measure) -> float | None:
    """measure(tls socket) through socat's TLS-to-TCP proxy to the port (None: no socat)."""
    socat = shutil.which("socat")
    if socat is None:
        return None
    listen = free_port()
    proxy = subprocess.Popen(
        [socat, "-b", str(BUFFER), f"OPENSSL-LISTEN:{listen},bind=127.0.0.1,reuseaddr,"
         f"cert={certs}/cert.pem,key={certs}/key.pem,verify=0", f"TCP:127.0.0.1:{port.port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # socat serves one connection: no probing, connect when it listens
            try:
                raw = socket.create_connection(("127.0.0.1", listen))
                break
            except ConnectionRefusedError:
                if proxy.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("socat did not start listening") from None
                time.sleep(0.05)
        with tls_context(verify=False).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            return measure(sock)
    finally:
        proxy.kill()
        proxy.wait()


def through_l7r(node: BenchNode, port: DesktopPort, measure) -> float:
    # The desktop the L7R connects to is whatever the VM's row names: point it at the port.
    node.db.execute("UPDATE vm_runtimes SET vm_x_port = %s WHERE vm_id = 1", (port.port,))
    with node.login() as conn:
        reply = conn.request("/qvd/connect_to_vm", {"id": 1}, UPGRADE)
        assert reply.status == 101, reply.body
        return measure(conn)


def measure_throughput(node: BenchNode, certs: str, total: int = 256 << 20) -> dict:
    found = {"tunnel_bytes": total}
    for direction, source in (("up", False), ("down", True)):
        port = DesktopPort(total, source)

        def measure(sock, already=0, port=port, source=source):
            return pull(sock, port, already) if source else push(sock, port)
        with socket.create_connection(("127.0.0.1", port.port)) as direct:
            found[f"direct_{direction}"] = measure(direct)
        found[f"socat_{direction}"] = through_socat(port, certs, measure)
        found[f"tunnel_{direction}"] = through_l7r(
            node, port, lambda conn, measure=measure: measure(conn.sock, len(conn.buffer)))
    return found


def ktls_missing() -> str:
    """Why kTLS is not measured: what this Python and this kernel lack."""
    missing = []
    if not hasattr(ssl, "OP_ENABLE_KTLS"):
        missing.append("this Python's ssl has no OP_ENABLE_KTLS (3.12 has)")
    try:
        with open("/proc/sys/net/ipv4/tcp_available_ulp", encoding="ascii") as handle:
            if "tls" not in handle.read().split():
                missing.append("this kernel offers no tls ULP (tcp_available_ulp)")
    except OSError:
        missing.append("this kernel does not say whether it has a tls ULP")
    return "; ".join(missing) or "kTLS is available but the L7R does not use it yet"


def rows(result: dict) -> list[Row]:
    floor, mib = result["floor"], result["tunnel_bytes"] >> 20
    floor_label = "new TLS connection + one round trip, bare Python TLS server"
    found = [Row(f"ping_{label}", f"new TLS connection + /qvd/ping, {label} "
                 f"(n={result['ping']['n']})", result["ping"][label] * 1000, "ms",
                 floor[label] * 1000, floor_label) for label in ("p50", "p99")]
    for auth in ("token", "password"):
        warm = result[f"warm_{auth}"]
        extra = result["argon2id"]["p50"] if auth == "password" else 0.0
        for label in ("p50", "p99"):
            found.append(Row(
                f"warm_{auth}_{label}", f"warm connect with a {auth} (TLS + auth + list + "
                f"connect -> 101 -> first desktop byte), {label} (n={warm['n']})",
                warm[label] * 1000, "ms", (floor[label] + extra) * 1000,
                floor_label + (", + one Argon2id check" if extra else "")))
    names = {"up": "client -> desktop", "down": "desktop -> client"}
    for direction, name in names.items():
        figure = f"tunnel throughput {name} ({mib} MiB, TLS included)"
        found.append(Row(f"tunnel_direct_{direction}", figure, result[f"tunnel_{direction}"],
                         "MB/s", result[f"direct_{direction}"], "direct TCP, no TLS"))
        peer = Row(f"tunnel_socat_{direction}", figure, result[f"tunnel_{direction}"], "MB/s",
                   result[f"socat_{direction}"], "socat TLS proxy, same client")
        if result[f"socat_{direction}"] is None:
            peer.value, peer.note = None, "socat is not installed (make bench installs it)"
        found.append(peer)
    found.append(Row("tunnel_ktls", "tunnel throughput with kTLS + os.splice", None, "MB/s",
                     note=ktls_missing()))
    found.append(Row("session_uss", f"memory per connected session, USS (median of "
                     f"{result['sessions']} sessions)", result["uss_kib"] / 1024, "MiB",
                     result["bare_kib"] / 1024, "a bare forked Python"))
    found.append(Row("session_db", f"database connections the L7R holds, {result['sessions']} "
                     "desktops connected (goal 0)", result["db_connections"], "", None))
    found.append(Row("connect_rate", f"desktop connects per second, {WORKERS} clients, token "
                     "auth", result["connects_per_s"], "/s", result["ping_per_s"],
                     "TLS + /qvd/ping, as many clients"))
    return found


def distributions(result: dict) -> dict:
    return {"warm_connect": ("warm connect to the first desktop byte", "ms", {
        "qvd-l7r, token": ms(result["warm_token"]["samples"]),
        "qvd-l7r, password": ms(result["warm_password"]["samples"]),
        "qvd-l7r /qvd/ping": ms(result["ping"]["samples"]),
        "bare TLS + one round trip": ms(result["floor"]["samples"])})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(table(rows(run(args.count, args.seconds)), "qvd-l7r"))


if __name__ == "__main__":
    main()
