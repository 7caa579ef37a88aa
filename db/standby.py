"""A streaming standby of an embedded cluster, and its promotion: what a failover manager
(Patroni or similar) does, in two steps, for the tests and benchmarks of a database failover."""
from __future__ import annotations

import os

import psycopg

from .embedded import Cluster, _free_port


def make_standby(primary: Cluster, root: str) -> Cluster:
    """A streaming standby of `primary` under root (pg_basebackup -R), on its own port."""
    standby = Cluster(root)
    os.makedirs(standby.socket_dir)
    os.chmod(root, 0o755)
    for path in (root, standby.socket_dir):
        standby._chown(path)
    conninfo = (f"host=127.0.0.1 port={primary.port} user=qvd password={primary.password} "
                "application_name=standby")
    standby._pg("pg_basebackup", "-d", conninfo, "-D", standby.data, "-R", "-X", "stream",
                "-c", "fast")  # no waiting for a spread checkpoint
    port = _free_port()
    with open(os.path.join(standby.data, "postgresql.auto.conf"), "a", encoding="utf-8") as conf:
        conf.write(f"port = {port}\nunix_socket_directories = '{standby.socket_dir}'\n")
    for name, value in (("port", port), ("password", primary.password)):
        with open(os.path.join(root, name), "w", encoding="ascii") as handle:
            handle.write(f"{value}\n")
    standby.start()
    return standby


def replayed(primary: Cluster, standby: Cluster, dbname: str) -> bool:
    """Whether the standby has replayed everything the primary has written so far."""
    with psycopg.connect(**dict(primary.connection_params(), dbname=dbname)) as conn:
        (sent,), = conn.execute("SELECT pg_current_wal_lsn()").fetchall()
    with psycopg.connect(**dict(standby.connection_params(), dbname=dbname)) as conn:
        (done,), = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                (sent,)).fetchall()
    return done


def fail_over(primary: Cluster, standby: Cluster) -> None:
    """The failover manager's two steps: the primary stops, the standby is promoted."""
    primary.stop()
    standby._pg("pg_ctl", "-D", standby.data, "-w", "promote")
