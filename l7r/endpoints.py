"""The QVD/1.0 endpoints (all GET). connect_to_vm and stop_vm come with the next part of the
L7R issue; until then they answer 501."""
from __future__ import annotations

import json
import logging

from .auth import AuthFailed, Identity, authenticate
from .auth import token as tokens
from .http import HttpError, Request

log = logging.getLogger(__name__)
UNAUTHORIZED = [("WWW-Authenticate", 'Basic realm="QVD"')]

NODE = """
SELECT h.id, r.state, r.blocked FROM hosts h JOIN host_runtimes r ON r.host_id = h.id
WHERE h.name = %(name)s"""

USER_VMS = """
SELECT v.id, v.name, r.vm_state AS state, r.blocked::int AS blocked
FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id JOIN osfs o ON o.id = v.osf_id
WHERE v.user_id = %(user)s AND NOT o.is_application ORDER BY v.id"""

COUNT = "UPDATE host_counters SET {column} = {column} + 1 WHERE host_id = %(host)s"


class Session:
    """One client connection: its database, its cached identity, the node it came to."""

    def __init__(self, http, db, node_cfg: dict, nodename: str, peer: str):
        self.http, self.db, self.node_cfg = http, db, node_cfg
        self.nodename, self.peer = nodename, peer
        self.identity: Identity | None = None
        self._auth_header: str | None = None
        self.cfg = db.settings(node_cfg)
        node = db.fetchone(NODE, {"name": nodename})
        self.host_id = node["id"] if node else None

    def count(self, column: str) -> None:
        if self.host_id is not None:
            self.db.execute(COUNT.format(column=column), {"host": self.host_id})

    def node_serving(self) -> bool:
        node = self.db.fetchone(NODE, {"name": self.nodename})
        return bool(node and node["state"] == "running" and not node["blocked"])

    def require_serving(self) -> None:
        if not self.node_serving():
            raise HttpError(503, "This node is not accepting connections\n")

    def require_user(self, req: Request) -> Identity:
        header = req.header("authorization")
        if self.identity is not None and header == self._auth_header:
            return self.identity  # authentication is cached per connection
        if not header:
            raise HttpError(401, "Authentication required\n", UNAUTHORIZED)
        self.count("auth_attempts")
        try:
            self.identity = authenticate(self.db, self.cfg, header)
        except AuthFailed as exc:
            log.info("authentication failed from %s: %s", self.peer, exc)
            self.count("auth_failed")
            raise HttpError(401, "Authentication failed\n", UNAUTHORIZED) from None
        self._auth_header = header
        self.count("auth_ok")
        self.cfg = self.db.settings(self.node_cfg, self.identity.tenant_id)
        set_title(f"qvd-l7r {self.identity.login}@{self.identity.tenant} from {self.peer}")
        return self.identity


def set_title(title: str) -> None:
    try:
        from setproctitle import setproctitle
        setproctitle(title)
    except ImportError:
        pass


def _json(session: Session, body) -> None:
    session.http.respond(200, json.dumps(body), content_type="application/json")


def ping(session: Session, req: Request) -> None:
    if not session.node_serving():
        raise HttpError(503, "Node not running\n")
    session.http.respond(200, "I am alive!\n")


def list_of_vm(session: Session, req: Request) -> None:
    user = session.require_user(req)
    session.require_serving()
    _json(session, session.db.fetch(USER_VMS, {"user": user.user_id}))


def authenticate_user(session: Session, req: Request) -> None:
    session.require_user(req)
    _json(session, {})


def create_auth_token(session: Session, req: Request) -> None:
    user = session.require_user(req)
    _json(session, {"auth_token": tokens.create(session.db, session.cfg, user.user_id)})


def not_yet(session: Session, req: Request) -> None:
    session.require_user(req)
    raise HttpError(501, "Not implemented by this version of the node\n")


ENDPOINTS = {
    "/qvd/ping": ping,
    "/qvd/list_of_vm": list_of_vm,
    "/qvd/authenticate_user": authenticate_user,
    "/qvd/create_auth_token": create_auth_token,
    "/qvd/connect_to_vm": not_yet,
    "/qvd/stop_vm": not_yet,
}
