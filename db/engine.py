"""Connections: the configured PostgreSQL server, or the embedded cluster when none is set."""
from __future__ import annotations

import os
import sys

from typing import TYPE_CHECKING

from .config import Config, ConfigError
from .embedded import Cluster

if TYPE_CHECKING:  # SQLAlchemy only where an engine is made: the L7R never imports it
    from sqlalchemy.engine import Engine

L7R_ROLE = "qvd_l7r"  # created by migration 0006


def embedded_cluster(cfg: Config) -> Cluster:
    return Cluster(os.path.join(cfg.home, "pg"))


def uses_embedded(cfg: Config) -> bool:
    return not cfg.get("database.host")


def hosts_and_ports(hosts: str, default_port: int) -> tuple[str, str]:
    """database.host "db1,db2:5433" -> libpq's multi-host form ("db1,db2", "5432,5433")."""
    names, ports = [], []
    for entry in (part.strip() for part in hosts.split(",")):
        if not entry:
            raise ConfigError(f"database.host {hosts!r}: an empty host between commas")
        name, colon, port = entry.rpartition(":")
        if not colon or entry.startswith("/") or "]" in port:  # no port, a socket dir, IPv6
            name, port = entry, str(default_port)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"database.host {hosts!r}: {port!r} is not a port")
        names.append(name.strip("[]"))
        ports.append(port)
    return ",".join(names), ",".join(ports)


def connection_params(cfg: Config) -> dict:
    """libpq keyword parameters (host may be a Unix socket directory, or several hosts: the
    one that accepts writes is used). A database that stops answering is noticed within
    database.tcp_timeout (keepalives, tcp_user_timeout), a statement that hangs within
    database.statement_timeout."""
    if uses_embedded(cfg):
        params = embedded_cluster(cfg).connection_params()
    else:
        host, port = hosts_and_ports(cfg.get("database.host"), cfg.get_int("database.port"))
        params = {"host": host, "port": port, "user": cfg.get("database.user"),
                  "password": cfg.get("database.password"), "dbname": cfg.get("database.name")}
        if "," in host:
            params["target_session_attrs"] = "read-write"
    dead_after = cfg.get_int("database.tcp_timeout")
    params.update(connect_timeout=cfg.get_int("database.connect_timeout"),
                  keepalives=1, keepalives_idle=max(1, dead_after // 3),
                  keepalives_interval=max(1, dead_after // 6), keepalives_count=3,
                  tcp_user_timeout=dead_after * 1000,
                  options=f"-c statement_timeout={cfg.get_int('database.statement_timeout')}s")
    params["application_name"] = os.path.basename(sys.argv[0])[:60] or "qvd"
    return params


def l7r_connection_params(cfg: Config) -> dict:
    """What an L7R connection process logs in with: the L7R's own role (not a superuser)."""
    params = connection_params(cfg)
    if uses_embedded(cfg):
        params.update(user=L7R_ROLE, password=embedded_cluster(cfg).l7r_password)
    elif cfg.get("database.l7r.user"):
        params.update(user=cfg.get("database.l7r.user"),
                      password=cfg.get("database.l7r.password"))
    return params


def enable_l7r_role(engine: Engine, password: str) -> None:
    """The L7R role may log in with this password. A random secret (the embedded cluster's,
    or any of 24+ characters) is stored as a quick verifier (scram.py: each L7R connection is
    a login); a shorter one is left to the server's own hashing."""
    from sqlalchemy import text

    from .scram import MIN_SECRET_LENGTH, verifier
    stored = verifier(password) if len(password) >= MIN_SECRET_LENGTH else password
    # ALTER ROLE takes no parameters: a literal, in which text() must not see ":name" binds
    literal = "'" + stored.replace("'", "''").replace(":", "\\:") + "'"
    with engine.begin() as conn:
        conn.execute(text(f"ALTER ROLE {L7R_ROLE} LOGIN PASSWORD {literal}"))


def configured_l7r_password(cfg: Config) -> str | None:
    """The password to give the L7R role at db init/upgrade: the embedded cluster's own, or
    database.l7r.password when database.l7r.user is that role."""
    if uses_embedded(cfg):
        return embedded_cluster(cfg).ensure_l7r_password()
    if cfg.get("database.l7r.user") == L7R_ROLE and cfg.get("database.l7r.password"):
        return cfg.get("database.l7r.password")
    return None


def describe(params: dict) -> str:
    """user@host:port/dbname (each host of several), for messages (never the password)."""
    hosts, ports = str(params["host"]).split(","), str(params["port"]).split(",")
    where = ",".join(f"{h}:{p}" for h, p in zip(hosts, ports * len(hosts)))
    return f"{params['user']}@{where}/{params['dbname']}"


def make_engine(params: dict, **kwargs) -> Engine:
    from sqlalchemy import create_engine
    return create_engine("postgresql+psycopg://", connect_args=params, **kwargs)
