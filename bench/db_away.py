"""The database away under two real nodes (issue 13), with the shipped timeouts (a 60 s
failover is what they are made to ride):
  - an outage: PostgreSQL stopped for 30 s with desktops connected through the nodes' L7Rs,
    then started again: desktops lost (agents killed, streams cut), and how long after the
    database returns until a command is served (claimed) by each node;
  - a standby promotion (a pg_basebackup standby, the primary stopped, pg_ctl promote; nodes
    configured with both servers): VMs lost, and how long after the promotion until each
    node serves a command again.
The floor of both "served" figures is hkd.lease.interval: a node learns that the database is
back at its next attempt, and a bare query right after the restart says nothing about that."""
from __future__ import annotations

import os
import secrets
import time

import psycopg
from sqlalchemy.pool import NullPool

from qvd.db.config import Config
from qvd.db.engine import L7R_ROLE, enable_l7r_role, make_engine
from qvd.db.standby import fail_over, make_standby, replayed
from qvd.hkd.backends.procfs import alive
from qvd.hkd.backends.process import free_port
from qvd.l7r.client import QvdConnection, accepting, tls_context

from .cluster_nodes import PASSWORD, Hkd, database_conf, host_state, seed, start_on, states
from .common import private_cluster, write_certificate
from .node import UPGRADE, wait

OUTAGE_S = 30.0


def _running(db, vms) -> bool:
    now = states(db)
    return all(now[vm][0] == "running" for vm in vms)


def _nodes(root: str, database: dict, l7r_params: dict | None = None) -> list[Hkd]:
    """node1 and node2 (not started); with `l7r_params` (the database's libpq params), each
    with an L7R on a free loopback port, logging in as its own role, as deployed."""
    l7r = l7r_params is not None
    if l7r:
        password = secrets.token_urlsafe(24)
        engine = make_engine(l7r_params, poolclass=NullPool)
        enable_l7r_role(engine, password)
        engine.dispose()
        database = dict(database, **{"database.l7r.user": L7R_ROLE,
                                     "database.l7r.password": password})
    conf = [{"l7r.address": "127.0.0.1", "l7r.port": free_port()} if l7r else {}
            for _ in range(2)]
    nodes = [Hkd(root, database, name, conf[i]) for i, name in enumerate(("node1", "node2"))]
    if l7r:
        write_certificate(root)
        nodes[0].admin("config", "ssl", "--cert", f"{root}/cert.pem", "--key", f"{root}/key.pem")
    return nodes


def _run_vms(db, nodes: list[Hkd], vms: int) -> dict[int, int]:
    """Both nodes running, VMs 1..vms running on them (odd ones on node1): vm -> agent pid."""
    for node in nodes:
        node.start()
    wait(lambda: all(host_state(db, h) == "running" for h in (1, 2)), 60)
    for vm in range(1, vms + 1):
        start_on(db, vm, 1 + (vm + 1) % 2)
    wait(lambda: _running(db, range(1, vms + 1)), 120)
    return {vm: pid for vm, (_, _, pid) in states(db).items() if vm <= vms}


def _desktop(port: int, vm: int) -> QvdConnection:
    """A desktop client through the L7R on `port`: TLS, login, connect, 101, first bytes."""
    conn = QvdConnection("127.0.0.1", port, tls_context(verify=False))
    conn.login("bench", PASSWORD)
    reply = conn.request("/qvd/connect_to_vm", {"id": vm}, UPGRADE)
    if reply.status != 101:
        raise RuntimeError(f"vm {vm}: connect answered {reply.status} {reply.body!r}")
    while len(conn.buffer) < 12:  # the desktop's RFB greeting
        conn.buffer += conn.sock.recv(64)
    return conn


def _streams(conn: QvdConnection) -> bool:
    """The desktop answers through the tunnel (its security types, after our version)."""
    try:
        conn.sock.settimeout(10)
        conn.send_raw(b"RFB 003.008\n")
        return conn.sock.recv(64)[:1] >= b"\x01"
    except OSError:
        return False


