"""The desktop stream: bytes both ways between the client's (TLS) socket and the VM's
desktop port, until either side closes. The byte counts live in a Traffic the caller holds,
so they survive a stream ended by a signal.

Both sockets stay non-blocking for the whole stream and each direction has one buffer,
allocated once: a read takes everything the socket has (many 16 KiB TLS records at a time)
into it, one write passes it on. A write that would block waits for that socket only (the
other direction waits meanwhile, as with any relay that does not buffer without bound)."""
from __future__ import annotations

import select
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


def _fill(source: socket.socket, view: memoryview) -> tuple[int, bool]:
    """Read what source has now into view, up to its size: (bytes read, whether source
    ended); 0 bytes and not ended: nothing yet (a TLS record not complete)."""
    got, size = 0, len(view)
    while got < size:
        try:
            count = source.recv_into(view[got:])
        except (ssl.SSLWantReadError, BlockingIOError):
            break
        except (ConnectionError, OSError):
            count = 0
        if not count:
            return got, True
        got += count
    return got, False


def _drain(target: socket.socket, view: memoryview) -> None:
    """All of view to the non-blocking target, waiting while it cannot take more (TLS may
    need to read, for a key update, before it writes again)."""
    sent, size = 0, len(view)
    while sent < size:
        try:
            sent += target.send(view[sent:])  # TLS: the same bytes again after a WantWrite
        except (ssl.SSLWantWriteError, BlockingIOError):
            select.select([], [target], [])
        except ssl.SSLWantReadError:
            select.select([target], [], [])


def _relay(source: socket.socket, target: socket.socket,
           buffer: memoryview) -> tuple[int, bool]:
    """Pass on what source has: (bytes passed, whether source ended)."""
    passed = 0
    while True:
        count, ended = _fill(source, buffer)
        if count:
            _drain(target, buffer[:count])
            passed += count
        # A full buffer may leave decrypted bytes in TLS that no poll would report.
        if ended or count < len(buffer) or \
                not (isinstance(source, ssl.SSLSocket) and source.pending()):
            return passed, ended


def splice(client: socket.socket, vm: socket.socket, traffic: Traffic,
           first: bytes = b"") -> str:
    """Carry the stream until it ends; returns why it ended."""
    client.setblocking(False)
    vm.setblocking(False)
    for sock in (client, vm):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up, down = memoryview(bytearray(BUFFER)), memoryview(bytearray(BUFFER))
    poller = select.epoll()
    try:
        if first:
            _drain(vm, memoryview(first))
            traffic.up += len(first)
        poller.register(client.fileno(), select.EPOLLIN)
        poller.register(vm.fileno(), select.EPOLLIN)
        from_client = client.fileno()
        while True:
            for fd, _ in poller.poll():
                if fd == from_client:
                    passed, ended = _relay(client, vm, up)
                    traffic.up += passed
                    if ended:
                        return "client closed"
                else:
                    passed, ended = _relay(vm, client, down)
                    traffic.down += passed
                    if ended:
                        return "desktop closed"
    except (ConnectionError, OSError) as exc:
        return f"connection error: {exc}"
    finally:
        poller.close()
