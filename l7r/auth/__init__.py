"""Authentication plugins, chained per tenant by `l7r.auth.plugins` (first success wins).

Password checks by the `default` plugin (Argon2id, 64 MiB and a core for a while each) run
at most `l7r.auth.max_concurrent_hashes` at a time per node: each connection is its own
process, so the slots are lock files under path.run (`l7r-hash-<n>.lock`, flock'ed: a
process that dies frees its slot). A login that finds no free slot within
`l7r.auth.hash_wait` seconds gets 503 (ChecksBusy: the caller takes its back-off count
back, since the password was never checked)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import time

from ..http import HttpError
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


def _slot_paths(cfg) -> list[str]:
    run = cfg.get("path.run")
    return [os.path.join(run, f"l7r-hash-{n}.lock")
            for n in range(max(1, cfg.get_int("l7r.auth.max_concurrent_hashes")))]


def _try_slots(paths: list[str]) -> int | None:
    for path in paths:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
    return None


@contextlib.contextmanager
def hash_slot(cfg):
    """Hold one of the node's password check slots (bounded wait, then 503)."""
    paths = _slot_paths(cfg)
    os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
    deadline = time.monotonic() + cfg.get_float("l7r.auth.hash_wait")
    pause = 0.005
    while (fd := _try_slots(paths)) is None:
        if time.monotonic() >= deadline:
            raise ChecksBusy()
        time.sleep(pause)  # flock has no timed wait; the slots free within a hash or two
        pause = min(pause * 2, 0.05)
    try:
        yield
    finally:
        os.close(fd)
