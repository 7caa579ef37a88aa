"""The HKD's database access: autocommit psycopg connections that reconnect on demand.

Every statement the HKD sends is one conditional UPDATE or one SELECT, so autocommit is
enough; the cluster monitor's release of a lost node is one statement too (CTEs).
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row

from . import metrics

log = logging.getLogger(__name__)


class DbUnavailable(Exception):
    """The database cannot be reached right now; the caller retries later."""


class Database:
    def __init__(self, params: dict, name: str = "qvd-hkd", kind: str = "main"):
        self.params = dict(params, application_name=name[:60])
        self._conn: psycopg.AsyncConnection | None = None
        self.queries = 0  # statements sent, for benchmarks and diagnostics
        self.connects = 0  # connections opened; a session's advisory locks die with each
        # the metrics' label: "main" or "monitor", a fixed set (never the node's name)
        self._seconds = metrics.DB_QUERY_SECONDS.labels(kind)
        self._reconnects = metrics.DB_RECONNECTS.labels(kind)
        self._errors = metrics.DB_ERRORS.labels(kind)

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    **self.params, autocommit=True, row_factory=dict_row)
            except psycopg.OperationalError as exc:
                self._errors.inc()
                raise DbUnavailable(str(exc).strip().splitlines()[0]) from None
            if self.connects:
                self._reconnects.inc()
            self.connects += 1
        return self._conn

    async def fetch(self, sql: str, params: dict | None = None) -> list[dict]:
        conn = await self._connection()
        self.queries += 1
        started = time.perf_counter()
        try:
            cursor = await conn.execute(sql, params or {})
            rows = await cursor.fetchall() if cursor.description else []
            self._seconds.observe(time.perf_counter() - started)
            return rows
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._errors.inc()
            await self.close()
            raise DbUnavailable(str(exc).strip().splitlines()[0] if str(exc) else "lost") from None

    async def fetchone(self, sql: str, params: dict | None = None) -> dict | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    @asynccontextmanager
    async def transaction(self):
        """Several statements that land together (the cluster monitor's release of a node)."""
        conn = await self._connection()
        try:
            async with conn.transaction():
                yield self
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            await self.close()
            raise DbUnavailable(str(exc).strip().splitlines()[0] if str(exc) else "lost") from None

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                pass
            self._conn = None
