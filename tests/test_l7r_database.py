"""The L7R holds no database connection while nothing needs one (issue 19, part 2): not for
a socket that has sent no request, not while a client idles between requests, not while a
desktop streams. A desktop keeps streaming while PostgreSQL restarts, and the session's end
reaches its row afterwards, from the L7R child itself or, when the database was still away
as the child ended, from the node's qvd-hkd through the child's local journal."""
import os
import signal

import pytest

from conftest import L7R_PASSWORD
from qvd.db.config import Config
from qvd.hkd.pidfile import PidFile
from qvd.l7r import prefork
from hkd_nodes import wait_for
from test_l7r import connect, open_desktop
from test_l7r_edge import (acceptor_children, client, l7r_connections, make_node,  # noqa: F401
                           settled)

# The database may be away for a while here: the node must not fence meanwhile.
PATIENT = "hkd.lease.fence_timeout = 60\nhkd.cluster.node_timeout = 90\n"


def server_connections(demo) -> int:
    (count,), = demo.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                         "'client backend'")
    return count


def journal_entries(node) -> list[str]:
    directory = os.path.join(node.home, "l7r-journal")
    return sorted(n for n in os.listdir(directory) if n.endswith(".json")) \
        if os.path.isdir(directory) else []


def test_600_idle_sockets_hold_no_database_connection_and_others_keep_connecting(make_node,
                                                                                  demo):
    node = make_node("l7r.max_connections = 1000\nl7r.max_connections.per_address = 1000\n"
                     "l7r.timeout.head = 300\n")
    settled(node)
    wait_for(lambda: demo.sql("SELECT 1 FROM pg_stat_activity WHERE application_name = "
                              "'qvd-hkd node1 monitor'"), 15, "the node's monitor connection")
    ready = Config().get_int("l7r.prefork")
    wait_for(lambda: demo.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                              "= :r", r=prefork.READY_TITLE) == [(ready,)], 15,
             "the ready children's warm connections")
    # the node's own: main, listener, monitor, its L7R's ready children (and ours)
    before = server_connections(demo)
    idle = []
    try:
        for _ in range(600):  # TLS done, no request: each of these once held a connection
            idle.append(client(node))
        wait_for(lambda: len(acceptor_children(node)) >= 600, 60, "600 served connections")
        # (the last ones' ready children give their warm connection back once they idle)
        wait_for(lambda: l7r_connections(demo) == 0, 10, "no connection for idle sockets")
        assert server_connections(demo) <= before  # more than the server's max_connections
        with connect((node.port, node.cert), "alice@acme", "secret") as other:
            assert [vm["name"] for vm in other.list_of_vm().json()] == ["desk"]
        # a client that asked once and now idles gives its connection back
        keeper = client(node, login="alice@acme", password="secret")
        idle.append(keeper)
        assert keeper.request("/qvd/list_of_vm").status == 200
        wait_for(lambda: l7r_connections(demo) == 0, 10, "the idle client's connection to go")
        assert keeper.request("/qvd/list_of_vm").status == 200  # and may ask again
    finally:
        for conn in idle:
            conn.close()


def _exchange(conn) -> bytes:
    """Bytes the client sends; returns what the desktop answered (Xvnc: its security types)."""
    conn.send_raw(b"RFB 003.008\n")
    return conn.sock.recv(64)


def _session(demo):
    (row,) = demo.sql("SELECT bytes_from_client, bytes_to_client, end_reason, ended_at "
                      "IS NOT NULL AS ended FROM sessions")
    return row


@pytest.fixture
def node(make_node):
    return make_node(PATIENT)


def test_a_desktop_streams_through_a_postgres_restart_and_its_end_is_recorded(node, demo,
                                                                               pg_server):
    conn, reply, banner = open_desktop((node.port, node.cert))
    with conn:
        assert reply.status == 101
        assert l7r_connections(demo) == 0  # streaming holds none
        pg_server.cluster.stop()
        try:
            answer = _exchange(conn)  # the desktop answers with no database at all
            assert answer[:1] >= b"\x01"
        finally:
            pg_server.cluster.start()
    wait_for(lambda: _session(demo).ended, 20, "the session's end to be written")
    up, down, reason, _ = _session(demo)
    assert (up, down, reason) == (12, len(banner) + len(answer), "client closed")
    assert demo.sql("SELECT user_state, l7r_pid FROM vm_runtimes") == [("disconnected", None)]
    assert journal_entries(node) == []


