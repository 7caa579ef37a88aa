"""A scripted browser for the portal's HTTP and WebSocket sides (no Chromium): form posts with
an Origin, the session cookie, and a WebSocket client (wsproto) that can also send frames no
browser would (unmasked, oversized)."""
from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlencode

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, RejectConnection,
                            RejectData, Request, TextMessage)


def tls_socket(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
    return sock


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http(port: int, method: str, path: str, form: dict | None = None,
         headers: dict | None = None) -> Reply:
    """One request on a new connection (Connection: close); the whole reply."""
    body = urlencode(form).encode() if form is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if form is not None:
        lines += ["Content-Type: application/x-www-form-urlencoded",
                  f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with tls_socket(port) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    reply = Reply(int(status_line.split()[1]), {}, rest)
    for line in header_lines:
        name, _, value = line.partition(":")
        reply.headers[name.strip().lower()] = value.strip()
        if name.lower() == "set-cookie":
            key, _, val = value.strip().split(";")[0].partition("=")
            reply.cookies[key] = val
    return reply


class WebSocket:
    """A client WebSocket to the portal's tunnel: the handshake's answer in .status (101 or
    the HTTP refusal), then messages."""

    def __init__(self, port: int, path: str, cookie: str | None = None,
                 origin: str | None = "self", cookie_name: str = "qvd_portal"):
        self.sock = tls_socket(port)
        self.ws = WSConnection(ConnectionType.CLIENT)
        headers = []
        if origin is not None:
            headers.append((b"Origin", (f"https://127.0.0.1:{port}" if origin == "self"
                                        else origin).encode()))
        if cookie is not None:
            headers.append((b"Cookie", f"{cookie_name}={cookie}".encode()))
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target=path,
                                               extra_headers=headers)))
        self.status, self.refusal, self.events, self.closed = None, b"", [], None
        while self.status is None:
            self._receive()

    def _receive(self) -> bool:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.status = 101
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
            elif isinstance(event, RejectData):
                self.refusal += event.data
            else:
                self.events.append(event)
        return bool(data)

    def next_event(self):
        while not self.events:
            if not self._receive():
                return None
        return self.events.pop(0)

    def messages_until_ready(self) -> list[dict]:
        """The JSON messages up to {"ready"} or an error and the close after it."""
        said = []
        while (event := self.next_event()) is not None:
            if isinstance(event, TextMessage):
                said.append(json.loads(event.data))
                if said[-1].get("ready"):
                    break
            elif isinstance(event, CloseConnection):
                said.append({"closed": event.code, "reason": event.reason})
                break
        return said

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def receive_bytes(self, count: int) -> bytes:
        got = b""
        while len(got) < count:
            event = self.next_event()
            if event is None or isinstance(event, CloseConnection):
                break
            if isinstance(event, BytesMessage):
                got += event.data
        return got

    def recv(self, _size: int = 0) -> bytes:
        """The next binary message (b"" once closed): the tunnel as a socket for rfb.Stream."""
        while (event := self.next_event()) is not None:
            if isinstance(event, BytesMessage):
                return bytes(event.data)
            if isinstance(event, CloseConnection):
                self.closed = event.code
                return b""
        return b""

    def sendall(self, data: bytes) -> None:
        self.send_bytes(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
