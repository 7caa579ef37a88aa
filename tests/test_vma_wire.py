"""The node's and the L7R's call to the agent against agents that misbehave (the VM's root
runs the agent): each gets a VmaError with the reason, never a hang, an unbounded read or
a traceback; a well-behaved answer and an agent's refusal come through."""
import json
import socket
import threading
import time

import pytest

from qvd.hkd import vma_wire


def hostile_agent(behaviour):
    """A loopback server that reads one request head and then does `behaviour(conn)`."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            try:
                behaviour(conn, head)
            except OSError:
                pass  # the caller gave up: what the test expects
        server.close()
    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def reply(status: str, body: bytes, extra: str = ""):
    def send(conn, _head):
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
                     .encode() + body)
    return send


def call(port, timeout=3.0):
    return vma_wire.blocking_call("127.0.0.1", port, "s3cret", "x_state", {"a": "b"}, timeout)


def test_an_answer_and_the_request_the_agent_sees():
    seen = []

    def answer(conn, head):
        seen.append(head)
        reply("200 OK", json.dumps({"x_state": "listening"}).encode())(conn, head)
    assert call(hostile_agent(answer)) == {"x_state": "listening"}
    assert seen[0].startswith(b"GET /vma/x_state?a=b HTTP/1.1\r\n")
    assert b"Authorization: Bearer s3cret\r\n" in seen[0]


def test_the_agents_refusal_is_its_own_words():
    port = hostile_agent(reply("400 Bad Request", b'{"error": "unknown session type"}'))
    with pytest.raises(vma_wire.VmaError) as caught:
        call(port)
    assert caught.value.refusal == "unknown session type"


@pytest.mark.parametrize("behaviour, reason", [
    (reply("200 OK", b"x" * (vma_wire.MAX_ANSWER + 10)), "larger than"),
    (reply("200 OK", b"[1, 2]"), "not a JSON object"),
    (reply("200 OK", b"{not json"), "not a JSON object"),
    (lambda conn, _head: conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n"), "not an HTTP answer"),
    (lambda conn, _head: None, "not an HTTP answer"),  # closes without a word
], ids=["endless body", "a list", "not json", "not http", "silent close"])
def test_bad_answers_are_errors_with_the_reason(behaviour, reason):
    with pytest.raises(vma_wire.VmaError) as caught:
        call(hostile_agent(behaviour))
    assert reason in str(caught.value)
    assert caught.value.refusal is None


def test_an_agent_that_trickles_is_cut_at_the_deadline_in_all():
    """One byte at a time, each well within any per-read timeout: the call's deadline is
    for the whole answer."""
    def trickle(conn, _head):
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b" " * 1000000:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)  # the hostile agent's own pace, not a synchronisation
    with pytest.raises(vma_wire.VmaError) as caught:
        call(hostile_agent(trickle), timeout=0.5)
    assert "unreachable" in str(caught.value)


def test_no_agent_listening():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(vma_wire.VmaError) as caught:
        call(port)
    assert "unreachable" in str(caught.value)
