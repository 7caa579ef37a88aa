"""What every operation gets: configuration, the acting administrator and what it may see, a
transaction, the audit log, and where its output goes (the CLI prints it, the API returns it)."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from qvd.db import audit
from qvd.db import config as qconfig
from qvd.db.acl.actor import Actor
from qvd.db.acl.check import AccessDenied, require, require_massive
from qvd.db.acl.operations import OPERATIONS
from qvd.db.engine import connection_params, make_engine
from qvd.db.models import DEFAULT_TENANT, GLOBAL_TENANT, SUPERTENANT, ConfigEntry, Tenant

from .errors import BadRequest, DomainError, NotFound
from .registry import REGISTRY


@dataclass
class Request:
    """One call of an operation: filters (-f), tenant (-t), key=value arguments, and for
    listings the order (field names, `-name` descending) and the page (offset, limit)."""
    filters: dict[str, str] = field(default_factory=dict)
    tenant: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    order_by: list[str] = field(default_factory=list)
    offset: int = 0
    limit: int | None = None
    # Objects chosen one by one (the WAT's check boxes): ids, narrowed further by filters.
    chosen: list[int | str] | None = None
    # Set by Context.prepare: the actor's tenant (unless it sees every one), and the check
    # that ObjectView.ids makes when a change selects more than one object.
    only_tenant: str | None = None
    many: Callable[[int], None] | None = field(default=None, repr=False)


Call = Request  # the name the operations use for their argument


class Upload:
    """A file a front end receives (a DI image): its name, and save(out) writing it whole,
    or raising UploadCut when the sender stopped short (it must not become an image)."""

    def __init__(self, name: str, save: Callable) -> None:
        self.name, self.save = name, save


class Context:
    """actor: given (the API's token), or resolved on first use by a subclass (the CLI's
    --admin login); engine: given (a pooled one), or made from cfg on first use."""

    def __init__(self, actor: Actor | None = None, cfg: qconfig.Config | None = None,
                 engine=None, source: str = "cli", client_address: str | None = None,
                 secret: str | None = None, local_files: bool = False) -> None:
        self._actor = actor
        self._cfg = cfg
        self._engine = engine
        self.source = source
        self.client_address = client_address
        self.secret = secret        # a new password the front end was given for the call
        self.local_files = local_files  # may name files on the node (qvd-admin on the node)
        self.upload: Upload | None = None  # a file the front end received for the call
        self._operation = None      # (operation, arguments) once authorized
        self.said: list[str] = []
        self.shown: tuple[list[str], list[dict], int] | None = None

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
        """One transaction: everything an operation changes lands together or not at all."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @property
    def actor(self) -> Actor:
        if self._actor is None:
            self._actor = self.resolve_actor()
        return self._actor

    def resolve_actor(self) -> Actor:
        raise DomainError("no administrator is acting")

    # Output: the CLI prints it, the API answers with it.
    def say(self, line: str) -> None:
        self.said.append(line)

    def show(self, fields: list[str], rows: list[dict], total: int | None = None) -> None:
        self.shown = (fields, rows, len(rows) if total is None else total)

    def read_new_password(self) -> str:
        if self.secret is None:
            raise BadRequest("give the new password")
        return self.secret

    def run(self, operation: str, request: Request) -> None:
        """Authorize, then run the operation; a refusal or failure of a change is recorded."""
        if operation not in REGISTRY:
            raise BadRequest(f"unknown operation '{operation}'")
        self.authorize(operation, {"filters": request.filters, "args": request.args,
                                   **({"tenant": request.tenant} if request.tenant else {}),
                                   **({"chosen": request.chosen} if request.chosen else {})})
        self.prepare(request)
        try:
            REGISTRY[operation].run(self, request)
        except DomainError as exc:
            self.record_failure(str(exc))
            raise

    def prepare(self, request: Request) -> Request:
        request.only_tenant = self.actor.visible_tenant
        request.many = self.require_massive
        return request

    def require_massive(self, count: int) -> None:
        """The authorized change selected `count` objects: refused (and recorded) unless the
        actor holds the massive form of its ACLs."""
        if self._operation is None:
            return
        operation, arguments = self._operation
        try:
            require_massive(self.actor, operation, arguments.get("args", {}).keys(), count)
        except AccessDenied as exc:
            self._record_attempt(operation, arguments, "refused", str(exc))
            raise

    def authorize(self, operation: str, arguments: dict) -> None:
        """Before an operation acts: refused (and recorded) unless the actor holds its ACLs."""
        try:
            require(self.actor, operation, arguments.get("args", {}).keys())
        except AccessDenied as exc:
            self._record_attempt(operation, arguments, "refused", str(exc))
            raise
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
                         status=status, error=error, source=self.source,
                         client_address=self.client_address)

    def _own_tenant(self) -> int | None:
        return None if self.actor.is_super else self.actor.tenant_id

    def audit(self, session: Session, obj: str, action: str, call: Call, ids, tenant_id=None):
        """Record the change in admin_log, in the same transaction as the change itself."""
        arguments = {"filters": call.filters, "args": call.args}
        if call.chosen:
            arguments["chosen"] = call.chosen
        if call.tenant:
            arguments["tenant"] = call.tenant
        if tenant_id is None:
            tenant_id = (self.tenant_id(session, call.tenant, supertenant=True) if call.tenant
                         else self._own_tenant())
        audit.record(session, self.actor, obj, action, arguments, ids, tenant_id,
                     source=self.source, client_address=self.client_address)

    def tenant_id(self, session: Session, name: str | None, default=DEFAULT_TENANT,
                  supertenant: bool = False) -> int:
        """The id of a tenant named on the command line. An administrator of one tenant knows
        no other: any other name is unknown to it, and no name means its own."""
        actor = self.actor
        if not actor.is_super:
            if name is None or name == actor.tenant_name:
                return actor.tenant_id
            raise NotFound(f"unknown tenant '{name}'")
        if name is None:
            return default
        lowest = SUPERTENANT if supertenant else 1
        found = session.scalar(select(Tenant.id).where(Tenant.name == name, Tenant.id >= lowest))
        if found is None:
            raise NotFound(f"unknown tenant '{name}'")
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
