"""The desktop port: the only way into a session from outside the VM.

The display server never listens on the VM's address: Xvnc and nxagent listen on a Unix
socket in a directory of the session's account (session.private_dir); this relay listens on the
VM's desktop port and passes a connection on only when its first line is the node's secret
(`QVD-AUTH <secret>`, which the L7R sends before the client's bytes). Anyone else who reaches
the port (another VM, a local account of the node with the process backend, the desktop user
inside the VM) is cut off after a line, and the refusal is logged.
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Callable

from . import secret

log = logging.getLogger("qvd.vma.relay")
GREETING_TIMEOUT = 5.0
CHUNK = 256 * 1024


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                end.shutdown(how)
            except OSError:
                pass


def _greeting(conn: socket.socket) -> tuple[bytes, bytes]:
    """(the first line, what came after it in the same reads)."""
    conn.settimeout(GREETING_TIMEOUT)
    data = b""
    while b"\n" not in data and len(data) <= secret.MAX_GREETING:
        chunk = conn.recv(secret.MAX_GREETING)
        if not chunk:
            break
        data += chunk
    line, newline, rest = data.partition(b"\n")
    conn.settimeout(None)
    return line + newline, rest


class DesktopRelay:
    def __init__(self, address: str, port: int, node_secret: str,
                 target: Callable[[], tuple[int, object] | None]):
        self.secret = node_secret
        self.target = target  # (socket family, address) of the live session, or None
        self.listener = socket.create_server((address, port), backlog=16)

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True, name="desktop-relay").start()

    def _accept(self) -> None:
        while True:
            conn, peer = self.listener.accept()
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn: socket.socket, peer) -> None:
        try:
            line, rest = _greeting(conn)
        except OSError:
            conn.close()
            return
        if not secret.matches(secret.from_greeting(line), self.secret):
            log.warning("desktop port: refused %s:%s (no valid node secret)", *peer[:2])
            conn.close()
            return
        where = self.target()
        if where is None:
            log.warning("desktop port: %s:%s authenticated but no session listens", *peer[:2])
            conn.close()
            return
        family, address = where
        desktop = socket.socket(family, socket.SOCK_STREAM)
        try:
            desktop.connect(address)
            if rest:
                desktop.sendall(rest)
        except OSError as exc:
            log.warning("desktop port: the session does not answer: %s", exc)
            desktop.close()
            conn.close()
            return
        for sock in (conn, desktop):
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=pump, args=(desktop, conn), daemon=True)
        back.start()
        pump(conn, desktop)
        back.join()
        conn.close()
        desktop.close()
