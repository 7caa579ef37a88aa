"""The L7R over real TLS, started by a real qvd-hkd: endpoints, auth plugins, hostile input."""
import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import threading

import pytest

from hkd_nodes import l7r_node, wait_for
from qvd.db.passwords import is_legacy
from qvd.hkd.pidfile import PidFile
from qvd.l7r.client import QvdConnection, accepting, tls_context


@pytest.fixture
def l7r(demo, tmp_path):
    node = l7r_node(demo, tmp_path)
    yield node.port, node.cert
    node.cleanup()


def connect(l7r, login=None, password=None) -> QvdConnection:
    port, cert = l7r
    conn = QvdConnection("127.0.0.1", port, tls_context(cafile=cert, verify=False))
    if login:
        conn.login(login, password)
    return conn


def raw_exchange(l7r, data: bytes) -> bytes:
    """Send bytes over TLS as they are; return the server's answer: one whole response (by
    its Content-Length), or everything until it closes or stays quiet for a moment."""
    with connect(l7r) as conn:
        conn.sock.settimeout(3)
        conn.send_raw(data)
        reply = b""
        try:
            while not _whole_response(reply) and (chunk := conn.sock.recv(65536)):
                reply += chunk
        except (TimeoutError, socket.timeout, ssl.SSLError, OSError):
            pass
        return reply


def _whole_response(reply: bytes) -> bool:
    head, found, body = reply.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def test_ping(l7r, demo):
    with connect(l7r) as conn:
        reply = conn.ping()
        assert (reply.status, reply.body) == (200, b"I am alive!\n")
        demo.ok("host", "block", "-f", "name=node1")
        assert conn.ping().status == 503  # same connection, next request


def test_qvd_client_flow_list_on_one_connection(l7r):
    with connect(l7r, "alice@acme", "secret") as conn:
        first = conn.list_of_vm()
        assert first.status == 200 and first.headers["content-type"] == "application/json"
        assert first.json() == [{"id": 1, "name": "desk", "state": "stopped", "blocked": 0}]
        assert conn.authenticate().json() == {}
        assert conn.list_of_vm().status == 200  # several requests, one connection


def test_acceptor_settings_set_in_the_database_apply(demo, tmp_path):
    """The acceptor has no database connection: what `qvd-admin config set` says of its
    limits reaches it when qvd-hkd restarts it."""
    node = l7r_node(demo, tmp_path)
    try:
        pidfile = PidFile(os.path.join(node.run_dir, "l7r-node1.pid"))
        first = pidfile.running()
        ten_headers = (b"GET /qvd/ping HTTP/1.1\r\n"
                       + b"".join(b"X-Extra-%d: 1\r\n" % i for i in range(10)) + b"\r\n")
        assert raw_exchange((node.port, node.cert), ten_headers).startswith(b"HTTP/1.1 200")
        demo.ok("config", "set", "l7r.limits.header_count=5")
        wait_for(lambda: pidfile.running() not in (None, first) and
                 accepting("127.0.0.1", node.port), 15, "the acceptor to restart")
        reply = raw_exchange((node.port, node.cert), ten_headers)
        assert reply.startswith(b"HTTP/1.1 400") and b"Too many headers" in reply
    finally:
        node.cleanup()


def test_real_qvd_client_request_without_host_header(l7r):
    auth = base64.b64encode(b"alice#acme:secret").decode()
    reply = raw_exchange(l7r, (
        "GET /qvd/list_of_vm? HTTP/1.1\r\nAuthorization: Basic " + auth + "\r\n"
        "Accept: application/json\r\nUser-Agent: QVD::HTTPC/0.01 (linux)\r\n\r\n").encode())
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length:" in head
    assert json.loads(body)[0]["name"] == "desk"


@pytest.mark.parametrize("login,password", [("alice@acme", "wrong"), ("alice", "secret"),
                                            ("nobody@acme", "secret"), ("alice@nope", "secret")])
def test_bad_credentials_get_401_with_realm(l7r, login, password):
    with connect(l7r, login, password) as conn:
        reply = conn.list_of_vm()
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == 'Basic realm="QVD"'
        assert conn.ping().status == 200  # the connection still serves


def test_blocked_user_and_blocked_tenant_are_refused(l7r, demo):
    demo.ok("user", "block", "-f", "login=alice")
    with connect(l7r, "alice@acme", "secret") as conn:
        assert conn.list_of_vm().status == 401
    demo.ok("user", "unblock", "-f", "login=alice")
    demo.ok("tenant", "block", "-f", "name=acme")
    with connect(l7r, "alice@acme", "secret") as conn:
        assert conn.list_of_vm().status == 401


