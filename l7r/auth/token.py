"""The `token` plugin: bearer tokens from /qvd/create_auth_token, stored as SHA-256, valid
until they expire (any number of uses; each use is counted on the row).

A token belongs to the password login it descends from: one minted with a token expires at
the latest when that login's first token does (login_expires_at), so a token cannot keep
itself alive. Tokens end early when the user is blocked (a trigger), the password is changed
(`qvd-admin user passwd`) or `qvd-admin user token del` removes them. Expired rows are purged
by the statement that creates a token."""
from __future__ import annotations

import hashlib
import secrets

from .base import AuthFailed, Credentials, Identity

# One statement: find the token and count its use.
USE = """
UPDATE user_tokens k SET uses = k.uses + 1, last_used_at = now()
FROM users u JOIN tenants t ON t.id = u.tenant_id
WHERE k.token_hash = %(hash)s AND k.expires_at > now() AND u.id = k.user_id
RETURNING u.id, u.login, u.blocked, t.id AS tenant_id, t.name AS tenant,
          t.blocked AS tenant_blocked"""

# Purges expired rows in the same statement. %(parent)s: the hash of the token that
# authenticated the request, or NULL for a password login.
CREATE = """
WITH purged AS (DELETE FROM user_tokens WHERE expires_at <= now()),
parent AS (SELECT login_expires_at FROM user_tokens
           WHERE token_hash = %(parent)s AND user_id = %(user)s AND expires_at > now()),
login AS (SELECT CASE WHEN %(parent)s::text IS NULL
                      THEN now() + make_interval(secs => %(life)s)
                      ELSE (SELECT login_expires_at FROM parent) END AS ends)
INSERT INTO user_tokens (token_hash, user_id, expires_at, login_expires_at)
SELECT %(hash)s, %(user)s, least(now() + make_interval(secs => %(life)s), ends), ends
FROM login WHERE ends > now()
RETURNING expires_at"""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate(db, cfg, creds: Credentials) -> Identity:
    if creds.scheme != "bearer":
        raise AuthFailed("not a token")
    digest = token_hash(creds.token)
    row = db.fetchone(USE, {"hash": digest})
    if row is None:
        raise AuthFailed("unknown, expired or revoked token")
    if row["blocked"] or row["tenant_blocked"]:
        raise AuthFailed(f"{row['login']}@{row['tenant']} is blocked")
    return Identity(row["id"], row["login"], row["tenant_id"], row["tenant"], token_hash=digest)


def create(db, cfg, user_id: int, parent_hash: str | None = None) -> str:
    """A new 256-bit token for the user; only its hash is stored. parent_hash: the token the
    request was authenticated with, whose login's lifetime bounds the new one."""
    token = secrets.token_urlsafe(32)
    row = db.fetchone(CREATE, {"hash": token_hash(token), "user": user_id,
                               "parent": parent_hash,
                               "life": cfg.get_float("l7r.auth.token.lifetime")})
    if row is None:  # the parent was revoked or expired meanwhile
        raise AuthFailed("the token this request came with is no longer valid")
    return token
