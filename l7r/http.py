"""HTTP/1.1 framing of the QVD/1.0 protocol over one (TLS) socket, with h11.

QVD clients send no Host header and expect Content-Length on every response (never chunked),
interim `102 Processing` responses, then `101 Switching Protocols`. h11 rejects a missing
Host, so each request head is read here first, checked against the configured limits and
given a Host line when it has none, then parsed by h11. Only POSTs (the browser portal's
forms) carry a body: with a Content-Length, at most Limits.body_size, within the head's deadline.
"""
from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import h11

SERVER = "qvd-l7r"
# Seconds a client may take to send its next request before on_idle runs (the database
# connection goes back): a client asks its next question at once (list_of_vm, then
# connect_to_vm), and a held connection keeps one of the node's database slots from others.
IDLE_HOLD = 0.2


class HttpError(Exception):
    """Answer `status` with `message` (text/plain), then keep or close the connection."""

    def __init__(self, status: int, message: str, headers=(), close: bool = False):
        super().__init__(message)
        self.status, self.message, self.headers, self.close = status, message, headers, close


@dataclass
class Limits:
    head_size: int = 16384
    header_count: int = 100
    request_line: int = 8192
    idle_timeout: float = 60.0
    head_timeout: float = 10.0  # a whole request head, from its first byte
    body_size: int = 8192       # a POST's body (a login form)


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names; the last value wins
    body: bytes = b""
    head: bytes = b""        # the head as read (a WebSocket handshake parses it again)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def form(self) -> dict[str, str]:
        """An urlencoded body's fields (the last value of a repeated name wins)."""
        if not self.header("content-type").startswith("application/x-www-form-urlencoded"):
            return {}
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def cookie(self, name: str) -> str | None:
        for part in self.header("cookie").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value
        return None