def test_users_see_only_their_own_vms(l7r, demo):
    demo.ok("user", "add", "login=alice", "password=other")   # another alice, default tenant
    demo.ok("osf", "add", "name=desktop")
    demo.ok("vm", "add", "name=theirs", "user=alice", "osf=desktop")
    with connect(l7r, "alice", "other") as conn:
        assert [v["name"] for v in conn.list_of_vm().json()] == ["theirs"]
    with connect(l7r, "alice@acme", "secret") as conn:
        assert [v["name"] for v in conn.list_of_vm().json()] == ["desk"]


def test_tokens_work_until_they_expire(l7r, demo):
    with connect(l7r, "alice@acme", "secret") as conn:
        token = conn.create_auth_token().json()["auth_token"]
    assert len(base64.urlsafe_b64decode(token + "==")) == 32  # 256 bits
    stored = demo.sql("SELECT token_hash FROM user_tokens")
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]  # only the hash
    for _ in range(2):  # usable more than once
        with connect(l7r) as conn:
            conn.use_token(token)
            assert conn.list_of_vm().status == 200
    demo.sql("UPDATE user_tokens SET created_at = now() - interval '2 days', "
             "expires_at = now() - interval '1 second'")
    with connect(l7r) as conn:
        conn.use_token(token)
        assert conn.list_of_vm().status == 401


def test_legacy_hash_accepted_once_then_argon2id(l7r, demo):
    demo.ok("config", "set", "l7r.auth.plugin.default.salt=qvd-salt")
    legacy = base64.b64encode(hashlib.sha256(b"qvd-saltold-pass").digest()).decode()
    demo.sql("UPDATE users SET password = :p WHERE login = 'alice'", p=legacy)
    with connect(l7r, "alice@acme", "old-pass") as conn:
        assert conn.list_of_vm().status == 200
    (stored,), = demo.sql("SELECT password FROM users WHERE login = 'alice'")
    assert not is_legacy(stored) and stored.startswith("$argon2id$")
    with connect(l7r, "alice@acme", "old-pass") as conn:
        assert conn.list_of_vm().status == 200


