"""Failed-login back-off: after l7r.auth.backoff.max_failures failures for one login, or from
one client address, further attempts are refused for l7r.auth.backoff.seconds without even
checking the password (which also spares the node the Argon2id work).

Counting is atomic: every attempt is counted first, in one statement that returns the new
counts (`throttled`), and only an attempt whose counts are all within the limit goes on to
check the password. However many attempts race, exactly max_failures of them are checked in
a window; the rest are refused unchecked, and the table's counts equal the attempts. A
success then takes its own count back (the login's row is deleted, as before; the address's
count loses this attempt), as does an attempt that could not be checked at all (`uncount`:
no free password check slot); a failure has nothing left to do. The window runs from the
last counted attempt below the limit, so hammering a locked login does not extend its lock.
Rows whose window has passed are pruned by the same statement (a few at a time, skipping
rows other attempts hold).

A bearer token is not counted first: checking it costs a digest and one lookup, nothing to
ration, and guessing one is hopeless. A token login only reads whether its address is over
the limit (`blocked`), and counts when it fails; a good token writes nothing (token logins
from one address, a busy load balancer's say, do not queue on that address's row)."""
from __future__ import annotations

# Keys are taken in sorted order, so that racing statements lock their rows in one order.
COUNT = """
WITH pruned AS (
    DELETE FROM auth_failures WHERE key IN (
        SELECT key FROM auth_failures
        WHERE last_at < now() - make_interval(secs => %(window)s) AND key <> ALL(%(keys)s)
        LIMIT 100 FOR UPDATE SKIP LOCKED))
INSERT INTO auth_failures AS f (key, failures, last_at)
SELECT k, 1, now() FROM unnest(%(keys)s::text[]) k ORDER BY k
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN f.last_at > now() - make_interval(secs => %(window)s)
                    THEN f.failures + 1 ELSE 1 END,
    last_at = CASE WHEN f.last_at > now() - make_interval(secs => %(window)s)
                        AND f.failures >= %(max)s
                   THEN f.last_at ELSE now() END
RETURNING key, failures"""

BLOCKED = """
SELECT 1 AS over FROM auth_failures
WHERE key = ANY(%(keys)s) AND failures >= %(max)s
  AND last_at > now() - make_interval(secs => %(window)s) LIMIT 1"""

UNCOUNT = """
UPDATE auth_failures SET failures = greatest(failures - 1, 0) WHERE key = ANY(%(keys)s)"""

SUCCEEDED = "DELETE FROM auth_failures WHERE key = %(key)s"

def keys(login: str | None, address: str | None) -> list[str]:
    return [k for k in (login and f"login:{login}", address and f"address:{address}") if k]


def throttled(db, cfg, keys_: list[str]) -> bool:
    """Count this attempt for every key; True if any count is now past the limit."""
    if not keys_:
        return False
    rows = db.fetch(COUNT, {"keys": sorted(keys_),
                            "max": cfg.get_int("l7r.auth.backoff.max_failures"),
                            "window": cfg.get_float("l7r.auth.backoff.seconds")})
    limit = cfg.get_int("l7r.auth.backoff.max_failures")
    return any(row["failures"] > limit for row in rows)


def blocked(db, cfg, keys_: list[str]) -> bool:
    """Whether any key is at its limit now, counting nothing (token logins)."""
    if not keys_:
        return False
    return db.fetchone(BLOCKED, {"keys": keys_,
                                 "max": cfg.get_int("l7r.auth.backoff.max_failures"),
                                 "window": cfg.get_float("l7r.auth.backoff.seconds")}) \
        is not None


def uncount(db, keys_: list[str]) -> None:
    """Take back the count of an attempt that was never checked."""
    if keys_:
        db.execute(UNCOUNT, {"keys": keys_})


def succeeded(db, keys_: list[str], login_key: str | None) -> None:
    """The login's failures are forgiven; the other keys lose this attempt's count."""
    others = [k for k in keys_ if k != login_key]
    if login_key:
        db.execute(SUCCEEDED, {"key": login_key})
    if others:
        db.execute(UNCOUNT, {"keys": others})