def _served_after(db, commands: dict[int, int], since: float) -> float:
    """Give each node a start command (vm -> node); seconds from `since` until both claimed."""
    for vm, host in commands.items():
        start_on(db, vm, host)
    claimed: dict[int, float] = {}
    deadline = time.monotonic() + 120
    while len(claimed) < len(commands):
        if time.monotonic() > deadline:
            raise RuntimeError(f"commands not served: {sorted(set(commands) - set(claimed))}")
        for vm, (state, _, _) in states(db).items():
            if vm in commands and vm not in claimed and state != "stopped":
                claimed[vm] = time.monotonic() - since
        time.sleep(0.02)
    return max(claimed.values())


def _lost(pids: dict[int, int], db) -> list[int]:
    """VMs whose agent died or whose row no longer shows it running."""
    now = states(db)
    return [vm for vm, pid in pids.items() if not alive(pid) or now[vm][0] != "running"
            or now[vm][2] != pid]


def outage(desktops: int = 4) -> dict:
    lease = Config().get_float("hkd.lease.interval")
    spares = {desktops + 1: 1, desktops + 2: 2}  # the commands issued once it is back
    with private_cluster() as (root, params, cluster):
        nodes = _nodes(root, database_conf(params), l7r_params=params)
        try:
            with psycopg.connect(**params, autocommit=True) as db:
                seed(db, root, desktops + len(spares))
                pids = _run_vms(db, nodes, desktops)
            ports = [node.settings["l7r.port"] for node in nodes]
            for port in ports:
                wait(lambda port=port: accepting("127.0.0.1", port), 30)
            # each desktop through the other node's L7R than the one its VM runs on
            clients = {vm: _desktop(ports[vm % 2], vm) for vm in pids}
            cluster.stop()
            time.sleep(OUTAGE_S)  # the outage itself: what is measured is what it leaves
            cluster.start()
            back = time.monotonic()
            with psycopg.connect(**params, autocommit=True) as db:
                bare_s = time.monotonic() - back
                served_s = _served_after(db, spares, back)
                cut = [vm for vm, conn in clients.items() if not _streams(conn)]
                lost = sorted(set(_lost(pids, db)) | set(cut))
                nodes_lost = sum(host_state(db, h) == "lost" for h in (1, 2))
            for conn in clients.values():
                conn.close()
        finally:
            for node in nodes:
                node.cleanup()
        fenced = sum("fencing" in node.log() for node in nodes)
    return {"desktops": desktops, "outage_s": OUTAGE_S, "lost": len(lost), "nodes_lost":
            nodes_lost, "fenced": fenced, "served_s": served_s, "bare_query_s": bare_s,
            "hkd.lease.interval": lease}


def promotion(vms: int = 2) -> dict:
    lease = Config().get_float("hkd.lease.interval")
    spares = {vms + 1: 1, vms + 2: 2}
    with private_cluster() as (root, params, primary):
        standby = make_standby(primary, os.path.join(root, "standby"))
        both = dict(params, host="127.0.0.1,127.0.0.1", port=f"{primary.port},{standby.port}",
                    target_session_attrs="read-write")
        database = dict(database_conf(params), **{
            "database.host": f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"})
        del database["database.port"]
        nodes = _nodes(root, database)
        try:
            with psycopg.connect(**both, autocommit=True) as db:
                seed(db, root, vms + len(spares))
                pids = _run_vms(db, nodes, vms)
            wait(lambda: replayed(primary, standby, params["dbname"]), 30)
            began = time.monotonic()
            fail_over(primary, standby)
            promoted = time.monotonic()
            with psycopg.connect(**both, autocommit=True) as db:
                served_s = _served_after(db, spares, promoted)
                lost = _lost(pids, db)
        finally:
            for node in nodes:
                node.cleanup()
            standby.stop()
    return {"vms": vms, "failover_s": promoted - began, "served_s": served_s,
            "lost": len(lost), "hkd.lease.interval": lease}
