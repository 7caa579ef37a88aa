"""A small QVD/1.0 protocol client shared by the tests, the benchmarks and the desktop client.

It speaks exactly what QVD clients speak: HTTP/1.1 over TLS, Basic or Bearer authorization,
several requests on one connection, interim 102 responses, 101 to switch to the desktop
stream. Standard library only.
"""
from __future__ import annotations

import base64
import json
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlencode


class ProtocolError(Exception):
    """The server's answer could not be read."""


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""
    interim: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def json(self):
        return json.loads(self.body)


def accepting(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections there (a node's L7R coming up)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def tls_context(cafile: str | None = None, verify: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class QvdConnection:
    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None,
                 timeout: float = 30.0):
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = tls.wrap_socket(raw, server_hostname=host) if tls else raw
        self.buffer = b""
        self.authorization: str | None = None

    def login(self, login: str, password: str) -> None:
        pair = f"{login}:{password}".encode()
        self.authorization = "Basic " + base64.b64encode(pair).decode()

    def use_token(self, token: str) -> None:
        self.authorization = "Bearer " + base64.b64encode(token.encode()).decode()

    # --- wire -----------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ProtocolError("connection closed by the server")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.sock.recv(65536)
            if not data:
                raise ProtocolError("connection closed in the middle of a body")
            self.buffer += data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self, on_interim=None) -> Response:
        """on_interim(status, headers) is called for each 1xx as it arrives (progress)."""
        interim = []
        while True:
            status_line = self._line().decode("latin-1")
            version, _, rest = status_line.partition(" ")
            if version != "HTTP/1.1":
                raise ProtocolError(f"unexpected status line {status_line!r}")
            code, _, reason = rest.partition(" ")
            headers = {}
            while line := self._line():
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            status = int(code)
            if 100 <= status < 200 and status != 101:
                interim.append((status, headers))
                if on_interim:
                    on_interim(status, headers)
                continue
            body = b""
            if status != 101 and "content-length" in headers:
                body = self._exactly(int(headers["content-length"]))
            return Response(status, reason, headers, body, interim)

    def request(self, path: str, params: dict | None = None, headers: dict | None = None,
                method: str = "GET", on_interim=None) -> Response:
        query = "?" + urlencode(params) if params else ""
        lines = [f"{method} {path}{query} HTTP/1.1", "Accept: application/json",
                 "User-Agent: qvd-client"]
        if self.authorization:
            lines.append(f"Authorization: {self.authorization}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return self.read_response(on_interim)

    # --- endpoints ------------------------------------------------------------------------
    def ping(self) -> Response:
        return self.request("/qvd/ping")

    def list_of_vm(self) -> Response:
        return self.request("/qvd/list_of_vm")

    def authenticate(self) -> Response:
        return self.request("/qvd/authenticate_user")

    def create_auth_token(self) -> Response:
        return self.request("/qvd/create_auth_token")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
