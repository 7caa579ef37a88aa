"""What every qvd-admin command shares: configuration, the acting administrator and what it
may see, a transaction, the audit log."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from qvd.db import audit
from qvd.db import config as qconfig
from qvd.db.acl.actor import Actor
from qvd.db.acl.check import AccessDenied, require
from qvd.db.acl.operations import OPERATIONS
from qvd.db.engine import connection_params, make_engine
from qvd.db.models import DEFAULT_TENANT, GLOBAL_TENANT, SUPERTENANT, ConfigEntry, Tenant

from .acting import resolve_actor
from .errors import UserError


@dataclass
class Call:
    """One parsed command line: filters (-f), tenant (-t), key=value arguments, output style."""
    filters: dict[str, str] = field(default_factory=dict)
    tenant: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    fmt: str = "table"
    quiet: bool = False
    only_tenant: str | None = None  # the acting administrator's tenant, unless it sees all


class Admin:
    def __init__(self, login: str | None = None) -> None:
        self._cfg = None
        self._engine = None
        self.login = login          # --admin NAME@TENANT, or None: the local superadmin
        self._actor: Actor | None = None
        self._operation = None      # (operation, arguments) once authorized

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

    @property
    def actor(self) -> Actor:
        """Resolved on first use (a login needs the database; the local superadmin does not)."""
        if self._actor is None:
            self._actor = resolve_actor(self, self.login)
        return self._actor

    def authorize(self, operation: str, arguments: dict) -> None:
        """Before a command acts: refused (and recorded) unless the actor holds its ACLs."""
        try:
            require(self.actor, operation, arguments.get("args", {}).keys())
        except AccessDenied as exc:
            self._record_attempt(operation, arguments, "refused", str(exc))
            raise UserError(str(exc)) from None
        self._operation = (operation, arguments)

    def record_failure(self, message: str) -> None:
        """A change that was allowed but failed leaves an entry too (its own transaction)."""
        need = OPERATIONS.get(self._operation[0]) if self._operation else None
        if need is None or need.reads_only:
            return
        try:
            self._record_attempt(*self._operation, "failed", message)
        except Exception:  # noqa: BLE001 - the database may be why it failed; say that only
            pass

    def _record_attempt(self, operation: str, arguments: dict, status: str, error: str) -> None:
        obj, _, action = operation.partition(" ")
        with self.session() as s:
            audit.record(s, self.actor, obj, action, arguments, tenant_id=self._own_tenant(),
                         status=status, error=error)

    def _own_tenant(self) -> int | None:
        return None if self.actor.is_super else self.actor.tenant_id

    def audit(self, session: Session, obj: str, action: str, call: Call, ids, tenant_id=None):
        """Record the change in admin_log, in the same transaction as the change itself."""
        arguments = {"filters": call.filters, "args": call.args}
        if call.tenant:
            arguments["tenant"] = call.tenant
        if tenant_id is None:
            tenant_id = (self.tenant_id(session, call.tenant, supertenant=True) if call.tenant
                         else self._own_tenant())
        audit.record(session, self.actor, obj, action, arguments, ids, tenant_id)

    def tenant_id(self, session: Session, name: str | None, default=DEFAULT_TENANT,
                  supertenant: bool = False) -> int:
        """The id of a tenant named on the command line. An administrator of one tenant knows
        no other: any other name is unknown to it, and no name means its own."""
        actor = self.actor
        if not actor.is_super:
            if name is None or name == actor.tenant_name:
                return actor.tenant_id
            raise UserError(f"unknown tenant '{name}'")
        if name is None:
            return default
        lowest = SUPERTENANT if supertenant else 1
        found = session.scalar(select(Tenant.id).where(Tenant.name == name, Tenant.id >= lowest))
        if found is None:
            raise UserError(f"unknown tenant '{name}'")
        return found

    def tenant_shown(self, name: str | None) -> str:
        """The tenant a command without -t acts on, for messages."""
        return name or (self.actor.tenant_name if not self.actor.is_super else "default")

    def config_scope(self, session: Session, name: str | None) -> int:
        """Where `config` verbs act: the named tenant, else globally (a tenant's
        administrator: always its own tenant)."""
        if name is None and self.actor.is_super:
            return GLOBAL_TENANT
        return self.tenant_id(session, name)

    def settings(self, session: Session, tenant_id: int | None = None) -> qconfig.Config:
        """The effective configuration, with the database's global and tenant layers."""
        def layer(tid):
            rows = session.execute(select(ConfigEntry.key, ConfigEntry.value)
                                   .where(ConfigEntry.tenant_id == tid))
            return dict(rows.tuples().all())
        return qconfig.Config(node=self.cfg.node, db_global=layer(GLOBAL_TENANT),
                              db_tenant=layer(tenant_id) if tenant_id is not None else {})
