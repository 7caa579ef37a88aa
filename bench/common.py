"""Shared by the benchmarks: a private PostgreSQL, a migrated database, percentiles, and the
rows every benchmark reports (a figure, its floor or peer measured in the same run)."""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from sqlalchemy.pool import NullPool

from qvd.db import migrate
from qvd.db.embedded import Cluster
from qvd.db.engine import L7R_ROLE, make_engine

SPEED = {"fsync": "off", "synchronous_commit": "off"}


@contextmanager
def private_cluster(name: str = "bench", settings: dict | None = None):
    """(root dir, libpq params, the Cluster) of a throwaway cluster with a migrated database
    (the Cluster, for benchmarks that stop, restart or replicate it)."""
    root = tempfile.mkdtemp(prefix="qvd-bench-")
    os.chmod(root, 0o755)
    cluster = Cluster(os.path.join(root, "pg"))
    cluster.create({**SPEED, **(settings or {})})
    cluster.start()
    try:
        params = cluster.connection_params()
        with psycopg.connect(**dict(params, dbname="postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        params = dict(params, dbname=name)
        engine = make_engine(params, poolclass=NullPool)
        migrate.upgrade(engine)
        engine.dispose()
        yield root, params, cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def private_database(name: str = "bench", settings: dict | None = None):
    """(root dir, libpq params) of a throwaway cluster with a migrated database."""
    with private_cluster(name, settings) as (root, params, _):
        yield root, params


def database_conf(params: dict, l7r_password: str) -> str:
    """The node-file lines for this database (libpq params), the L7R logging in as its role."""
    return (f"database.host = {params['host']}\ndatabase.port = {params['port']}\n"
            f"database.user = {params['user']}\ndatabase.password = {params['password']}\n"
            f"database.name = {params['dbname']}\ndatabase.l7r.user = {L7R_ROLE}\n"
            f"database.l7r.password = {l7r_password}\n")


def write_certificate(directory: str) -> None:
    """A self-signed cert.pem and key.pem in directory, for the benchmarks' TLS servers."""
    from qvd.l7r.tls import self_signed
    cert, key = self_signed("bench")
    for name, text in (("cert.pem", cert), ("key.pem", key)):
        with open(os.path.join(directory, name), "w", encoding="ascii") as handle:
            handle.write(text)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict:
    """p50, p99 and mean; the samples themselves are kept for the plots."""
    return {"n": len(samples), "p50": percentile(samples, 50), "p99": percentile(samples, 99),
            "mean": statistics.fmean(samples), "samples": list(samples)}


@dataclass
class Row:
    """One line of a results table. `key` names the figure across repeated runs; `value` and
    `floor` are in `unit`; a row whose value is None was not measured (`note` says why)."""
    key: str
    figure: str
    value: float | None
    unit: str
    floor: float | None = None
    floor_label: str = "-"
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.floor:
            return None
        return self.value / self.floor


COUNTS = {"VMs", "desktops"}  # units of whole things: no decimals


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    digits = 0 if abs(value) >= 100 or unit in COUNTS else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f} {unit}"


def table(rows: list[Row], project: str = "qvd") -> str:
    """The Markdown table a benchmark's own main() prints (one run, no medians)."""
    lines = [f"| figure | {project} | floor or peer (same run) | ratio |", "|---|---|---|---|"]
    for row in rows:
        if row.value is None:
            lines.append(f"| {row.figure} | not measured: {row.note} | - | - |")
            continue
        floor = f"{fmt(row.floor, row.unit)} ({row.floor_label})" if row.floor is not None \
            else row.floor_label
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        lines.append(f"| {row.figure} | {fmt(row.value, row.unit)} | {floor} | {ratio} |")
    return "\n".join(lines)


def timed(work, count: int) -> list[float]:
    """Seconds each of `count` calls of work() took, one after the other."""
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        work()
        samples.append(time.perf_counter() - began)
    return samples


def concurrent_rate(work, workers: int, seconds: float) -> float:
    """Calls per second of work(index) from `workers` threads calling it for `seconds`."""
    done, stop = [0] * workers, time.monotonic() + seconds

    def worker(index):
        while time.monotonic() < stop:
            work(index)
            done[index] += 1
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - began)


def ms(samples: list[float]) -> list[float]:
    return [s * 1000 for s in samples]
