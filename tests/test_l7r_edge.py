"""The L7R as an edge (issue 19, parts 1 and 3), over real TLS against a real qvd-hkd and
PostgreSQL: deadlines for the handshake and the request head, per-address and per-node
connection caps answered with 503, a cap on concurrent password checks, atomic failure
counting, single-write responses (L7R and agent) and TCP_NODELAY."""
import fcntl
import os
import socket
import ssl
import threading

import pytest

from hkd_nodes import l7r_node, wait_for
from qvd.hkd.pidfile import PidFile
from qvd.l7r import prefork
from qvd.l7r.client import QvdConnection, tls_context


def client(node, source: str | None = None, login=None, password=None) -> QvdConnection:
    """A TLS connection to the node's L7R, from `source` (another loopback address) if set."""
    conn = QvdConnection.__new__(QvdConnection)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(30)
    if source:
        raw.bind((source, 0))
    raw.connect(("127.0.0.1", node.port))
    conn.sock = tls_context(cafile=node.cert, verify=False).wrap_socket(
        raw, server_hostname="127.0.0.1")
    conn.buffer, conn.authorization = b"", None
    if login:
        conn.login(login, password)
    return conn


def acceptor_children(node) -> set[int]:
    """The acceptor's connection processes (not its ready children, which wait for one)."""
    acceptor = PidFile(os.path.join(node.run_dir, "l7r-node1.pid")).running()
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                    fields = handle.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == acceptor and not prefork.is_ready(entry):
                children.add(int(entry))
    return children


def settled(node) -> None:
    """No connection left over from the node's start (its readiness probes)."""
    wait_for(lambda: not acceptor_children(node), 15, "the acceptor's children to end")


@pytest.fixture
def make_node(demo, tmp_path):
    nodes = []

    def start(extra_conf: str = ""):
        nodes.append(l7r_node(demo, tmp_path, extra_conf=extra_conf))
        return nodes[-1]
    yield start
    for node in nodes:
        node.cleanup()


# --- deadlines --------------------------------------------------------------------------------

def test_slowloris_is_cut_at_the_head_deadline_while_others_are_served(make_node):
    node = make_node("l7r.timeout.head = 2\n")
    slow = client(node)
    request = b"GET /qvd/ping HTTP/1.1\r\nX-Slow: " + b"a" * 200  # never ends
    slow.sock.settimeout(0.5)  # paces the trickle: one byte per half second, or an answer
    sent, reply = 0, b""
    with slow:
        while sent < len(request):
            try:
                slow.sock.sendall(request[sent:sent + 1])
            except OSError:
                break
            sent += 1
            if sent == 2:  # meanwhile another client is served as usual
                with client(node) as other:
                    assert other.ping().status == 200
            try:
                reply = slow.sock.recv(4096)
                break
            except (TimeoutError, socket.timeout):
                continue
    # Cut by the deadline for the whole head, long before the 200 bytes (the per-recv
    # timeout, l7r.timeout.idle = 60 s, never expired: bytes kept coming).
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert 2 <= sent < len(request)


def test_trickled_tls_handshake_is_cut_at_its_deadline(make_node):
    node = make_node("l7r.timeout.handshake = 2\n")
    hello_side = tls_context(verify=False).wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                                    server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        hello_side.do_handshake()
    hello = outgoing.read()
    assert len(hello) > 100
    sent, closed = 0, False
    with socket.create_connection(("127.0.0.1", node.port), timeout=30) as raw:
        raw.settimeout(0.5)
        while sent < len(hello):
            try:
                raw.sendall(hello[sent:sent + 1])
                sent += 1
                closed = raw.recv(4096) == b""
                if closed:
                    break
            except (TimeoutError, socket.timeout):
                continue
            except OSError:  # reset by the server
                closed = True
                break
    assert closed and sent < len(hello)
    with client(node) as other:
        assert other.ping().status == 200


# --- connection caps --------------------------------------------------------------------------

def test_per_address_and_per_node_caps_answer_503_and_spare_existing_sessions(make_node):
    node = make_node("l7r.max_connections = 4\nl7r.max_connections.per_address = 2\n"
                     "l7r.timeout.head = 120\n")
    settled(node)
    idle = [client(node, "127.0.0.4"), client(node, "127.0.0.4")]  # idle: no request yet
    try:
        with client(node, "127.0.0.4") as third:  # one too many from that address
            reply = third.read_response()
            assert reply.status == 503 and b"too many connections from your address" in reply.body
        with client(node, "127.0.0.2") as other:  # another address still connects
            assert other.ping().status == 200
        # the refused one's and that one's processes gone: only the two idle sessions count
        wait_for(lambda: len(acceptor_children(node)) == 2, 15, "two connections left")
        idle += [client(node, "127.0.0.2"), client(node, "127.0.0.3")]  # the node's 4
        with client(node, "127.0.0.5") as late:  # a fifth client: the node is full
            reply = late.read_response()
            assert reply.status == 503 and reply.headers["retry-after"]
            assert b"as many connections as it may" in reply.body
        for conn in idle:  # the sessions already served are untouched
            assert conn.ping().status == 200
    finally:
        for conn in idle:
            conn.close()
    settled(node)  # their processes ended: the address may connect again
    with client(node, "127.0.0.4") as again:
        assert again.ping().status == 200


