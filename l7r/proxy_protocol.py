"""PROXY protocol v2 (HAProxy's binary header) from the load balancers named in
`l7r.proxy_protocol.trusted`: their connections start with a header that gives the real
client's address, read before the TLS handshake and within its deadline. Connections from
any other address are never read this way, so a client cannot choose the address that its
back-off, its caps and its session row see."""
from __future__ import annotations

import ipaddress
import socket
import struct
import time

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FAMILIES = {0x11: (socket.AF_INET, 4), 0x21: (socket.AF_INET6, 16)}  # TCP over IPv4 / IPv6


class ProxyHeaderError(Exception):
    pass


def trusted(cfg) -> set[str]:
    """Addresses whose connections carry a PROXY v2 header."""
    return {str(ipaddress.ip_address(part.strip()))
            for part in cfg.get("l7r.proxy_protocol.trusted").split(",") if part.strip()}


def _exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProxyHeaderError("the PROXY header did not arrive in time")
        sock.settimeout(left)
        try:
            chunk = sock.recv(size - len(data))
        except (TimeoutError, socket.timeout):
            raise ProxyHeaderError("the PROXY header did not arrive in time") from None
        if not chunk:
            raise ProxyHeaderError("the connection closed inside its PROXY header")
        data += chunk
    return data


def client_address(sock: socket.socket, balancer: str, timeout: float) -> str:
    """The address the header names (the balancer's own for LOCAL: its health checks)."""
    deadline = time.monotonic() + timeout
    head = _exactly(sock, 16, deadline)
    if head[:12] != SIGNATURE:
        raise ProxyHeaderError("no PROXY v2 header from a trusted load balancer")
    command, family, length = head[12], head[13], struct.unpack(">H", head[14:16])[0]
    if command >> 4 != 2 or command & 0x0F not in (0, 1):
        raise ProxyHeaderError(f"PROXY header: version/command {command:#x} unknown")
    block = _exactly(sock, length, deadline) if length else b""
    if command & 0x0F == 0 or family not in FAMILIES:
        return balancer  # LOCAL, or an unspecified/unix family: the balancer itself
    af, size = FAMILIES[family]
    if len(block) < 2 * size + 4:
        raise ProxyHeaderError("PROXY header: address block too short")
    return socket.inet_ntop(af, block[:size])
