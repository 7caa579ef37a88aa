"""What every qvd-admin command shares: configuration, a transaction, the audit log."""
from __future__ import annotations

import getpass
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from qvd.db import config as qconfig
from qvd.db.engine import connection_params, make_engine
from qvd.db.models import DEFAULT_TENANT, GLOBAL_TENANT, AdminLogEntry, ConfigEntry, Tenant

from .errors import UserError


@dataclass
class Call:
    """One parsed command line: filters (-f), tenant (-t), key=value arguments, output style."""
    filters: dict[str, str] = field(default_factory=dict)
    tenant: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    fmt: str = "table"
    quiet: bool = False


class Admin:
    def __init__(self) -> None:
        self._cfg = None
        self._engine = None

    @property
    def cfg(self) -> qconfig.Config:
        """Loaded on first use, so that `system start` can write the node file first."""
        if self._cfg is None:
            self._cfg = qconfig.load()
        return self._cfg

    @property
    def engine(self):
        if self._engine is None:
            self._engine = make_engine(connection_params(self.cfg), poolclass=NullPool)
        return self._engine

    @contextmanager
    def session(self):
        """One transaction: everything a command changes lands together or not at all."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def audit(self, session: Session, obj: str, action: str, call: Call, ids, tenant_id=None):
        """Record the change in admin_log, in the same transaction as the change itself."""
        who = os.environ.get("QVD_ADMIN") or os.environ.get("SUDO_USER") or getpass.getuser()
        arguments = {"filters": call.filters, "args": _redacted(call.args)}
        if call.tenant:
            arguments["tenant"] = call.tenant
        session.add(AdminLogEntry(who=who, object=obj, action=action, arguments=arguments,
                                  object_ids=sorted(ids), tenant_id=tenant_id))

    def tenant_id(self, session: Session, name: str | None, default=DEFAULT_TENANT) -> int:
        if name is None:
            return default
        found = session.scalar(select(Tenant.id).where(Tenant.name == name, Tenant.id >= 1))
        if found is None:
            raise UserError(f"unknown tenant '{name}'")
        return found

    def settings(self, session: Session, tenant_id: int | None = None) -> qconfig.Config:
        """The effective configuration, with the database's global and tenant layers."""
        def layer(tid):
            rows = session.execute(select(ConfigEntry.key, ConfigEntry.value)
                                   .where(ConfigEntry.tenant_id == tid))
            return dict(rows.tuples().all())
        return qconfig.Config(node=self.cfg.node, db_global=layer(GLOBAL_TENANT),
                              db_tenant=layer(tenant_id) if tenant_id is not None else {})


def _redacted(args: dict) -> dict:
    return {key: ("***" if "password" in key else value) for key, value in args.items()}
