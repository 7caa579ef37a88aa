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

log = logging.getLogger(__name__)

READY_TITLE = "qvd-l7r ready"
MESSAGE_SIZE = 512  # the client's address, utf-8
RECONNECT_PAUSE = 1.0  # seconds between attempts to open the warm connection again
# What requests read and write: a new backend's first statement on a table loads its catalog
# entries and those of its indexes (0.2-1 ms a table at parse and plan time). Lookups by the
# keys the L7R uses, that find nothing (a constant-false condition would skip the indexes).
WARM_UP = (
    "SELECT key, value FROM configs WHERE tenant_id = -2 AND key = ''",
    "SELECT 1 FROM hosts h JOIN host_runtimes r ON r.host_id = h.id "
    "JOIN host_counters c ON c.host_id = h.id WHERE h.id = -1",
    "SELECT 1 FROM user_tokens t JOIN users u ON u.id = t.user_id "
    "JOIN tenants n ON n.id = u.tenant_id WHERE t.token_hash = '' OR u.login = ''",
    "SELECT 1 FROM auth_failures WHERE key = ''",
    "SELECT 1 FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id JOIN osfs o ON o.id = v.osf_id "
    "JOIN vm_counters c ON c.vm_id = v.id LEFT JOIN di_tags t ON t.osf_id = v.osf_id "
    "WHERE v.id = -1 OR v.user_id = -1 OR v.pool_id = -1",
    "SELECT 1 FROM pools p JOIN pool_members m ON m.pool_id = p.id "
    "JOIN pool_groups g ON g.pool_id = p.id WHERE p.id = -1 OR m.user_id = -1",
    "SELECT 1 FROM sessions WHERE id = -1 OR (vm_id = -1 AND ended_at IS NULL)",
    "SELECT 1 FROM vm_properties WHERE owner_id = -1 UNION ALL "
    "SELECT 1 FROM user_properties WHERE owner_id = -1 UNION ALL "
    "SELECT 1 FROM osf_properties WHERE owner_id = -1")


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
    for statement in WARM_UP:
        try:  # a database slot free at once, or no warm connection
            db.execute_unless_busy(statement)
        except psycopg.OperationalError as exc:
            log.debug("no warm database connection: %s", exc)
            db.release()
            return
        except psycopg.Error as exc:  # a statement this schema refuses: warm the others
            log.warning("warm-up statement refused: %s", str(exc).strip().splitlines()[0])


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