def test_an_end_while_postgres_is_away_is_journaled_and_written_by_the_node(node, demo,
                                                                             pg_server):
    conn, reply, banner = open_desktop((node.port, node.cert))
    assert reply.status == 101
    pg_server.cluster.stop()
    try:
        with conn:
            answer = _exchange(conn)
        # the child tries, journals, and ends; the entry waits for the database
        wait_for(lambda: journal_entries(node) and not acceptor_children(node), 30,
                 "the child to journal the end and leave")
    finally:
        pg_server.cluster.start()
    wait_for(lambda: _session(demo).ended, 30, "the node to write the journaled end")
    up, down, reason, _ = _session(demo)
    assert (up, down, reason) == (12, len(banner) + len(answer), "client closed")
    assert demo.sql("SELECT user_state, l7r_pid FROM vm_runtimes") == [("disconnected", None)]
    assert demo.sql("SELECT connections FROM vm_counters") == [(1,)]
    assert journal_entries(node) == []
    assert "its journaled end written" in node.log()
    # and the desktop opens again
    conn, reply, _ = open_desktop((node.port, node.cert))
    with conn:
        assert reply.status == 101


def test_the_l7r_logs_in_as_its_own_role_which_cannot_reach_the_node(make_node, demo):
    """What an attacker who took over an L7R child could do with its database login."""
    import signal

    import psycopg
    node = make_node()
    demo.ok("vm", "start", "-f", "name=desk")
    wait_for(lambda: demo.sql("SELECT vm_state FROM vm_runtimes") == [("running",)], 15,
             "running")
    node.signal(signal.SIGSTOP)  # the node cannot stop it: the L7R waits, holding its connection
    try:
        with connect((node.port, node.cert), "alice@acme", "secret") as conn:
            conn.send_raw(b"GET /qvd/stop_vm?id=1 HTTP/1.1\r\nAuthorization: " +
                          conn.authorization.encode() + b"\r\n\r\n")
            wait_for(lambda: demo.sql("SELECT DISTINCT usename FROM pg_stat_activity WHERE "
                                      "datname = :db AND application_name LIKE 'qvd-l7r%%'",
                                      db=demo.dbname) == [("qvd_l7r",)] and
                     l7r_connections(demo) == 1, 15, "the L7R's connection")
            # and the child that serves it carries no ORM (its compiled parts would be mapped)
            for child in acceptor_children(node):
                with open(f"/proc/{child}/maps", encoding="utf-8") as maps:
                    assert "sqlalchemy" not in maps.read()
    finally:
        node.signal(signal.SIGCONT)
    role = dict(demo.params, user="qvd_l7r", password=L7R_PASSWORD)
    with psycopg.connect(**role, autocommit=True) as db:
        assert db.execute("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles "
                          "WHERE rolname = current_user").fetchone() == (False,)
        for attack in ("COPY (SELECT 1) TO PROGRAM 'id'",  # a shell on the database's machine
                       "SELECT * FROM ssl_configs",         # the node's TLS key
                       "SELECT * FROM administrators",
                       "UPDATE hosts SET address = '10.9.9.9'",
                       "DELETE FROM vms",
                       "CREATE TABLE planted (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(attack)


def _ready_children(node) -> set[int]:
    acceptor = PidFile(os.path.join(node.run_dir, "l7r-node1.pid")).running()
    with open(f"/proc/{acceptor}/task/{acceptor}/children", encoding="ascii") as handle:
        return {int(pid) for pid in handle.read().split() if prefork.is_ready(pid)}


def _warm_connections(demo) -> int:
    return demo.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = :r",
                    r=prefork.READY_TITLE)[0][0]


def test_ready_children_outlive_a_postgres_restart_and_end_with_their_acceptor(node, demo,
                                                                              pg_server):
    """The L7R's ready children (l7r.prefork) keep a warm database connection: one the
    server dropped is opened again, so the first clients after a restart are served; and
    they never outlive the acceptor that forked them (nothing is left behind)."""
    ready = Config().get_int("l7r.prefork")
    wait_for(lambda: _warm_connections(demo) == ready, 15, "the warm connections")
    pg_server.cluster.stop()
    pg_server.cluster.start()
    wait_for(lambda: _warm_connections(demo) == ready, 15, "warm connections again")
    for _ in range(ready + 1):  # the ready ones, then a child forked for its client
        with connect((node.port, node.cert), "alice@acme", "secret") as conn:
            assert [vm["name"] for vm in conn.list_of_vm().json()] == ["desk"]
    # The acceptor forks the ones it handed over again (a moment after a hand-over).
    wait_for(lambda: len(_ready_children(node)) == ready, 15, "the ready children again")
    waiting = _ready_children(node)
    acceptor = PidFile(os.path.join(node.run_dir, "l7r-node1.pid")).running()
    os.kill(acceptor, signal.SIGKILL)  # qvd-hkd starts another, with ready children of its own
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in waiting), 15,
             "the dead acceptor's ready children to end")
