"""The QVD/1.0 endpoints (all GET); connect_to_vm's steps are in connect.py."""
from __future__ import annotations

import json
import logging

import psycopg

from qvd.db.notify import vm_state_channel
from qvd.db.runtime import vm_commands

from .auth import PLUGINS, AuthFailed, ChecksBusy, Identity, authenticate, backoff, chain
from .auth import parse_authorization
from .auth.base import scheme_of
from .auth import token as tokens
from . import pools
from .connect import Connect
from .http import HttpError, Request
from .session_params import CLIENT_PREFIXES

log = logging.getLogger(__name__)
UNAUTHORIZED = [("WWW-Authenticate", 'Basic realm="QVD"')]

NODE = """
SELECT h.id, r.state, r.blocked FROM hosts h JOIN host_runtimes r ON r.host_id = h.id
WHERE h.name = %(name)s"""

# A checked login's count by plugin (qvd-hkd's qvd_cluster_l7r_auth_*), before the request's
# host_counters UPDATE in the same statement.
AUTH_COUNT = """
WITH a AS (INSERT INTO host_auth_counters AS a (host_id, plugin, attempts, failures)
           VALUES (%(host)s, %(plugin)s, 1, %(failed)s)
           ON CONFLICT (host_id, plugin) DO UPDATE
           SET attempts = a.attempts + 1, failures = a.failures + excluded.failures)
"""

USER_VMS = """
SELECT v.id, v.name, r.vm_state AS state, r.blocked::int AS blocked
FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id JOIN osfs o ON o.id = v.osf_id
WHERE v.user_id = %(user)s AND NOT o.is_application ORDER BY v.id"""


class Session:
    """One client connection: its database, its cached identity, the node it came to. The
    settings and the node's id are read when a request first needs them, not on connect;
    the node's row once per request; a request's counters are written in one statement at
    its end (flush_counts)."""

    def __init__(self, http, db, node_cfg: dict, nodename: str, peer: str):
        self.http, self.db, self.node_cfg = http, db, node_cfg
        self.nodename, self.peer = nodename, peer
        self.identity: Identity | None = None
        self._auth_header: str | None = None
        self._cfg = None
        self._host_id: int | None = None
        self._node: dict | None = None   # the node row as this request saw it
        self._counts: dict[str, int] = {}
        self._login: tuple[str, int] | None = None  # (plugin label, failed) of a checked login

    @property
    def cfg(self):
        if self._cfg is None:
            self._cfg = self.db.settings(self.node_cfg)
        return self._cfg

    def begin_request(self) -> None:
        self._node = None
        self.count("http_requests")

    def node(self) -> dict:
        if self._node is None:
            self._node = self.db.fetchone(NODE, {"name": self.nodename}) or \
                {"id": None, "state": None, "blocked": True}
            self._host_id = self._node["id"]
        return self._node

    @property
    def host_id(self) -> int | None:
        if self._host_id is None:
            self.node()
        return self._host_id

    def count(self, column: str) -> None:
        self._counts[column] = self._counts.get(column, 0) + 1

    def flush_counts(self) -> None:
        """The request's counters in one UPDATE; lost (and logged) if the database is away:
        they are statistics, and the client has its answer already."""
        counts, self._counts = self._counts, {}
        login, self._login = self._login, None
        if not counts:
            return
        try:
            if self.host_id is None:
                return
            sets = ", ".join(f"{column} = {column} + %({column})s" for column in sorted(counts))
            update = f"UPDATE host_counters SET {sets} WHERE host_id = %(host)s"
            params = dict(counts, host=self.host_id)
            if login is not None:
                update = AUTH_COUNT + update
                params.update(plugin=login[0], failed=login[1])
            self.db.execute(update, params)
        except psycopg.Error as exc:
            log.warning("request counters not written: %s", exc)

    def node_serving(self) -> bool:
        node = self.node()
        return node["state"] == "running" and not node["blocked"]

    def require_serving(self) -> None:
        if not self.node_serving():
            raise HttpError(503, "This node is not accepting connections\n")

    def require_user(self, req: Request) -> Identity:
        return self.authenticate(req.header("authorization"))

    def authenticate(self, header: str) -> Identity:
        """The user an Authorization header (Basic or Bearer) names, under the back-off; 401
        (HttpError) otherwise. The browser portal comes here too, with its form or cookie."""
        if self.identity is not None and header == self._auth_header:
            return self.identity  # authentication is cached per connection
        if not header:
            raise HttpError(401, "Authentication required\n", UNAUTHORIZED)
        self.count("auth_attempts")
        login = claimed_login(header)
        watched = backoff.keys(login, self.peer)
        bearer = scheme_of(header) == "bearer"  # counted only if it fails
        if (backoff.blocked if bearer else backoff.throttled)(self.db, self.cfg, watched):
            log.info("login of %s from %s refused: too many failures", login, self.peer)
            self.count("auth_throttled")
            raise HttpError(401, "Too many failed attempts, retry later\n", UNAUTHORIZED)
        try:
            self.identity, tenant_cfg = authenticate(self.db, self.cfg, header)
        except ChecksBusy:
            backoff.uncount(self.db, watched)  # the password was never checked
            raise
        except AuthFailed as exc:
            log.info("authentication failed from %s: %s", self.peer, exc)
            self.count("auth_failed")
            if bearer:  # a password was counted for back-off already, before the check
                backoff.throttled(self.db, self.cfg, watched)
            self._login = (self.plugin_label(header, None), 1)
            raise HttpError(401, "Authentication failed\n", UNAUTHORIZED) from None
        if not bearer:
            backoff.succeeded(self.db, watched, watched[0] if login else None)
        self._auth_header = header
        self.count("auth_ok")
        self._login = (self.plugin_label(header, tenant_cfg), 0)
        self._cfg = tenant_cfg
        set_title(f"qvd-l7r {self.identity.login}@{self.identity.tenant} from {self.peer}")
        return self.identity

    def plugin_label(self, header: str, tenant_cfg) -> str:
        """A checked login's plugin, for the metrics: token for a bearer token, else the
        password plugins of the tenant's chain: one mostly (default, ldap); a chain of several
        is one label (ldap,default), as the chain does not say which one decided. A fixed
        small set, never a login; tenant_cfg None: read here (a failed login)."""
        try:
            creds = parse_authorization(header)
        except AuthFailed:
            return "none"  # unreadable: no plugin saw it
        if creds.scheme == "bearer":
            return "token"
        cfg = tenant_cfg or self.db.with_tenant_named(self.cfg, creds.tenant)
        return ",".join(n for n in chain(cfg) if n in PLUGINS and n != "token") or "none"


