"""The runtime statements: the compare-and-set writes on vm_runtimes that every part of the
system makes (qvd-admin and qvd-api through db/ops, the L7R, qvd-hkd), written once here as
SQL with %(name)s parameters, so that psycopg connections and SQLAlchemy sessions run the same
text. Functions take `db`, anything with fetch/fetchone/execute(sql, params) like the L7R's
connection; OnSession gives an SQLAlchemy session that shape."""
from __future__ import annotations


class OnSession:
    """fetch/fetchone/execute on an SQLAlchemy session's connection, in its transaction."""

    def __init__(self, session) -> None:
        self.session = session

    def fetch(self, sql: str, params: dict | None = None) -> list[dict]:
        result = self.session.connection().exec_driver_sql(sql, params or {})
        return [dict(row) for row in result.mappings()] if result.returns_rows else []

    def fetchone(self, sql: str, params: dict | None = None) -> dict | None:
        rows = self.fetch(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: dict | None = None) -> None:
        self.session.connection().exec_driver_sql(sql, params or {})
