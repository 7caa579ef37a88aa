"""A node rides a real streaming-replica promotion (issue 13): a primary and its standby
(pg_basebackup, streaming), the node configured with both (`database.host = A,B`); the test
plays the failover manager: it stops the primary and promotes the standby. The node
reconnects to the new primary, keeps its VM (same process), renews its lease there, and
serves the commands issued after the promotion."""
import os
import shutil
import tempfile

import psycopg
import pytest
from sqlalchemy.pool import NullPool

from conftest import L7R_PASSWORD, PgServer, QvdEnv
from hkd_nodes import HkdNode, vma_processes, wait_for
from qvd.db import migrate
from qvd.db.embedded import Cluster
from qvd.db.engine import L7R_ROLE, make_engine
from qvd.db.standby import fail_over, make_standby, replayed

DEFAULTS = "hkd.lease.fence_timeout = 70\nhkd.cluster.node_timeout = 90\n"  # over FAST's
FAST_PG = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
DBNAME = "qvd_ha"


@pytest.fixture
def pair(tmp_path):
    """(env over both servers, primary, standby): the demo's objects on the primary."""
    top = tempfile.mkdtemp(prefix="qvd-pair-")
    os.chmod(top, 0o755)
    primary = Cluster(os.path.join(top, "primary"))
    primary.create(FAST_PG)
    primary.start()
    clusters = [primary]
    try:
        with psycopg.connect(**dict(primary.connection_params(), dbname="postgres"),
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DBNAME}")
        engine = make_engine(dict(primary.connection_params(), dbname=DBNAME), poolclass=NullPool)
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER ROLE {L7R_ROLE} LOGIN PASSWORD '{L7R_PASSWORD}'")
        engine.dispose()
        standby = make_standby(primary, os.path.join(top, "standby"))
        clusters.append(standby)
        env = QvdEnv(PgServer(primary, primary.connection_params()), DBNAME, str(tmp_path))
        # every part of the system, the test's own queries too, over both servers
        env.engine.dispose()
        env.params = {"host": "127.0.0.1,127.0.0.1", "port": f"{primary.port},{standby.port}",
                      "user": "qvd", "password": primary.password, "dbname": DBNAME,
                      "target_session_attrs": "read-write"}
        env.engine = make_engine(env.params, poolclass=NullPool)
        env.database_conf = lambda: (
            f"database.host = 127.0.0.1:{primary.port},127.0.0.1:{standby.port}\n"
            f"database.user = qvd\ndatabase.password = {primary.password}\n"
            f"database.name = {DBNAME}\ndatabase.l7r.user = {L7R_ROLE}\n"
            f"database.l7r.password = {L7R_PASSWORD}\n")
        env.write_conf()
        image = tmp_path / "image.tar"
        image.write_bytes(b"image v1")
        for args in (("tenant", "add", "name=acme"),
                     ("user", "add", "-t", "acme", "login=alice", "password=secret"),
                     ("osf", "add", "-t", "acme", "name=desktop", "memory=512"),
                     ("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=v1"),
                     ("vm", "add", "-t", "acme", "name=desk", "user=alice", "osf=desktop"),
                     ("host", "add", "name=node1", "address=127.0.0.2")):
            env.ok(*args)
        yield env, primary, standby
        env.engine.dispose()
    finally:
        for cluster in clusters:
            cluster.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_a_node_rides_a_standby_promotion_and_serves_commands_after_it(pair):
    env, primary, standby = pair
    node = HkdNode(env, "node1", DEFAULTS)
    try:
        node.start()
        env.ok("vm", "start", "-f", "name=desk")
        wait_for(lambda: env.sql("SELECT vm_state FROM vm_runtimes") == [("running",)], 20,
                 "running")
        (pid,), = env.sql("SELECT vm_pid FROM vm_runtimes")
        wait_for(lambda: replayed(primary, standby, DBNAME), 20, "the standby to catch up")
        fail_over(primary, standby)
        (promoted,), = env.sql("SELECT now()")  # on the new primary
        wait_for(lambda: env.sql("SELECT r.state, r.epoch, r.ok_ts > :t FROM host_runtimes r",
                                 t=promoted)[0] == ("running", 0, True),
                 30, "the node's lease renewed on the new primary")
        assert env.sql("SELECT vm_state, vm_pid FROM vm_runtimes") == [("running", pid)]
        assert vma_processes(env, 1) == [pid]
        env.ok("vm", "stop", "-f", "name=desk")  # commands after the promotion are served
        wait_for(lambda: env.sql("SELECT vm_state FROM vm_runtimes") == [("stopped",)], 30,
                 "stopped on the new primary")
        env.ok("vm", "start", "-f", "name=desk")
        wait_for(lambda: env.sql("SELECT vm_state FROM vm_runtimes") == [("running",)], 30,
                 "started again")
        assert "fencing" not in node.log()
    finally:
        node.cleanup()
