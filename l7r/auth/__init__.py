"""Authentication plugins, chained per tenant by `l7r.auth.plugins` (first success wins)."""
from __future__ import annotations

from . import database, ldap, token
from .base import AuthFailed, Credentials, Identity, parse_authorization

PLUGINS = {"default": database.authenticate, "ldap": ldap.authenticate,
           "token": token.authenticate}

TENANT = "SELECT id FROM tenants WHERE name = %(name)s AND id >= 1"

__all__ = ["AuthFailed", "Credentials", "Identity", "authenticate", "parse_authorization"]


def authenticate(db, cfg, header: str) -> Identity:
    """Raise AuthFailed unless one plugin of the chain accepts the Authorization header.
    A bearer token is accepted only when the chain of its user's tenant names `token`."""
    creds = parse_authorization(header)
    if creds.scheme == "bearer":
        identity = token.authenticate(db, cfg, creds)
        if "token" not in chain(db.settings(cfg.node, identity.tenant_id)):
            raise AuthFailed(f"tenant {identity.tenant}'s l7r.auth.plugins leaves out token")
        return identity
    cfg = tenant_settings(db, cfg, creds)
    reasons = []
    for name in chain(cfg):
        plugin = PLUGINS.get(name)
        if plugin is None:
            reasons.append(f"{name}: plugin not available")
            continue
        if name == "token":
            continue  # a password is not a token
        try:
            return plugin(db, cfg, creds)
        except AuthFailed as exc:
            reasons.append(f"{name}: {exc}")
    raise AuthFailed("; ".join(reasons) or "no password plugin in l7r.auth.plugins")


def chain(cfg) -> list[str]:
    return [n.strip() for n in (cfg.get("l7r.auth.plugins") or "default").split(",")
            if n.strip()]


def tenant_settings(db, cfg, creds: Credentials):
    """A password login names its tenant, whose own chain and plugin settings (`qvd-admin
    config set -t TENANT`) apply; tokens and unknown tenants keep the global ones."""
    if creds.scheme != "basic":
        return cfg
    row = db.fetchone(TENANT, {"name": creds.tenant})
    return db.settings(cfg.node, row["id"]) if row else cfg
