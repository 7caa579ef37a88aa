"""The database as one L7R child sees it: its own connection, opened when a parsed request
first needs it (never for a socket that sends nothing) and released while the child idles
between requests or carries a desktop stream, so connected desktops hold no connection; and
at most l7r.database.max_connections of a node's processes hold one at once."""
from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from qvd.db.config import Config

from .slots import Slots, SlotsBusy


class DatabaseBusy(psycopg.OperationalError):
    """Every database slot of the node stayed taken: to the caller, the database is away for
    a moment (503 to the client; a session's end is journaled and retried)."""


class L7rDb:
    def __init__(self, params: dict, name: str = "qvd-l7r", slots: Slots | None = None,
                 wait: float = 0.0):
        self.params = dict(params, application_name=name)
        self.slots, self.wait = slots, wait  # node-wide cap on the L7R's connections
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            if self.slots is not None:
                try:
                    self.slots.acquire(self.wait)
                except SlotsBusy:
                    raise DatabaseBusy("the node's L7R database connections are all in use "
                                       "(l7r.database.max_connections)") from None
            try:
                self._conn = psycopg.connect(**self.params, autocommit=True,
                                             row_factory=dict_row)
            except BaseException:
                self.release()
                raise
        return self._conn

    def rename(self, name: str) -> None:
        """The application_name of this connection and the next ones (a connection the
        server dropped meanwhile is let go: the next statement opens another)."""
        if self.params["application_name"] == name:
            return
        self.params["application_name"] = name
        if self.holding:
            try:
                self._conn.execute("SELECT set_config('application_name', %(n)s, false)",
                                   {"n": name})
            except psycopg.OperationalError:
                self.release()

    def fetch(self, sql: str, params: dict | None = None) -> list[dict]:
        cursor = self.conn.execute(sql, params or {})
        return cursor.fetchall() if cursor.description else []

    def fetchone(self, sql: str, params: dict | None = None) -> dict | None:
        rows = self.fetch(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: dict | None = None) -> None:
        self.conn.execute(sql, params or {})

    def execute_unless_busy(self, sql: str, params: dict | None = None) -> None:
        """execute, but with no wait for a database slot (DatabaseBusy at once): a ready
        child's warm-up, which is worth nothing if it has to queue for one."""
        wait, self.wait = self.wait, 0.0
        try:
            self.execute(sql, params)
        finally:
            self.wait = wait

    def settings(self, node: dict) -> Config:
        """Node file < database global, as everywhere (the tenant's layer: with_tenant)."""
        rows = self.fetch("SELECT key, value FROM configs WHERE tenant_id = -1")
        return Config(node=node, db_global={row["key"]: row["value"] for row in rows})

    def with_tenant(self, cfg: Config, tenant_id: int) -> Config:
        """cfg with the tenant's layer on top, once the user (and so the tenant) is known."""
        return self._tenant_layer(cfg, "c.tenant_id = %(t)s", tenant_id)

    def with_tenant_named(self, cfg: Config, name: str) -> Config:
        """The same for the tenant a password login names (none, for unknown tenants)."""
        return self._tenant_layer(cfg, "t.name = %(t)s", name)

    def _tenant_layer(self, cfg: Config, where: str, tenant) -> Config:
        rows = self.fetch("SELECT c.key, c.value FROM configs c JOIN tenants t "
                          f"ON t.id = c.tenant_id WHERE t.id >= 1 AND {where}", {"t": tenant})
        return Config(node=cfg.node, db_global=cfg.db_global,
                      db_tenant={row["key"]: row["value"] for row in rows})

    @property
    def holding(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def release(self) -> None:
        """Give the connection back to the server; the next statement opens a new one."""
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            self._conn = None
            if self.slots is not None:
                self.slots.release()
