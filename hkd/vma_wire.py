"""A call to the agent inside a VM on the wire, for both of its callers (qvd-hkd's asyncio
client, vma_client.py; the L7R's blocking one, blocking_call): `GET /vma/<method>?k=v` over
plain HTTP/1.1 with the node's secret for this run of the VM, framed by h11, JSON back.

The agent is the VM's, whose root is the desktop user: its answer is bounded in size
(MAX_ANSWER) and in time (the caller's timeout), and one that is not HTTP or not JSON is a
VmaError like no answer at all."""
from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlencode

import h11

from qvd.vma import secret

MAX_ANSWER = 64 * 1024  # the agent's answers are a few hundred bytes of JSON


class VmaError(Exception):
    """The VMA did not answer, or answered an error (`refusal`: the agent's own words then)."""

    def __init__(self, message: str, refusal: str | None = None):
        super().__init__(message)
        self.refusal = refusal


class Call:
    """One request and its answer: send `request`, feed() what arrives until it returns the
    answer (a dict; VmaError for an error status or a bad answer)."""

    def __init__(self, address: str, port: int, vma_secret: str, method: str,
                 params=()):
        self.where, self.method = f"{address}:{port}", method
        query = urlencode(params)
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_ANSWER)
        headers = [("Host", address), *secret.bearer(vma_secret).items(),
                   ("Connection", "close")]
        self.request = self._h11.send(h11.Request(
            method="GET", target=f"/vma/{method}" + (f"?{query}" if query else ""),
            headers=headers)) + self._h11.send(h11.EndOfMessage())
        self._status, self._body = None, bytearray()

    def unreachable(self, why) -> VmaError:
        return VmaError(f"VMA at {self.where} unreachable: {why or 'timeout'}")

    def feed(self, data: bytes) -> dict | None:
        """The answer once complete (data b"": the agent closed the connection)."""
        self._h11.receive_data(data)
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise VmaError(f"VMA {self.method}: not an HTTP answer ({exc})") from None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                self._status = event.status_code
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > MAX_ANSWER:
                    raise VmaError(f"VMA {self.method}: answer larger than {MAX_ANSWER} bytes")
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return self._answer()

    def _answer(self) -> dict:
        try:
            answer = json.loads(self._body)
        except ValueError:
            answer = None
        if self._status != 200:  # the agent's error says why (400: bad parameters)
            why = (answer.get("error") if isinstance(answer, dict) else None) or \
                f"HTTP status {self._status}"
            raise VmaError(f"VMA {self.method}: {why}", refusal=why)
        if not isinstance(answer, dict):
            raise VmaError(f"VMA {self.method}: answer is not a JSON object")
        return answer


def connect_numeric(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to a VM's port: its address is numeric (the VM's row), so it is
    connected to without a name lookup (a resolver's first use costs a child 1 ms)."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def blocking_call(address: str, port: int, vma_secret: str, method: str, params=(),
                  timeout: float = 3.0) -> dict:
    """The call from a blocking caller (the L7R), within `timeout` in all."""
    call = Call(address, port, vma_secret, method, params)
    deadline = time.monotonic() + timeout
    try:
        with connect_numeric(address, port, timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(call.request)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                answer = call.feed(sock.recv(MAX_ANSWER))
                if answer is not None:
                    return answer
    except OSError as exc:  # TimeoutError is one
        raise call.unreachable(exc) from None
