"""Authentication plugins, chained per tenant by `l7r.auth.plugins` (first success wins).

Password checks by the `default` plugin (Argon2id, 64 MiB and a core for a while each) run
at most `l7r.auth.max_concurrent_hashes` at a time per node (slots.py). A login that finds
no free slot within `l7r.auth.hash_wait` seconds gets 503 (ChecksBusy: the caller takes its
back-off count back, since the password was never checked)."""
from __future__ import annotations

import contextlib

from ..http import HttpError
from ..slots import Slots, SlotsBusy
from . import database, ldap, token
from .base import AuthFailed, Credentials, Identity, parse_authorization

PLUGINS = {"default": database.authenticate, "ldap": ldap.authenticate,
           "token": token.authenticate}

__all__ = ["AuthFailed", "ChecksBusy", "Credentials", "Identity", "authenticate",
           "parse_authorization"]


class ChecksBusy(HttpError):
    """503: every password check slot of the node stayed taken for l7r.auth.hash_wait."""

    def __init__(self):
        super().__init__(503, "Too many logins at once, retry shortly\n", [("Retry-After", "2")])


def authenticate(db, cfg, header: str) -> tuple[Identity, object]:
    """(identity, the settings with its tenant's layer), or AuthFailed unless one plugin of
    the chain accepts the Authorization header. A bearer token is accepted only when the
    chain of its user's tenant names `token`."""
    creds = parse_authorization(header)
    if creds.scheme == "bearer":
        identity = token.authenticate(db, cfg, creds)
        cfg = db.with_tenant(cfg, identity.tenant_id)
        if "token" not in chain(cfg):
            raise AuthFailed(f"tenant {identity.tenant}'s l7r.auth.plugins leaves out token")
        return identity, cfg
    cfg = db.with_tenant_named(cfg, creds.tenant)  # its own chain and plugin settings
    reasons = []
    for name in chain(cfg):
        plugin = PLUGINS.get(name)
        if plugin is None:
            reasons.append(f"{name}: plugin not available")
            continue
        if name == "token":
            continue  # a password is not a token
        try:
            if name == "default" and creds.scheme == "basic":
                with hash_slot(cfg):
                    return plugin(db, cfg, creds), cfg
            return plugin(db, cfg, creds), cfg
        except AuthFailed as exc:
            reasons.append(f"{name}: {exc}")
    raise AuthFailed("; ".join(reasons) or "no password plugin in l7r.auth.plugins")


def chain(cfg) -> list[str]:
    return [n.strip() for n in (cfg.get("l7r.auth.plugins") or "default").split(",")
            if n.strip()]


@contextlib.contextmanager
def hash_slot(cfg):
    """Hold one of the node's password check slots (bounded wait, then 503)."""
    slots = Slots(cfg.get("path.run"), "hash", cfg.get_int("l7r.auth.max_concurrent_hashes"))
    try:
        slots.acquire(cfg.get_float("l7r.auth.hash_wait"))
    except SlotsBusy:
        raise ChecksBusy() from None
    with slots:
        yield
