"""One client connection, in its own forked process: TLS handshake (within
l7r.timeout.handshake in all), then requests in sequence until the client leaves, an error
closes it, or the stream is switched. Each request head must arrive whole within
l7r.timeout.head of its first byte (the first one: of the handshake's end), else 408; between
requests a connection may idle for l7r.timeout.idle. TCP_NODELAY is on from the start: every
response leaves in one write (http.py), so nothing waits for the client's delayed ACK.

The child's database connection (db.py) opens when a parsed request first needs it and is
released when the client idles between requests and while its desktop streams. A ready
child (prefork.py) has it open already: it keeps it only if the first request comes at once."""
from __future__ import annotations

import logging
import socket
import ssl
import time

import psycopg

from qvd.db.engine import l7r_connection_params

from .db import L7rDb
from .endpoints import Session, set_title
from .http import IDLE_HOLD, HttpConnection, HttpError, Limits
from .routes import handler_for
from .slots import Slots
from .tls import handshake

log = logging.getLogger(__name__)


def limits_from(cfg) -> Limits:
    return Limits(head_size=cfg.get_int("l7r.limits.header_size"),
                  header_count=cfg.get_int("l7r.limits.header_count"),
                  request_line=cfg.get_int("l7r.limits.request_line"),
                  idle_timeout=cfg.get_float("l7r.timeout.idle"),
                  head_timeout=cfg.get_float("l7r.timeout.head"))


def tune_socket(sock: socket.socket) -> None:
    """Options of every accepted socket: TCP_NODELAY (responses are single writes)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not TCP (tests over Unix sockets)


def _handshake(sock: socket.socket, peer: str, cfg, tls: ssl.SSLContext | None):
    """The (TLS) socket to talk HTTP on, or None when the handshake failed or took too long."""
    if tls is None:
        return sock
    try:
        return handshake(tls, sock, cfg.get_float("l7r.timeout.handshake"))
    except (ssl.SSLError, OSError) as exc:  # TimeoutError is an OSError
        log.info("TLS handshake with %s failed: %s", peer, exc)
        sock.close()
        return None


def refuse_connection(sock: socket.socket, peer: str, cfg, tls: ssl.SSLContext | None,
                      reason: str) -> None:
    """Over a connection limit: a 503 with the reason (after the handshake, so the client can
    read it), no database, then close."""
    set_title(f"qvd-l7r {peer} refused")
    sock = _handshake(sock, peer, cfg, tls)
    if sock is None:
        return
    try:
        sock.settimeout(cfg.get_float("l7r.timeout.handshake"))
        HttpConnection(sock, limits_from(cfg)).respond(
            503, f"Service unavailable: {reason}, retry later\n", [("Retry-After", "5")])
        # Read what the client sends meanwhile (its request) until it closes, for a moment:
        # closing over unread bytes would reset the connection, and the 503 with it.
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 2
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(4096):
                break
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def child_db(cfg, name: str) -> L7rDb:
    """A connection process's database: opened on first use, under the node's slots."""
    return L7rDb(l7r_connection_params(cfg), name,
                 Slots(cfg.get("path.run"), "db", cfg.get_int("l7r.database.max_connections")),
                 cfg.get_float("l7r.database.wait"))


def serve_connection(sock: socket.socket, peer: str, cfg, tls: ssl.SSLContext | None,
                     db: L7rDb | None = None) -> None:
    set_title(f"qvd-l7r {peer} handshake")
    sock = _handshake(sock, peer, cfg, tls)
    if sock is None:
        if db is not None:
            db.release()
        return
    set_title(f"qvd-l7r {peer}")
    # No database connection until a request has parsed, none while the client idles.
    if db is None:
        db = child_db(cfg, f"qvd-l7r {peer}")
    http = HttpConnection(sock, limits_from(cfg), on_idle=db.release)
    if db.holding and not http.readable_within(IDLE_HOLD):
        db.release()  # a ready child's warm connection: not for a client that sends nothing
    db.rename(f"qvd-l7r {peer}")  # behind a load balancer: the client's address
    portal = cfg.get_bool("l7r.portal.enabled")
    try:
        session = Session(http, db, cfg.node, cfg.get("nodename"), peer)
        while True:
            try:
                request = http.next_request()
                if request is None:
                    break
                session.begin_request()
                handler_for(request, portal)(session, request)
            except HttpError as exc:
                http.respond(exc.status, exc.message, exc.headers)
                if exc.close:
                    break
            finally:
                session.flush_counts()
            if not http.can_continue:
                break
    except psycopg.OperationalError as exc:
        log.error("database unavailable: %s", exc)
        try:
            http.respond(503, "Service temporarily unavailable\n")
        except Exception:  # noqa: BLE001 - the client may be gone too
            pass
    except OSError:
        pass  # the client went away
    except Exception:  # a bug: the client hears 500 rather than nothing; the acceptor logs it
        try:
            http.respond(500, "Internal server error\n")
        except Exception:  # noqa: BLE001 - the answer is a courtesy
            pass
        raise
    finally:
        db.release()
        try:
            sock.close()
        except OSError:
            pass
