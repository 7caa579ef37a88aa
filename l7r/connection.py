"""One client connection, in its own forked process: TLS handshake, then requests in
sequence until the client leaves, an error closes it, or the stream is switched."""
from __future__ import annotations

import logging
import socket
import ssl

import psycopg

from qvd.db.engine import connection_params

from .db import L7rDb
from .endpoints import ENDPOINTS, Session, set_title
from .http import HttpConnection, HttpError, Limits

log = logging.getLogger(__name__)


def limits_from(cfg) -> Limits:
    return Limits(head_size=cfg.get_int("l7r.limits.header_size"),
                  header_count=cfg.get_int("l7r.limits.header_count"),
                  request_line=cfg.get_int("l7r.limits.request_line"),
                  idle_timeout=cfg.get_float("l7r.timeout.idle"))


def serve_connection(sock: socket.socket, peer: str, cfg, tls: ssl.SSLContext | None) -> None:
    set_title(f"qvd-l7r {peer} handshake")
    if tls is not None:
        sock.settimeout(cfg.get_float("l7r.timeout.handshake"))
        try:
            sock = tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", peer, exc)
            sock.close()
            return
    set_title(f"qvd-l7r {peer}")
    http = HttpConnection(sock, limits_from(cfg))
    db = L7rDb(connection_params(cfg), f"qvd-l7r {peer}")
    try:
        session = Session(http, db, cfg.node, cfg.get("nodename"), peer)
        while True:
            try:
                request = http.next_request()
                if request is None:
                    break
                session.count("http_requests")
                if request.method != "GET":
                    raise HttpError(405, "Method Not Allowed\n", [("Allow", "GET")])
                handler = ENDPOINTS.get(request.path)
                if handler is None:
                    raise HttpError(404, "Not Found\n")
                handler(session, request)
            except HttpError as exc:
                http.respond(exc.status, exc.message, exc.headers)
                if exc.close:
                    break
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
    finally:
        db.close()
        try:
            sock.close()
        except OSError:
            pass
