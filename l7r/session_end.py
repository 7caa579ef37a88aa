"""The end of a desktop session, written after the stream without a database connection held
during it: the L7R child journals the end (bytes each way, reason, time) to a local file
first, then writes it to the database with a few retries and removes the file. A file left
behind (the database was away, or the child was killed meanwhile) is applied by the node's
qvd-hkd once its writer is gone (`reconcile`). Both statements are idempotent, so an end
applied twice counts once.

Journal files: <path.home>/l7r-journal/<pid>-<start ticks>-<session id>.json, written to a
temporary name and renamed, so a reader never sees half an entry."""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass

import psycopg

from qvd.db.runtime.vm_release import DISCONNECTED
from qvd.hkd.backends.procfs import alive, start_time

log = logging.getLogger(__name__)

RETRIES = (0.5, 1.0, 2.0)  # seconds between the child's attempts before it leaves the file

# Session durations' histogram buckets (seconds; qvd-hkd's qvd_cluster_l7r_session_seconds).
SESSION_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)
# The end reasons' classes for the metrics ("connection error: ..." carries free text).
REASON_CLASS = """CASE end_reason WHEN 'client closed' THEN 'client_closed'
  WHEN 'desktop closed' THEN 'desktop_closed' WHEN 'aborted' THEN 'aborted' ELSE 'error' END"""

# Closes the session row once (ended_at IS NULL) and counts it (QVD: sessions under
# internal.l7r.short_session seconds are short sessions), with its node's metrics counters:
# bytes, seconds, and its (reason class, duration bucket) row.
CLOSE_SESSION = f"""
WITH s AS (
  UPDATE sessions SET ended_at = to_timestamp(%(ended)s), bytes_from_client = %(up)s,
         bytes_to_client = %(down)s, end_reason = %(reason)s
  WHERE id = %(session)s AND ended_at IS NULL
  RETURNING vm_id, host_id, ended_at - started_at < make_interval(secs => %(short)s) AS short,
            greatest(extract(epoch FROM ended_at - started_at)::float8, 0) AS seconds,
            {REASON_CLASS} AS reason),
c AS (UPDATE vm_counters SET connections = connections + 1,
             short_sessions = short_sessions + (SELECT short::int FROM s)
      WHERE vm_id = (SELECT vm_id FROM s)),
e AS (INSERT INTO host_session_ends AS h (host_id, reason, le, sessions)
      SELECT host_id, reason, (SELECT coalesce(min(b), 'Infinity') FROM unnest(
              ARRAY[{", ".join(map(str, SESSION_BUCKETS))}]::float8[]) b WHERE b >= seconds), 1
      FROM s WHERE host_id IS NOT NULL
      ON CONFLICT (host_id, reason, le) DO UPDATE SET sessions = h.sessions + 1)
UPDATE host_counters SET connection_ok = connection_ok + 1,
       short_sessions = short_sessions + (SELECT short::int FROM s),
       bytes_from_client = bytes_from_client + %(up)s,
       bytes_to_client = bytes_to_client + %(down)s,
       session_seconds = session_seconds + (SELECT seconds FROM s)
WHERE host_id = (SELECT host_id FROM s)"""

# The VM's connection is given back only if it is still this one: same process and node, and
# no later session opened on the VM (a reused pid cannot release someone else's desktop).
# session NULL: given back before any session opened (the connect failed).
GIVE_BACK = f"""
UPDATE vm_runtimes SET {DISCONNECTED}
WHERE vm_id = %(vm)s AND l7r_pid = %(pid)s AND l7r_host_id = %(host)s
  AND (%(session)s::bigint IS NULL
       OR NOT EXISTS (SELECT 1 FROM sessions WHERE vm_id = %(vm)s AND id > %(session)s))"""

STATEMENTS = (CLOSE_SESSION, GIVE_BACK)


@dataclass
class SessionEnd:
    session: int   # sessions.id
    vm: int
    pid: int       # the L7R child that carried it
    host: int      # the node it was served on
    up: int        # bytes from the client
    down: int      # bytes to the client
    reason: str
    ended: float   # epoch seconds, the node's clock
    short: int     # internal.l7r.short_session

    @property
    def params(self) -> dict:
        return asdict(self)


def journal_dir(cfg) -> str:
    return os.path.join(cfg.get("path.home"), "l7r-journal")


def journal(directory: str, end: SessionEnd) -> str:
    """Write the entry (durably enough: a rename of a complete file); returns its path."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name = f"{end.pid}-{start_time(end.pid) or 0}-{end.session}.json"
    path = os.path.join(directory, name)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(end.params, handle)
    os.rename(path + ".tmp", path)
    return path


def write_with_retries(db, end: SessionEnd, path: str) -> bool:
    """The child's attempts (db: its L7rDb); the file goes once the end is in the database."""
    for pause in (0, *RETRIES):
        time.sleep(pause)
        try:
            for statement in STATEMENTS:
                db.execute(statement, end.params)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("session %d: its end could not be written yet (%s)", end.session,
                        str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__)
            db.release()
            continue
        os.unlink(path)
        db.release()
        return True
    log.warning("session %d: its end stays in %s for qvd-hkd to write", end.session, path)
    return False


def orphaned(directory: str) -> list[tuple[str, SessionEnd]]:
    """Entries whose writer is gone, oldest first; unreadable files are set aside (.bad)."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not name.endswith(".json"):
            continue
        path = os.path.join(directory, name)
        try:
            pid, ticks, _ = name.split("-", 2)
            if alive(int(pid), int(ticks)):
                continue  # its child may still write it
            with open(path, encoding="utf-8") as handle:
                found.append((path, SessionEnd(**json.load(handle))))
        except (OSError, ValueError, TypeError) as exc:
            log.error("journal entry %s unreadable (%s): set aside", path, exc)
            os.replace(path, path + ".bad")
    return found
