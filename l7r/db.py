"""The database as one L7R child sees it: its own connection, opened when a parsed request
first needs it (never for a socket that sends nothing) and released while the child idles
between requests or carries a desktop stream, so connected desktops hold no connection."""
from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from qvd.db.config import Config


class L7rDb:
    def __init__(self, params: dict, name: str = "qvd-l7r"):
        self.params = dict(params, application_name=name)
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(**self.params, autocommit=True, row_factory=dict_row)
        return self._conn

    def fetch(self, sql: str, params: dict | None = None) -> list[dict]:
        cursor = self.conn.execute(sql, params or {})
        return cursor.fetchall() if cursor.description else []

    def fetchone(self, sql: str, params: dict | None = None) -> dict | None:
        rows = self.fetch(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: dict | None = None) -> None:
        self.conn.execute(sql, params or {})

    def settings(self, node: dict, tenant_id: int | None = None) -> Config:
        """Node file < database global < tenant, as everywhere."""
        rows = self.fetch("SELECT tenant_id, key, value FROM configs WHERE tenant_id = -1 "
                          "OR tenant_id = %(t)s", {"t": tenant_id if tenant_id is not None else -1})
        layers = {-1: {}, tenant_id: {}}
        for row in rows:
            layers.setdefault(row["tenant_id"], {})[row["key"]] = row["value"]
        return Config(node=node, db_global=layers[-1],
                      db_tenant=layers.get(tenant_id, {}) if tenant_id not in (None, -1) else {})

    @property
    def holding(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def release(self) -> None:
        """Give the connection back to the server; the next statement opens a new one."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
