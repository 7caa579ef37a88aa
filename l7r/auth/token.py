"""The `token` plugin: bearer tokens from /qvd/create_auth_token, stored as SHA-256, valid
until they expire (any number of uses)."""
from __future__ import annotations

import hashlib
import secrets

from .base import AuthFailed, Credentials, Identity

FIND = """
SELECT u.id, u.login, u.blocked, t.id AS tenant_id, t.name AS tenant, t.blocked AS tenant_blocked
FROM user_tokens k JOIN users u ON u.id = k.user_id JOIN tenants t ON t.id = u.tenant_id
WHERE k.token_hash = %(hash)s AND k.expires_at > now()"""

CREATE = """
INSERT INTO user_tokens (token_hash, user_id, expires_at)
VALUES (%(hash)s, %(user)s, now() + make_interval(secs => %(life)s))"""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate(db, cfg, creds: Credentials) -> Identity:
    if creds.scheme != "bearer":
        raise AuthFailed("not a token")
    row = db.fetchone(FIND, {"hash": token_hash(creds.token)})
    if row is None:
        raise AuthFailed("unknown or expired token")
    if row["blocked"] or row["tenant_blocked"]:
        raise AuthFailed(f"{row['login']}@{row['tenant']} is blocked")
    return Identity(row["id"], row["login"], row["tenant_id"], row["tenant"])


def create(db, cfg, user_id: int) -> str:
    """A new 256-bit token for the user; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    db.execute(CREATE, {"hash": token_hash(token), "user": user_id,
                        "life": cfg.get_float("l7r.auth.token.lifetime")})
    return token
