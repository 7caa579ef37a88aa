"""The browser's desktop tunnel: a WebSocket (RFC 6455, framed by wsproto) on the L7R's own
port, opened by the portal's desktop page. It authenticates by the portal's cookie, accepts only
the portal's own Origin, then runs connect_to_vm's steps (connect.py: takeover on any node,
placement, start, the agent's session) and carries the desktop's RFB stream.

On the socket, after the handshake:
- text messages, JSON, while the desktop comes up: {"progress": "..."} for each step (the same
  lines a QVD client gets as 102), then {"ready": true, "vm": id} (for a pool's entry, the id
  of the VM it handed out);
- after that, binary messages both ways: the RFB stream (noVNC on the page);
- a failure: {"error": "...", "status": N} (the HTTP status a QVD client would get), then a
  close with code 4000 + N. A takeover (the desktop opened elsewhere) or an administrator's
  disconnect closes with 4001.

A desktop whose vma.session.type is nx gets a VNC session in a browser unless
l7r.portal.nx_as_vnc is 0. Everything from the browser is hostile: wsproto rejects unmasked
and malformed frames (close 1002); a message is passed on as it arrives, never gathered, so a
huge frame costs no memory."""
from __future__ import annotations

import json
import logging
import re
import selectors
import socket
import ssl

import psycopg
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Request,
                            TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..connect import Connect, unavailable
from ..endpoints import owned_vm, vm_id_of
from ..http import HttpError
from ..proxy import WAIT, Traffic, read_some, send_all
from .cookie import require_portal_user, same_origin

log = logging.getLogger(__name__)

GEOMETRY = re.compile(r"[1-9][0-9]{2,4}x[1-9][0-9]{2,4}")
TAKEN_OVER = 4001


class Channel:
    """One accepted WebSocket: JSON text while connecting, then the RFB stream."""

    def __init__(self, sock: socket.socket, ws: WSConnection, pending: bytes):
        self.sock, self.ws, self.pending = sock, ws, pending

    def _out(self, event) -> None:
        try:
            data = self.ws.send(event)
        except LocalProtocolError:
            return  # closed already: nothing more may be said
        send_all(self.sock, data)

    def say(self, **message) -> None:
        self._out(TextMessage(data=json.dumps(message)))

    def close(self, code: int, reason: str) -> None:
        try:
            self._out(CloseConnection(code=code, reason=reason[:120]))
        except OSError:
            pass  # the browser is gone

    def fail(self, status: int, message: str) -> None:
        self.say(error=message.strip(), status=status)
        self.close(4000 + status, message.strip())

    def _from_browser(self, data: bytes, desktop: socket.socket, traffic: Traffic) -> str | None:
        """Feeds the browser's bytes through the framing; why the stream ends, if it does."""
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, BytesMessage):
                send_all(desktop, event.data)
                traffic.up += len(event.data)
            elif isinstance(event, Ping):
                self._out(event.response())
            elif isinstance(event, CloseConnection):
                self._out(event.response())
                return "client closed" if event.code in (1000, 1001, 1005) else \
                    f"client closed ({event.code} {event.reason or ''})".strip()
            # TextMessage and Pong: nothing to do on the desktop's side
        return None

    def carry(self, desktop: socket.socket, traffic: Traffic) -> str:
        """The RFB stream both ways until one side ends it; why it ended."""
        self.sock.setblocking(False)
        desktop.setblocking(False)
        desktop.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.pending and (ended := self._from_browser(self.pending, desktop, traffic)):
            return ended
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(desktop, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in selector.select():
                    if key.fileobj is desktop:
                        data = read_some(desktop)
                        if not data or data is WAIT:
                            self.close(1000, "The desktop session ended")
                            return "desktop closed"
                        self._out(BytesMessage(data=data))
                        traffic.down += len(data)
                        continue
                    while True:  # TLS may hold decrypted bytes the selector cannot see
                        data = read_some(self.sock)
                        if data is WAIT:
                            break
                        if not data:
                            return "client closed"
                        if ended := self._from_browser(data, desktop, traffic):
                            return ended
                        if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                            break
        except (ConnectionError, OSError) as exc:
            return f"connection error: {exc}"
        finally:
            selector.close()


class BrowserConnect(Connect):
    """connect_to_vm for a browser: progress and errors as messages, VNC only."""

    def __init__(self, session, vm_id: int, params, channel: Channel):
        super().__init__(session, vm_id, params)
        self.channel = channel

    def progress(self, text: str) -> None:
        self.channel.say(progress=text)

    def desktop_params(self) -> dict:
        params = super().desktop_params()
        if params.get("vma.session.type", "vnc") != "vnc":
            if not self.cfg.get_bool("l7r.portal.nx_as_vnc"):
                raise HttpError(403, "This desktop is set up for NX, which a browser cannot "
                                     "show, and the administrator does not allow a VNC "
                                     "session in its place: use the QVD client.\n")
            params["vma.session.type"] = "vnc"
        return params

    def check_session_type(self, answer: dict) -> None:
        if answer.get("session") not in (None, "vnc"):
            raise unavailable("this desktop runs an NX session, which a browser cannot show: "
                              "end it from the QVD client first")

    def switch(self) -> bytes:
        self.progress("Connection established")
        self.channel.say(ready=True, vm=self.vm_id)  # a pool's entry: the VM handed out
        return b""  # bytes the browser sent early are WebSocket frames: the channel has them

    def pump(self, desktop: socket.socket, traffic: Traffic, early: bytes) -> str:
        try:
            return self.channel.carry(desktop, traffic)
        except SystemExit:  # SIGTERM: the desktop was opened elsewhere, or disconnected
            self.channel.sock.settimeout(1)
            self.channel.close(TAKEN_OVER, "The desktop was opened elsewhere or disconnected "
                                           "by an administrator")
            raise

    def run_for_browser(self) -> None:
        try:
            self.run()
        except HttpError as exc:
            self.channel.fail(exc.status, exc.message)
        except psycopg.OperationalError as exc:
            log.error("database unavailable: %s", exc)
            self.channel.fail(503, "The service is temporarily unavailable, retry later")


def accept(session, req) -> Channel:
    """The WebSocket handshake (101), or HttpError before it."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(req.head)
        event = next(ws.events(), None)
    except RemoteProtocolError as exc:
        raise HttpError(400, f"Bad WebSocket handshake: {exc}\n", close=True) from None
    if not isinstance(event, Request):
        raise HttpError(400, "Bad WebSocket handshake\n", close=True)
    session.http.sock.sendall(ws.send(AcceptConnection()))
    return Channel(session.http.sock, ws, session.http.raw)


def tunnel(session, req) -> None:
    """GET /portal/tunnel?id=N[&geometry=WxH]: the WebSocket of the portal's desktop page."""
    if "websocket" not in req.header("upgrade").lower():
        raise HttpError(426, "Upgrade Required\n", [("Upgrade", "websocket"),
                                                     ("Connection", "Upgrade")])
    if not same_origin(req, required=True):
        raise HttpError(403, "Cross-origin WebSocket refused\n")
    user = require_portal_user(session, req)
    session.require_serving()
    vm = owned_vm(session, user, vm_id_of(req))
    if vm["blocked"]:
        raise HttpError(403, "The requested virtual machine is offline for maintenance\n")
    params = []
    geometry = dict(req.query).get("geometry", "")
    if GEOMETRY.fullmatch(geometry):
        params.append(("qvd.client.geometry", geometry))
    channel = accept(session, req)
    BrowserConnect(session, vm["id"], params, channel).run_for_browser()
