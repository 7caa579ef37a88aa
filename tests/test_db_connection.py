"""How every part connects to PostgreSQL (db/engine.connection_params): several hosts, of which
the writable one is used, and a connection that notices a silent database in seconds."""
import psycopg
import pytest

from qvd.db.config import Config, ConfigError
from qvd.db.engine import connection_params, describe
from qvd.hkd.backends.process import free_port


def _cfg(pg_server, hosts: str) -> Config:
    p = pg_server.params
    return Config(node={"database.host": hosts, "database.user": p["user"],
                        "database.password": p["password"], "database.name": "postgres",
                        "database.tcp_timeout": "6", "database.statement_timeout": "45"})


def test_the_first_host_that_answers_and_accepts_writes_is_used(pg_server):
    dead = free_port()  # nothing listens there: a primary that is down
    cfg = _cfg(pg_server, f"127.0.0.1:{dead}, 127.0.0.1:{pg_server.cluster.port}")
    params = connection_params(cfg)
    assert params["target_session_attrs"] == "read-write"
    assert describe(params).endswith(f"@127.0.0.1:{dead},127.0.0.1:{pg_server.cluster.port}"
                                     "/postgres")
    with psycopg.connect(**params) as conn:
        assert conn.info.port == pg_server.cluster.port
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "45s"
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        used = conn.info.get_parameters()
        assert used["tcp_user_timeout"] == "6000" and used["keepalives"] == "1"


@pytest.mark.parametrize("hosts, words", [("db1,,db2", "an empty host"),
                                          ("db1:99999", "'99999' is not a port"),
                                          ("db1:x", "'x' is not a port")])
def test_a_bad_host_list_is_a_clear_error(pg_server, hosts, words):
    with pytest.raises(ConfigError, match=words):
        connection_params(_cfg(pg_server, hosts))


def test_socket_directories_and_default_ports(pg_server):
    params = connection_params(_cfg(pg_server, "/run/postgresql,db2"))
    assert (params["host"], params["port"]) == ("/run/postgresql,db2", "5432,5432")
