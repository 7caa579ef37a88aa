"""Connections: the configured PostgreSQL server, or the embedded cluster when none is set."""
from __future__ import annotations

import os
import sys

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from .config import Config
from .embedded import Cluster


def embedded_cluster(cfg: Config) -> Cluster:
    return Cluster(os.path.join(cfg.home, "pg"))


def uses_embedded(cfg: Config) -> bool:
    return not cfg.get("database.host")


def connection_params(cfg: Config) -> dict:
    """libpq keyword parameters (host may be a Unix socket directory)."""
    if uses_embedded(cfg):
        params = embedded_cluster(cfg).connection_params()
    else:
        params = {"host": cfg.get("database.host"), "port": cfg.get_int("database.port"),
                  "user": cfg.get("database.user"), "password": cfg.get("database.password"),
                  "dbname": cfg.get("database.name")}
    params["connect_timeout"] = cfg.get_int("database.connect_timeout")
    params["application_name"] = os.path.basename(sys.argv[0])[:60] or "qvd"
    return params


def describe(params: dict) -> str:
    """user@host:port/dbname, for messages (never the password)."""
    return f"{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"


def make_engine(params: dict, **kwargs) -> Engine:
    return create_engine("postgresql+psycopg://", connect_args=params, **kwargs)
