"""Ready L7R children: forked ahead of their client (l7r.prefork of them per node), with the
database connection a first request needs already open and its catalog caches warm, so a
new client pays neither a fork, nor a PostgreSQL login, nor a fresh backend's first look at
each table.

A ready child waits on its channel (one end of a SOCK_SEQPACKET pair, the acceptor holds
the other) for exactly one client socket, passed as SCM_RIGHTS with the client's address;
then it serves it as any child does and is counted among the connections. While it waits,
it watches its database connection: one the server closed (a restart, a terminated
backend) is dropped and opened again a moment later. The acceptor closing the channel
(it ended or was restarted) ends a child still waiting. Its process title is READY_TITLE,
which is how the node's counts of open connections leave it out."""
from __future__ import annotations

import logging
import select
import socket
import time

import psycopg

from . import connect, endpoints, pools, session_params
from .auth import backoff, database, token

log = logging.getLogger(__name__)

READY_TITLE = "qvd-l7r ready"
MESSAGE_SIZE = 512  # the client's address, utf-8
RECONNECT_PAUSE = 1.0  # seconds between attempts to open the warm connection again
# What requests read and write: a new backend's first statement on a table loads its catalog
# entries, those of its indexes and of the functions and operators it calls (0.2-1 ms a
# table at parse and plan time). The requests' own statements, with values that find (and
# so write) nothing.
NOTHING = {"keys": [], "max": 0, "window": 1e9, "hash": "", "login": "", "tenant": "",
           "fold": True, "user": -1, "vm": -1, "name": ""}
WARM_UP = (
    "SELECT key, value FROM configs WHERE tenant_id = -2 AND key = ''",
    "SELECT 1 FROM hosts h JOIN host_runtimes r ON r.host_id = h.id "
    "JOIN host_counters c ON c.host_id = h.id WHERE h.id = -1",
    endpoints.NODE, backoff.BLOCKED, backoff.COUNT, token.USE, database.FIND,
    endpoints.USER_VMS, pools.ENTRIES, endpoints.OWNED_VM, connect.STATE,
    session_params.MERGED_PROPERTIES,
    "SELECT 1 FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id JOIN osfs o ON o.id = v.osf_id "
    "JOIN vm_counters c ON c.vm_id = v.id LEFT JOIN di_tags t ON t.osf_id = v.osf_id "
    "WHERE v.id = -1 OR v.user_id = -1 OR v.pool_id = -1",
    "SELECT 1 FROM pools p JOIN pool_members m ON m.pool_id = p.id "
    "JOIN pool_groups g ON g.pool_id = p.id WHERE p.id = -1 OR m.user_id = -1",
    "SELECT 1 FROM sessions WHERE id = -1 OR (vm_id = -1 AND ended_at IS NULL)")

# What a desktop's connect fires: the triggers of vm_runtimes and sessions. PL/pgSQL compiles
# a function at its first call in each backend (2-3 ms, on the connect's path otherwise).
# Fired on rows the warm-up rolls back: one VM's row that no one holds (blocked flipped: no
# one sees or is notified of it), and a session row of this backend's own (id -pid: no
# sequence value is used up).
WARM_TRIGGERS = (
    "UPDATE vm_runtimes SET blocked = NOT blocked WHERE vm_id = "
    "(SELECT vm_id FROM vm_runtimes LIMIT 1 FOR UPDATE SKIP LOCKED)",
    "INSERT INTO sessions (id, login, vm_name, host_name) "
    "VALUES (-pg_backend_pid(), '', '', '')",
    "UPDATE sessions SET ended_at = now(), end_reason = '' WHERE id = -pg_backend_pid()")


def is_ready(pid: int | str) -> bool:
    """A ready child still waiting for its client (by its process title)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().startswith(READY_TITLE.encode())
    except OSError:
        return False


def warm(db) -> None:
    """Open db's connection (if a slot is free at once) and warm it; nothing when the
    database is away: the first request opens one as without a ready child."""
    try:
        for statement in WARM_UP:
            try:  # a database slot free at once, or no warm connection
                db.execute_unless_busy(statement, NOTHING)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:  # a statement this schema refuses: warm the others
                log.warning("warm-up statement refused: %s", str(exc).strip().splitlines()[0])
        with db.conn.transaction(force_rollback=True):
            for statement in WARM_TRIGGERS:
                db.conn.execute(statement)
    except psycopg.OperationalError as exc:
        log.debug("no warm database connection: %s", exc)
        db.release()
    except psycopg.Error as exc:
        log.warning("trigger warm-up refused: %s", str(exc).strip().splitlines()[0])


def wait_for_client(channel: socket.socket, db) -> tuple[socket.socket, str] | None:
    """The client socket and address the acceptor passes; None when it closed the channel."""
    retry_at = None
    while True:
        watched = [channel]
        if db.holding:
            watched.append(db.conn.fileno())
        elif retry_at is None:
            retry_at = time.monotonic() + RECONNECT_PAUSE
        timeout = None if retry_at is None else max(0.0, retry_at - time.monotonic())
        readable, _, _ = select.select(watched, [], [], timeout)
        if channel in readable:
            message, fds, _, _ = socket.recv_fds(channel, MESSAGE_SIZE, 1)
            if not fds:
                return None  # the acceptor is gone
            channel.close()
            if len(readable) > 1:  # the server closed the warm connection just now
                db.release()
            peer = message.decode("utf-8", "replace")
            db.rename(f"qvd-l7r {peer}")  # pg_stat_activity shows whose connection it is now
            return socket.socket(fileno=fds[0]), peer
        if readable:  # the server spoke unasked: it closed the connection (or will)
            log.info("warm database connection closed by the server; opening another soon")
            db.release()  # the next round sets when
        elif retry_at is not None and time.monotonic() >= retry_at:
            retry_at = None
            warm(db)
