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
    Bearer tokens are always understood: they were issued by this system."""
    creds = parse_authorization(header)
    cfg = tenant_settings(db, cfg, creds)
    names = [n.strip() for n in (cfg.get("l7r.auth.plugins") or "default").split(",") if n.strip()]
    if "token" not in names:
        names.append("token")
    reasons = []
    for name in names:
        plugin = PLUGINS.get(name)
        if plugin is None:
            reasons.append(f"{name}: plugin not available")
            continue
        try:
            return plugin(db, cfg, creds)
        except AuthFailed as exc:
            reasons.append(f"{name}: {exc}")
    raise AuthFailed("; ".join(reasons))


def tenant_settings(db, cfg, creds: Credentials):
    """A password login names its tenant, whose own chain and plugin settings (`qvd-admin
    config set -t TENANT`) apply; tokens and unknown tenants keep the global ones."""
    if creds.scheme != "basic":
        return cfg
    row = db.fetchone(TENANT, {"name": creds.tenant})
    return db.settings(cfg.node, row["id"]) if row else cfg