def claimed_login(header: str) -> str | None:
    """login@tenant a Basic header claims, case-folded: the back-off's key for one person,
    whichever case an attacker types (logins match regardless of case by default; where a
    tenant keeps case apart, names that differ only in case share one budget). None for
    tokens and unreadable headers."""
    try:
        creds = parse_authorization(header)
    except AuthFailed:
        return None
    return f"{creds.login}@{creds.tenant}".casefold() if creds.scheme == "basic" else None


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
    _json(session, session.db.fetch(USER_VMS, {"user": user.user_id})
          + session.db.fetch(pools.ENTRIES, {"user": user.user_id}))


def authenticate_user(session: Session, req: Request) -> None:
    session.require_user(req)
    _json(session, {})


def create_auth_token(session: Session, req: Request) -> None:
    """A token for the user; asked with a token, it ends no later than the password login
    that token descends from (so tokens cannot renew themselves forever)."""
    user = session.require_user(req)
    try:
        token = tokens.create(session.db, session.cfg, user.user_id, user.token_hash)
    except AuthFailed as exc:
        log.info("no token for %s@%s from %s: %s", user.login, user.tenant, session.peer, exc)
        raise HttpError(401, "Authentication failed\n", UNAUTHORIZED) from None
    _json(session, {"auth_token": token})


OWNED_VM = """
SELECT v.id, r.vm_state, r.vm_cmd, r.blocked FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id
WHERE v.id = %(vm)s AND v.user_id = %(user)s"""


def vm_id_of(req: Request) -> int:
    values = [v for k, v in req.query if k == "id"]
    if not values or not values[-1].strip():
        raise HttpError(422, "Missing parameter: id\n")
    try:
        return int(values[-1])
    except ValueError:
        raise HttpError(422, "The id parameter must be a number\n") from None


def owned_vm(session: Session, user: Identity, vm_id: int, claim: bool = True) -> dict:
    """The user's own VM; anything else, another user's included, is simply not found. A
    negative id is a pool's entry (l7r/pools.py): the user's VM of that pool, handed out
    now unless claim is False."""
    if vm_id < 0:
        vm_id = (pools.hand_out if claim else pools.assigned)(session, user, -vm_id)
    vm = session.db.fetchone(OWNED_VM, {"vm": vm_id, "user": user.user_id})
    if vm is None:
        raise HttpError(404, "Virtual machine not found\n")
    return vm


def stop_vm(session: Session, req: Request) -> None:
    """Ask the VM to stop; 102 while waiting; 200 once stopped, 408 when it takes too long."""
    user = session.require_user(req)
    session.require_serving()
    vm = owned_vm(session, user, vm_id_of(req), claim=False)
    channel = vm_state_channel(vm["id"])
    db = session.db
    db.execute(f"LISTEN {channel}")
    try:
        vm_commands.stop(db, vm["id"])
        session.http.interim(102, [("X-QVD-VM-Info", "Stopping virtual machine")])
        timeout = session.cfg.get_float("internal.l7r.timeout.vm_stop")
        state = db.fetchone("SELECT vm_state FROM vm_runtimes WHERE vm_id = %(vm)s",
                            {"vm": vm["id"]})["vm_state"]
        if state != "stopped":
            for note in db.conn.notifies(timeout=timeout):
                if note.payload.startswith("stopped:"):
                    state = "stopped"
                    break
        if state != "stopped":
            raise HttpError(408, "The virtual machine did not stop in time\n")
    finally:
        db.execute(f"UNLISTEN {channel}")
    session.http.respond(200, "Virtual machine stopped\n")


def connect_to_vm(session: Session, req: Request) -> None:
    if "upgrade" not in req.header("connection").lower() or \
            req.header("upgrade") != "QVD/1.0":
        raise HttpError(426, "Upgrade Required\n", [("Upgrade", "QVD/1.0"),
                                                     ("Connection", "Upgrade")])
    user = session.require_user(req)
    session.require_serving()
    vm_id = vm_id_of(req)
    for key, _ in req.query:
        if key != "id" and not key.startswith(CLIENT_PREFIXES):
            raise HttpError(403, f"Parameter not allowed: {key}\n")
    vm = owned_vm(session, user, vm_id)
    if vm["blocked"]:
        raise HttpError(403, "The requested virtual machine is offline for maintenance\n")
    Connect(session, vm["id"], [(k, v) for k, v in req.query if k != "id"]).run()


ENDPOINTS = {
    "/qvd/ping": ping,
    "/qvd/list_of_vm": list_of_vm,
    "/qvd/authenticate_user": authenticate_user,
    "/qvd/create_auth_token": create_auth_token,
    "/qvd/connect_to_vm": connect_to_vm,
    "/qvd/stop_vm": stop_vm,
}
