"""The `default` plugin: users and passwords in the database (Argon2id; QVD's legacy
base64(sha256(salt + password)) hashes are accepted once and re-hashed with Argon2id)."""
from __future__ import annotations

import logging

from qvd.db.passwords import hash_password, is_legacy, verify_password

from .base import AuthFailed, Credentials, Identity

log = logging.getLogger(__name__)

# An exact match first; then (l7r.auth.login.case_insensitive) the one user whose login
# differs only in case. Two such users (made by hand) are ambiguous: neither is chosen.
FIND = """
SELECT u.id, u.login, u.password, u.blocked, t.id AS tenant_id, t.name AS tenant,
       t.blocked AS tenant_blocked, u.login = %(login)s AS exact
FROM users u JOIN tenants t ON t.id = u.tenant_id
WHERE t.name = %(tenant)s AND t.id >= 1
  AND (u.login = %(login)s OR (%(fold)s AND lower(u.login) = lower(%(login)s)))
ORDER BY exact DESC LIMIT 2"""


def find_user(db, cfg, login: str, tenant: str) -> dict | None:
    """The user row a login names in its tenant (canonical: the stored login), or None."""
    rows = db.fetch(FIND, {"login": login, "tenant": tenant,
                           "fold": cfg.get_bool("l7r.auth.login.case_insensitive")})
    if not rows:
        return None
    if rows[0]["exact"] or len(rows) == 1:
        return rows[0]
    raise AuthFailed(f"{login}@{tenant} matches several users that differ only in case")


def authenticate(db, cfg, creds: Credentials) -> Identity:
    if creds.scheme != "basic":
        raise AuthFailed("not a password")
    row = find_user(db, cfg, creds.login, creds.tenant)
    if row is None:
        raise AuthFailed(f"unknown user {creds.login}@{creds.tenant}")
    salt = cfg.get("l7r.auth.plugin.default.salt") or ""
    if not verify_password(creds.password, row["password"], legacy_salt=salt):
        raise AuthFailed(f"wrong password for {creds.login}@{creds.tenant}")
    if row["blocked"] or row["tenant_blocked"]:
        raise AuthFailed(f"{creds.login}@{creds.tenant} is blocked")
    if is_legacy(row["password"]):
        db.execute("UPDATE users SET password = %(p)s WHERE id = %(id)s",
                   {"p": hash_password(creds.password), "id": row["id"]})
        log.info("user %d: legacy password hash upgraded to Argon2id", row["id"])
    return Identity(row["id"], row["login"], row["tenant_id"], row["tenant"])