class HttpConnection:
    def __init__(self, sock: socket.socket, limits: Limits,
                 on_idle: Callable[[], None] | None = None):
        self.sock = sock
        self.limits = limits
        self.on_idle = on_idle  # called once the client idles between requests
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.head_size)
        self.raw = b""
        self.broken = False
        self.requests = 0  # request heads read so far
        self.deadline = 0.0  # the current request's: its head, then its body

    # --- reading --------------------------------------------------------------------------
    def _read_head(self) -> bytes | None:
        """The next request head (up to and with the blank line); None when the client left.
        The first request's head must be whole within head_timeout of the connection's start;
        a later one may wait idle_timeout for its first byte, then head_timeout for the rest
        (a deadline for the whole head, however slowly its bytes trickle in: 408)."""
        if self.requests == 0 or self.raw:
            deadline = self.deadline = time.monotonic() + self.limits.head_timeout
        else:
            deadline = None  # idle between requests until a byte comes
            if self.on_idle is not None and not self.readable_within(IDLE_HOLD):
                self.on_idle()
        while b"\r\n\r\n" not in self.raw:
            if len(self.raw) > self.limits.head_size:
                raise HttpError(400, "Request head too large", close=True)
            if deadline is None:
                self.sock.settimeout(self.limits.idle_timeout)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HttpError(408, "Request timeout", close=True)
                self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                if self.raw:
                    raise HttpError(408, "Request timeout", close=True) from None
                return None
            except OSError:
                return None
            if not data:
                if self.raw.strip():
                    raise HttpError(400, "Incomplete request", close=True)
                return None
            self.raw += data
            if deadline is None:
                deadline = self.deadline = time.monotonic() + self.limits.head_timeout
        self.requests += 1
        head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        if len(head) > self.limits.head_size:
            raise HttpError(400, "Request head too large", close=True)
        lines = head.split(b"\r\n")
        if len(lines[0]) > self.limits.request_line:
            raise HttpError(400, "Request line too long", close=True)
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise HttpError(400, "Malformed request line", close=True)
        if parts[2] != b"HTTP/1.1":
            if parts[2].startswith(b"HTTP/"):
                raise HttpError(505, "HTTP Version Not Supported", close=True)
            raise HttpError(400, "Malformed request line", close=True)
        if len(lines) - 1 > self.limits.header_count:
            raise HttpError(400, "Too many headers", close=True)
        if not any(line.lower().startswith(b"host:") for line in lines[1:]):
            lines.insert(1, b"Host: qvd")  # real QVD clients send none
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def readable_within(self, seconds: float) -> bool:
        pending = getattr(self.sock, "pending", None)  # TLS bytes decrypted, not yet read
        if pending is not None and pending():
            return True
        try:
            return bool(select.select([self.sock], [], [], seconds)[0])
        except (OSError, ValueError):
            return True  # a closed socket: let recv say so

    def next_request(self) -> Request | None:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        head = self._read_head()
        if head is None:
            return None
        try:
            self.h11.receive_data(head)
            event = self.h11.next_event()
            if not isinstance(event, h11.Request):
                raise HttpError(400, "Malformed request", close=True)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in event.headers}
            body = self._read_body(event, headers)
            end = self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpError(400, f"Malformed request: {exc}", close=True) from None
        if not isinstance(end, h11.EndOfMessage):
            raise HttpError(400, "Malformed request body", close=True)
        url = urlsplit(event.target.decode("latin-1"))
        return Request(event.method.decode("ascii", "replace"), url.path,
                       parse_qsl(url.query, keep_blank_values=True), headers, body, head)

    def _read_body(self, event, headers: dict[str, str]) -> bytes:
        """A POST's body, whole, by the request's deadline; nothing for other methods."""
        if "transfer-encoding" in headers:
            raise HttpError(411, "Length Required", close=True)  # no chunked bodies
        length = int(headers.get("content-length") or 0)  # h11 checked it is a number
        if length and event.method != b"POST":
            raise HttpError(400, "Only POST requests carry a body", close=True)
        if length > self.limits.body_size:
            raise HttpError(413, "Request body too large", close=True)
        while len(self.raw) < length:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise HttpError(408, "Request timeout", close=True)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                raise HttpError(408, "Request timeout", close=True) from None
            if not data:
                raise HttpError(400, "Incomplete request body", close=True)
            self.raw += data
        if length == 0:
            return b""
        body, self.raw = self.raw[:length], self.raw[length:]
        self.h11.receive_data(body)
        data = self.h11.next_event()
        return data.data if isinstance(data, h11.Data) else b""

    # --- writing --------------------------------------------------------------------------
    def _send(self, event) -> None:
        self.sock.sendall(self.h11.send(event))

    def respond(self, status: int, body: bytes | str = b"", headers=(),
                content_type: str = "text/plain") -> None:
        data = body.encode() if isinstance(body, str) else body
        all_headers = [("Server", SERVER), ("Content-Type", content_type),
                       ("Content-Length", str(len(data))), *headers]
        if self.h11.our_state is not h11.SEND_RESPONSE:
            # No request was accepted (malformed input): answer by hand; the connection ends.
            lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                     *(f"{k}: {v}" for k, v in all_headers), "Connection: close", "", ""]
            self.sock.sendall("\r\n".join(lines).encode("latin-1") + data)
            self.broken = True
            return
        # Head and body in one write (one TLS record up to 16 KiB): a second small write
        # would wait for the client's delayed ACK wherever Nagle is on.
        out = self.h11.send(h11.Response(status_code=status, headers=all_headers))
        if data:
            out += self.h11.send(h11.Data(data=data))
        out += self.h11.send(h11.EndOfMessage())
        self.sock.sendall(out)

    def interim(self, status: int, headers=()) -> None:
        """A 1xx response (102 Processing) before the final one."""
        self._send(h11.InformationalResponse(status_code=status, headers=list(headers)))

    def switch_protocols(self, headers=()) -> bytes:
        """Send 101; from now on the socket carries the raw stream. Returns bytes the client
        already sent after its request."""
        self._send(h11.InformationalResponse(status_code=101, headers=[
            ("Connection", "Upgrade"), ("Upgrade", "QVD/1.0"), *headers]))
        return self.raw

    @property
    def can_continue(self) -> bool:
        return (not self.broken and self.h11.our_state is h11.DONE
                and self.h11.their_state is h11.DONE)
