"""Failed-login back-off: after l7r.auth.backoff.max_failures failures for one login, or from
one client address, further attempts are refused for l7r.auth.backoff.seconds without even
checking the password (which also spares the node the Argon2id work)."""
from __future__ import annotations

THROTTLED = """
SELECT key FROM auth_failures
WHERE key = ANY(%(keys)s) AND failures >= %(max)s
  AND last_at > now() - make_interval(secs => %(window)s)
LIMIT 1"""

# A failure long after the previous one starts counting again from one.
FAILED = """
INSERT INTO auth_failures AS f (key, failures, last_at) SELECT k, 1, now() FROM unnest(%(keys)s::text[]) k
ON CONFLICT (key) DO UPDATE SET last_at = now(),
    failures = CASE WHEN f.last_at > now() - make_interval(secs => %(window)s)
                    THEN f.failures + 1 ELSE 1 END"""

SUCCEEDED = "DELETE FROM auth_failures WHERE key = %(key)s"


def keys(login: str | None, address: str | None) -> list[str]:
    return [k for k in (login and f"login:{login}", address and f"address:{address}") if k]


def throttled(db, cfg, keys_: list[str]) -> bool:
    return db.fetchone(THROTTLED, {"keys": keys_, "max": cfg.get_int("l7r.auth.backoff.max_failures"),
                                   "window": cfg.get_float("l7r.auth.backoff.seconds")}) is not None


def failed(db, cfg, keys_: list[str]) -> None:
    db.execute(FAILED, {"keys": keys_, "window": cfg.get_float("l7r.auth.backoff.seconds")})


def succeeded(db, login_key: str | None) -> None:
    if login_key:
        db.execute(SUCCEEDED, {"key": login_key})