@pytest.mark.parametrize("data,status", [
    (b"GET /qvd/ping HTTP/1.0\r\n\r\n", b"505"),
    (b"POST /qvd/ping HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
    (b"GET /nothing HTTP/1.1\r\n\r\n", b"404"),
    (b"\x00\xff\xfe garbage\r\n\r\n", b"400"),
    (b"GET /qvd/ping HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", b"400"),
    (b"GET /qvd/ping HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"400"),
    (b"GET /qvd/list_of_vm HTTP/1.1\r\nAuthorization: Basic !!!\r\n\r\n", b"401"),
])
def test_hostile_requests_get_their_answer_and_the_node_keeps_serving(l7r, data, status):
    reply = raw_exchange(l7r, data)
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:100]
    with connect(l7r) as conn:
        assert conn.ping().status == 200


def test_plain_bytes_to_the_tls_port_and_many_clients_at_once(l7r):
    port, _ = l7r
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
        plain.sendall(b"GET /qvd/ping HTTP/1.1\r\n\r\n")
        plain.settimeout(5)
        try:
            assert not plain.recv(100).startswith(b"HTTP/1.1 200")
        except (ConnectionResetError, TimeoutError, socket.timeout):
            pass
    results = []

    def client():
        with connect(l7r) as conn:
            results.append(conn.ping().status)
    threads = [threading.Thread(target=client) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [200] * 20


def test_counters_count_requests_and_logins(l7r, demo):
    with connect(l7r, "alice@acme", "secret") as conn:
        conn.list_of_vm()
    with connect(l7r, "alice@acme", "bad") as conn:
        conn.list_of_vm()
    # A request's counters are written just after its answer: wait for the second one's.
    wait_for(lambda: demo.sql("SELECT http_requests FROM host_counters") == [(2,)], 10,
             "both requests counted")
    (row,) = demo.sql("SELECT http_requests, auth_attempts, auth_ok, auth_failed "
                      "FROM host_counters")
    assert tuple(row) == (2, 2, 1, 1)


UPGRADE = {"Connection": "Upgrade", "Upgrade": "QVD/1.0"}


def test_stop_vm_streams_progress_then_answers_when_stopped(l7r, demo):
    demo.ok("vm", "start", "-f", "name=desk")
    wait_for(lambda: demo.sql("SELECT vm_state FROM vm_runtimes") == [("running",)], 15,
             "running")
    with connect(l7r, "alice@acme", "secret") as conn:
        reply = conn.request("/qvd/stop_vm", {"id": 1})
        assert reply.status == 200
        assert reply.interim == [(102, {"x-qvd-vm-info": "Stopping virtual machine"})]
    assert demo.sql("SELECT vm_state, host_id FROM vm_runtimes") == [("stopped", None)]


def test_another_users_vm_cannot_be_stopped_or_connected(l7r, demo):
    demo.ok("user", "add", "-t", "acme", "login=mallory", "password=pw")
    with connect(l7r, "mallory@acme", "pw") as conn:
        assert conn.list_of_vm().json() == []
        for vm_id in (1, 2, 999):  # guessing ids finds nothing
            assert conn.request("/qvd/stop_vm", {"id": vm_id}).status == 404
            assert conn.request("/qvd/connect_to_vm", {"id": vm_id}, UPGRADE).status == 404


@pytest.mark.parametrize("path,params,headers,status", [
    ("/qvd/stop_vm", {}, {}, 422),
    ("/qvd/stop_vm", {"id": "abc"}, {}, 422),
    ("/qvd/connect_to_vm", {"id": 1}, {}, 426),
    ("/qvd/connect_to_vm", {}, UPGRADE, 422),
    ("/qvd/connect_to_vm", {"id": "1; drop"}, UPGRADE, 422),
    ("/qvd/connect_to_vm", {"id": 1, "qvd.client.geometry": "1024x768", "other.x": "1"},
     UPGRADE, 403),
])
def test_vm_requests_are_checked(l7r, path, params, headers, status):
    with connect(l7r, "alice@acme", "secret") as conn:
        assert conn.request(path, params, headers).status == status


def test_blocked_vm_is_offline_for_maintenance(l7r, demo):
    demo.ok("vm", "block", "-f", "name=desk")
    with connect(l7r, "alice@acme", "secret") as conn:
        reply = conn.request("/qvd/connect_to_vm", {"id": 1, "qvd.client.link": "adsl"},
                             UPGRADE)
        assert reply.status == 403 and b"offline for maintenance" in reply.body


def _infos(reply):
    return [headers.get("x-qvd-vm-info") for status, headers in reply.interim if status == 102]


def open_desktop(l7r, login="alice@acme", password="secret", vm_id=1):
    """A QVD client's connect: returns (connection, reply, first bytes of the desktop)."""
    conn = connect(l7r, login, password)
    reply = conn.request("/qvd/connect_to_vm", {"id": vm_id, "qvd.client.geometry": "800x600",
                                                "qvd.client.fullscreen": ""}, UPGRADE)
    if reply.status != 101:
        return conn, reply, b""
    banner = conn.buffer
    while len(banner) < 12:
        banner += conn.sock.recv(64)
    conn.buffer = b""
    return conn, reply, banner


def test_connect_starts_the_vm_and_streams_the_desktop(l7r, demo):
    conn, reply, banner = open_desktop(l7r)
    with conn:
        assert _infos(reply) == ["Assigning VM to host", "Starting virtual machine",
                                 "Waiting for VM to reach state 'running'", "Starting X session",
                                 "Connecting X session", "Connection established"]
        assert reply.status == 101 and len(reply.headers["x-qvd-slave-key"]) == 64
        assert banner == b"RFB 003.008\n"  # Xvnc in the VM, through the tunnel
        assert demo.sql("SELECT vm_state, user_state FROM vm_runtimes") == [
            ("running", "connected")]
        conn.send_raw(b"RFB 003.008\n")  # bytes the other way: Xvnc answers its security types
        assert conn.sock.recv(64)[:1] >= b"\x01"
    wait_for(lambda: demo.sql("SELECT user_state FROM vm_runtimes") == [("disconnected",)],
             10, "the session to end")
    (row,) = demo.sql("SELECT login, vm_name, host_name, bytes_from_client, bytes_to_client, "
                      "end_reason, ended_at IS NOT NULL FROM sessions")
    assert tuple(row[:3]) == ("alice@acme", "desk", "node1")
    assert row[3] == 12 and row[4] >= 12 and row[5] == "client closed" and row[6]
    assert demo.sql("SELECT connections, short_sessions FROM vm_counters") == [(1, 1)]
    (listed,) = json.loads(demo.ok("session", "list", "--json", "-f", "vm=desk,client=127.0.0.1"))
    assert (listed["user"], listed["host"], listed["client"], listed["bytes_in"],
            listed["end_reason"]) == ("alice@acme", "node1", "127.0.0.1", 12, "client closed")


def test_connect_reports_why_the_vm_did_not_start(l7r, demo):
    images = os.path.join(demo.storage, "images")
    for name in os.listdir(images):
        os.unlink(os.path.join(images, name))
    with connect(l7r, "alice@acme", "secret") as conn:
        reply = conn.request("/qvd/connect_to_vm", {"id": 1}, UPGRADE)
    assert reply.status == 503 and b"not found on this node" in reply.body


def test_connect_takes_the_desktop_over_from_another_connection(l7r, demo):
    first, reply, _ = open_desktop(l7r)
    assert reply.status == 101
    with first:
        second, reply, banner = open_desktop(l7r)
        with second:
            assert reply.status == 101 and banner == b"RFB 003.008\n"
            assert "Aborting previous connection" in _infos(reply)
            first.sock.settimeout(5)
            assert first.sock.recv(64) == b""  # the first client was cut
            (state, pid), = demo.sql("SELECT user_state, l7r_pid FROM vm_runtimes")
            assert state == "connected" and pid is not None
    reasons = [r for (r,) in demo.sql("SELECT end_reason FROM sessions ORDER BY id")]
    assert reasons[0] == "aborted"


def test_vm_disconnect_ends_a_live_desktop(l7r, demo):
    conn, reply, _ = open_desktop(l7r)
    with conn:
        assert reply.status == 101
        demo.ok("vm", "disconnect", "-f", "name=desk")
        conn.sock.settimeout(10)
        assert conn.sock.recv(64) == b""
    wait_for(lambda: demo.sql("SELECT user_state FROM vm_runtimes") == [("disconnected",)],
             10, "disconnected")


def test_failed_logins_back_off_per_login_and_per_address(l7r, demo):
    demo.ok("config", "set", "l7r.auth.backoff.max_failures=3", "l7r.auth.backoff.seconds=60")
    demo.ok("user", "add", "-t", "acme", "login=bob", "password=bobpw")
    for login in ("alice@acme", "ALICE@acme", "Alice@ACME"):  # one person's one budget
        with connect(l7r, login, "wrong") as conn:
            assert conn.list_of_vm().status == 401
    assert demo.sql("SELECT key, failures FROM auth_failures ORDER BY key") == [
        ("address:127.0.0.1", 3), ("login:alice@acme", 3)]
    with connect(l7r, "alice@acme", "secret") as conn:  # the right password, too late
        reply = conn.list_of_vm()
        assert reply.status == 401 and b"Too many failed attempts" in reply.body
    with connect(l7r, "bob@acme", "bobpw") as conn:  # same client address: held back too
        assert conn.list_of_vm().status == 401
    # Counters are written just after each answer: wait for the last request's.
    wait_for(lambda: demo.sql("SELECT http_requests FROM host_counters") == [(5,)], 10,
             "every request counted")
    assert demo.sql("SELECT auth_failed, auth_throttled FROM host_counters") == [(3, 2)]
    # Once the window has passed, the right password works and clears the login's count.
    demo.sql("UPDATE auth_failures SET last_at = now() - interval '61 seconds'")
    with connect(l7r, "alice@acme", "secret") as conn:
        assert conn.list_of_vm().status == 200
    assert demo.sql("SELECT key FROM auth_failures ORDER BY key") == [("address:127.0.0.1",)]


def test_connections_of_a_lost_node_are_released_and_the_desktop_reopens_elsewhere(demo,
                                                                                     tmp_path):
    demo.ok("host", "add", "name=node2", "address=127.0.0.3")
    nodes = []
    try:
        for name in ("node1", "node2"):
            nodes.append(l7r_node(demo, tmp_path, name))
        node1, node2 = nodes
        cert = node1.cert
        demo.ok("host", "block", "-f", "name=node1")  # the VM runs on node2
        demo.ok("vm", "start", "-f", "name=desk")
        wait_for(lambda: demo.sql("SELECT vm_state FROM vm_runtimes") == [("running",)], 30,
                 "the VM on node2")
        demo.ok("host", "unblock", "-f", "name=node1")
        first, reply, _ = open_desktop((node1.port, cert))  # the client came in through node1
        with first:
            assert reply.status == 101
            node1.signal(signal.SIGSTOP)  # node1 freezes: its lease runs out
            wait_for(lambda: node1.state()[0] == "lost", 20, "node1 to be declared lost")
            assert demo.sql("SELECT user_state, l7r_host_id FROM vm_runtimes") == [
                ("disconnected", None)]
            assert demo.sql("SELECT end_reason FROM sessions") == [("node node1 lost",)]
            second, reply, banner = open_desktop((node2.port, cert))
            with second:
                assert reply.status == 101 and banner == b"RFB 003.008\n"
            node1.signal(signal.SIGCONT)
            # let node1 finish fencing and rejoin: its L7R is then stopped by its own stop
            wait_for(lambda: node1.state()[0] == "running", 20, "node1 to rejoin")
    finally:
        for node in nodes:
            node.cleanup()
