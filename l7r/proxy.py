"""The desktop stream: bytes both ways between the client's (TLS) socket and the VM's
desktop port, with large buffers, until either side closes. The byte counts live in a
Traffic the caller holds, so they survive a stream ended by a signal."""
from __future__ import annotations

import selectors
import socket
import ssl
from dataclasses import dataclass

BUFFER = 256 * 1024
WAIT = b"\0wait"  # read_some: a TLS record is not complete yet, nothing to forward


def read_some(sock: socket.socket) -> bytes:
    """What a non-blocking socket has (b"": it closed or failed; WAIT: nothing yet)."""
    try:
        return sock.recv(BUFFER)
    except ssl.SSLWantReadError:
        return WAIT
    except (ConnectionError, OSError):
        return b""


def send_all(sock: socket.socket, data: bytes) -> None:
    """All of data on a socket the stream keeps non-blocking (blocks until it is sent)."""
    sock.setblocking(True)
    try:
        sock.sendall(data)
    finally:
        sock.setblocking(False)


@dataclass
class Traffic:
    up: int = 0    # bytes from the client
    down: int = 0  # bytes to the client


def splice(client: socket.socket, vm: socket.socket, traffic: Traffic,
           first: bytes = b"") -> str:
    """Carry the stream until it ends; returns why it ended."""
    client.setblocking(False)
    vm.setblocking(False)
    for sock in (client, vm):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if first:
        vm.sendall(first)
        traffic.up += len(first)
    selector = selectors.DefaultSelector()
    selector.register(client, selectors.EVENT_READ, vm)
    selector.register(vm, selectors.EVENT_READ, client)
    try:
        while True:
            for key, _ in selector.select():
                source, target = key.fileobj, key.data
                while True:  # TLS may hold decrypted bytes the selector cannot see
                    data = read_some(source)
                    if data is WAIT:
                        break
                    if not data:
                        return "client closed" if source is client else "desktop closed"
                    send_all(target, data)
                    if source is client:
                        traffic.up += len(data)
                    else:
                        traffic.down += len(data)
                    if not (isinstance(source, ssl.SSLSocket) and source.pending()):
                        break
    except (ConnectionError, OSError) as exc:
        return f"connection error: {exc}"
    finally:
        selector.close()
