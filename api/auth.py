"""Administrators' logins and bearer tokens: POST /api/v1/login checks the password (and
TOTP code) as `qvd-admin --admin` does (db/acl/login.py), under the L7R's failed-login
back-off (l7r/auth/backoff.py: the same table and l7r.auth.backoff.* limits, keyed by
`admin/<login>` and by the client address), and returns a random token that lasts
api.token.lifetime; only its SHA-256 is stored (admin_tokens). Each request then turns its
token into the administrator as it is now: blocked administrators and tenants are refused,
roles are read afresh."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from qvd.db import audit
from qvd.db.acl.actor import Actor
from qvd.db.acl.login import LoginRefused, actor_of, authenticate
from qvd.db.models import Administrator, AdminToken, Tenant
from qvd.db.runtime import OnSession
from qvd.l7r.auth import backoff

from .problems import Problem

COOKIE = "qvd_api_token"
EXPIRED = "log in first: POST /api/v1/login (no token, or it expired or was revoked)"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _refused(engine, login: str, address: str, reason: str) -> None:
    with Session(engine) as s, s.begin():
        audit.record(s, None, "admin", "login", {"login": login}, status="refused",
                     error=reason, source="api", client_address=address, who=login)


def log_in(engine, cfg, login: str, password: str, totp: str | None,
           address: str) -> tuple[str, datetime]:
    """A new token for the administrator, or Problem 401 / 429."""
    watched = backoff.keys(f"admin/{login.strip().casefold()}", address)
    with Session(engine) as s, s.begin():  # counted first, committed whatever follows
        throttled = backoff.throttled(OnSession(s), cfg, watched)
    if throttled:
        wait = cfg.get_float("l7r.auth.backoff.seconds")
        _refused(engine, login, address, "too many failed logins")
        raise Problem(429, f"too many failed logins; try again in {wait:g} s",
                      {"Retry-After": str(int(wait))})
    try:
        with Session(engine, expire_on_commit=False) as s, s.begin():
            actor = authenticate(s, login, password, lambda: totp)
            backoff.succeeded(OnSession(s), watched, watched[0])
            token = secrets.token_urlsafe(32)
            expires = datetime.now(timezone.utc) + timedelta(
                seconds=cfg.get_float("api.token.lifetime"))
            s.add(AdminToken(token_hash=token_hash(token),
                             administrator_id=actor.administrator_id, expires_at=expires,
                             client_address=address))
    except LoginRefused as exc:
        _refused(engine, login, address, exc.reason)
        raise Problem(401, str(exc)) from None
    return token, expires


def log_out(engine, token: str) -> None:
    with Session(engine) as s, s.begin():
        s.execute(delete(AdminToken).where(AdminToken.token_hash == token_hash(token)))


def actor_for(engine, token: str | None) -> Actor:
    """The administrator a token stands for, as it is now; Problem 401 otherwise."""
    if not token:
        raise Problem(401, EXPIRED, {"WWW-Authenticate": "Bearer"})
    with Session(engine) as s, s.begin():
        found = s.execute(
            select(Administrator, Tenant)
            .join(AdminToken, AdminToken.administrator_id == Administrator.id)
            .join(Tenant, Tenant.id == Administrator.tenant_id)
            .where(AdminToken.token_hash == token_hash(token),
                   AdminToken.expires_at > datetime.now(timezone.utc))).first()
        if found is None:
            raise Problem(401, EXPIRED, {"WWW-Authenticate": "Bearer"})
        admin, tenant = found
        if admin.blocked or tenant.blocked:
            raise Problem(401, f"administrator {admin.name}@{tenant.name} is blocked"
                          if admin.blocked else f"tenant '{tenant.name}' is blocked")
        return actor_of(s, admin, tenant)
