"""Shared by the benchmarks: a private PostgreSQL, a migrated database, percentiles."""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from contextlib import contextmanager

import psycopg
from sqlalchemy.pool import NullPool

from qvd.db import migrate
from qvd.db.embedded import Cluster
from qvd.db.engine import make_engine


@contextmanager
def private_database(name: str = "bench"):
    """(root dir, libpq params) of a throwaway cluster with a migrated database."""
    root = tempfile.mkdtemp(prefix="qvd-bench-")
    os.chmod(root, 0o755)
    cluster = Cluster(os.path.join(root, "pg"))
    cluster.create({"fsync": "off", "synchronous_commit": "off"})
    cluster.start()
    try:
        params = cluster.connection_params()
        with psycopg.connect(**dict(params, dbname="postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        params = dict(params, dbname=name)
        engine = make_engine(params, poolclass=NullPool)
        migrate.upgrade(engine)
        engine.dispose()
        yield root, params
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict:
    return {"n": len(samples), "p50": percentile(samples, 50), "p99": percentile(samples, 99),
            "mean": statistics.fmean(samples)}