# --- password checks --------------------------------------------------------------------------

def l7r_connections(demo) -> int:
    """Database connections of the L7R's connection processes (a ready child's warm one is
    the node's own, as its other connections are)."""
    (count,), = demo.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                         "AND application_name LIKE 'qvd-l7r%%' AND application_name <> :ready",
                         db=demo.dbname, ready=prefork.READY_TITLE)
    return count


PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


def anonymous_mib(pid: int) -> float:
    """RssAnon from /proc/PID/statm (resident - shared): cheap enough to sweep 300 children
    within one hash (smaps_rollup is not)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            _size, resident, shared = handle.read().split()[:3]
        return (int(resident) - int(shared)) * PAGE_MIB
    except OSError:
        return 0.0  # ended meanwhile


class StormWatch:
    """Samples the L7R's children until stopped: the most that held an Argon2id check's
    memory (64 MiB; counted above 48 over the child's own start) at one moment, and the most
    database connections the L7R held. The children are those already connected when the
    watch starts (the storm's own)."""

    def __init__(self, node, demo):
        self.node, self.demo, self.running = node, demo, True
        self.hashing = self.connections = 0
        self.baseline = {pid: anonymous_mib(pid) for pid in acceptor_children(node)}
        self.thread = threading.Thread(target=self._watch)
        self.thread.start()

    def _watch(self):
        while self.running:
            hashing = sum(anonymous_mib(pid) - before > 48
                          for pid, before in self.baseline.items())
            self.hashing = max(self.hashing, hashing)
            self.connections = max(self.connections, l7r_connections(self.demo))

    def stop(self) -> "StormWatch":
        self.running = False
        self.thread.join()
        return self


def test_concurrent_wrong_passwords_trip_the_back_off_exactly_at_its_limit(make_node, demo):
    """300 at once: exactly `limit` reach Argon2id, never more than the node's hash slots at
    a time (l7r.auth.max_concurrent_hashes, 2), so memory stays bounded; and never more than
    l7r.database.max_connections of them hold a database connection (the rest wait)."""
    attempts, limit, db_slots = 300, 5, 8
    node = make_node("l7r.max_connections.per_address = 400\nl7r.database.wait = 120\n"
                     f"l7r.database.max_connections = {db_slots}\n")
    demo.ok("config", "set", f"l7r.auth.backoff.max_failures={limit}",
            "l7r.auth.backoff.seconds=600", "l7r.auth.hash_wait=30")
    settled(node)
    connections = [client(node, login="alice@acme", password="wrong") for _ in range(attempts)]
    start = threading.Barrier(attempts)
    replies = []

    def attempt(conn):
        start.wait()
        replies.append(conn.list_of_vm())
    threads = [threading.Thread(target=attempt, args=(conn,)) for conn in connections]
    watch = StormWatch(node, demo)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        watch.stop()
        for conn in connections:
            conn.close()
    assert [r.status for r in replies] == [401] * attempts
    checked = [r for r in replies if r.body == b"Authentication failed\n"]
    refused = [r for r in replies if b"Too many failed attempts" in r.body]
    assert (len(checked), len(refused)) == (limit, attempts - limit)
    assert 1 <= watch.hashing <= 2  # seen hashing (the watch works), within the slots
    assert 1 <= watch.connections <= db_slots
    # Every attempt counted, once; the ones past the limit never reached Argon2id.
    assert sorted(demo.sql("SELECT key, failures FROM auth_failures")) == [
        ("address:127.0.0.1", attempts), ("login:alice@acme", attempts)]
    assert demo.sql("SELECT auth_attempts, auth_failed, auth_throttled FROM host_counters") == [
        (attempts, limit, attempts - limit)]


def test_password_checks_wait_for_a_free_slot_then_get_503(make_node, demo):
    node = make_node("l7r.auth.hash_wait = 0.5\n")
    slots = []
    for n in range(2):  # l7r.auth.max_concurrent_hashes: both slots busy
        fd = os.open(os.path.join(node.run_dir, f"l7r-hash-{n}.lock"),
                     os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        slots.append(fd)
    try:
        with client(node, login="alice@acme", password="secret") as conn:
            reply = conn.list_of_vm()
            assert reply.status == 503 and b"Too many logins at once" in reply.body
        # Not checked, not counted against alice or her address.
        assert all(failures == 0 for _, failures in demo.sql(
            "SELECT key, failures FROM auth_failures"))
        os.close(slots.pop())  # one slot free again
        with client(node, login="alice@acme", password="secret") as conn:
            assert conn.list_of_vm().status == 200
        with client(node) as conn:  # what checks no password needs no slot
            assert conn.ping().status == 200
    finally:
        for fd in slots:
            os.close(fd)


def test_old_failure_rows_are_pruned(make_node, demo):
    node = make_node()
    demo.sql("INSERT INTO auth_failures (key, failures, last_at) VALUES "
             "('login:gone@acme', 3, now() - interval '1 hour'), "
             "('login:recent@acme', 2, now())")
    with client(node, login="alice@acme", password="wrong") as conn:
        assert conn.list_of_vm().status == 401
    assert sorted(k for (k,) in demo.sql("SELECT key FROM auth_failures")) == [
        "address:127.0.0.1", "login:alice@acme", "login:recent@acme"]


# --- the fast path ----------------------------------------------------------------------------

def _records(data: bytes):
    """Split raw TLS bytes into whole records; return (records, rest)."""
    records = []
    while len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big"):
        size = 5 + int.from_bytes(data[3:5], "big")
        records.append(data[:size])
        data = data[size:]
    return records, data


def test_a_response_arrives_in_one_tls_record(make_node):
    node = make_node()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_context(verify=False).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", node.port), timeout=30) as raw:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        raw.sendall(outgoing.read())
        tls.write(b"GET /qvd/ping HTTP/1.1\r\n\r\n")
        raw.sendall(outgoing.read())
        carrying, plain, pending = [], b"", b""
        while not plain.endswith(b"I am alive!\n"):
            data = raw.recv(65536)
            assert data, plain
            records, pending = _records(pending + data)
            for record in records:  # one at a time: which records carry the response?
                incoming.write(record)
                try:
                    chunk = tls.read(65536)
                except ssl.SSLWantReadError:
                    continue  # a handshake message (TLS 1.3 session tickets)
                carrying.append(len(chunk))
                plain += chunk
    assert plain.startswith(b"HTTP/1.1 200 ") and len(carrying) == 1


def test_accepted_sockets_get_tcp_nodelay():
    from qvd.l7r.connection import tune_socket
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert not accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                tune_socket(accepted)
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


class _Recording:
    """A socket whose every send is recorded (what the agent's handler writes to)."""

    def __init__(self, sock):
        self.sock, self.sends = sock, []

    def sendall(self, data):
        self.sends.append(bytes(data))
        return self.sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_agent_replies_in_one_send():
    from qvd.vma.main import Handler

    class Agent:
        def ping(self, params):
            return {"uptime": 1, "padding": "x" * 3000}

    class OneShot(Handler):
        agent, secret = Agent(), "s3cret"

    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.sendall(b"GET /vma/ping HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret"
                            b"\r\n\r\nGET /vma/nothing HTTP/1.1\r\nHost: x\r\nConnection: close"
                            b"\r\nAuthorization: Bearer s3cret\r\n\r\n")
        recording = _Recording(server_side)
        OneShot(recording, ("127.0.0.1", 1), None)
        server_side.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client_side.recv(65536):
            answer += chunk
    assert len(recording.sends) == 2  # two responses, one send each
    assert [s.split(b" ", 2)[1] for s in recording.sends] == [b"200", b"404"]
    first = recording.sends[0]
    head, _, body = first.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(body) in head and body.startswith(b'{"uptime": 1')
    assert answer == b"".join(recording.sends)


# --- PROXY protocol v2 --------------------------------------------------------------------------

def _proxy_v2(source: str, source_port: int = 40000) -> bytes:
    """HAProxy's binary header: PROXY, TCP over IPv4, source -> 127.0.0.1:443."""
    block = socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + \
        source_port.to_bytes(2, "big") + (443).to_bytes(2, "big")
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + len(block).to_bytes(2, "big") + block


def _behind(node, header: bytes | None, source: str | None = None):
    """A login with a wrong password through TLS, after `header` sent in the clear."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(15)
    if source:
        raw.bind((source, 0))
    raw.connect(("127.0.0.1", node.port))
    if header:
        raw.sendall(header)
    conn = QvdConnection.__new__(QvdConnection)
    conn.sock = tls_context(cafile=node.cert, verify=False).wrap_socket(
        raw, server_hostname="127.0.0.1")
    conn.buffer, conn.authorization = b"", None
    conn.login("alice@acme", "wrong")
    with conn:
        return conn.list_of_vm().status


def test_a_trusted_balancer_names_the_client_and_nobody_else_can(make_node, demo):
    node = make_node("l7r.proxy_protocol.trusted = 127.0.0.1\n")
    settled(node)
    # through the balancer (127.0.0.1): the failure is counted against the real client
    assert _behind(node, _proxy_v2("192.0.2.7")) == 401
    # from anywhere else the same header is not read as one: the TLS handshake fails on it
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _behind(node, _proxy_v2("192.0.2.66"), source="127.0.0.2")
    # and the balancer's own connection without a header is closed before TLS
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _behind(node, None)
    assert sorted(demo.sql("SELECT key FROM auth_failures")) == [
        ("address:192.0.2.7",), ("login:alice@acme",)]
