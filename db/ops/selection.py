"""Choosing objects: a select with named fields, narrowed by filters and the tenant."""
from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from .context import Call, Context
from .errors import BadRequest, DomainError, NotFound
from .grammar import apply_filters


_TENANT = object()  # scope's default: the same column as `tenant`
EVERY_TENANT = object()  # scope of objects every administrator sees (roles)


class ObjectView:
    """How one kind of object is listed and filtered.

    fields: name -> column expression (filter keys and list columns); the first is the id.
    tenant: the column holding the tenant name (what -t narrows), or None for objects
    outside tenants.
    scope: the tenant name column that keeps an administrator of one tenant to its own
    objects (by default `tenant`); None: objects every tenant shares, which such an
    administrator does not see at all; EVERY_TENANT: shared objects everyone sees.
    ids: filter keys that are not listed (`user_id` of a VM: QVD's API filters by them).
    """

    def __init__(self, name: str, fields: dict[str, ColumnElement], base: Select,
                 tenant: ColumnElement | None = None, order=None, scope=_TENANT,
                 ids: dict[str, ColumnElement] | None = None):
        self.name = name
        self.fields = fields
        self.filters = {**fields, **(ids or {})}
        self.base = base
        self.tenant = tenant
        self.scope = tenant if scope is _TENANT else scope
        self.order = order if order is not None else list(fields.values())[0]

    def query(self, call: Call, columns: list[ColumnElement] | None = None) -> Select:
        return self._chosen(call, columns).order_by(*self._order(call))

    def _chosen(self, call: Call, columns: list[ColumnElement] | None = None) -> Select:
        labelled = [col.label(key) for key, col in self.fields.items()]
        stmt = self.base.with_only_columns(*(columns or labelled))
        stmt = apply_filters(stmt, self.filters, call.filters)
        if call.chosen is not None:
            stmt = stmt.where(list(self.fields.values())[0].in_(call.chosen))
        if call.tenant is not None:
            if self.tenant is None:
                raise BadRequest(f"{self.name} objects do not belong to a tenant: drop -t")
            stmt = stmt.where(self.tenant == call.tenant)
        return self._scoped(stmt, call)

    def _order(self, call: Call) -> list:
        """order_by names fields, `-name` for descending; the id breaks ties (stable pages)."""
        order = []
        for name in call.order_by:
            key = name.lstrip("-")
            if key not in self.fields:
                raise BadRequest(f"cannot order {self.name}s by '{key}'; valid keys: "
                                 + ", ".join(self.fields))
            order.append(self.fields[key].desc() if name.startswith("-") else self.fields[key])
        return [*order, self.order]

    def _scoped(self, stmt: Select, call: Call) -> Select:
        only = call.only_tenant
        if only is None or self.scope is EVERY_TENANT:
            return stmt
        if self.scope is None:
            raise DomainError(f"{self.name}s are shared by every tenant: only administrators "
                            "of the supertenant see them")
        if call.tenant is not None and call.tenant != only:
            raise NotFound(f"unknown tenant '{call.tenant}'")
        return stmt.where(self.scope == only)

    def rows(self, session: Session, call: Call) -> list[dict]:
        """The page of rows the call asks for (offset, limit), or all of them."""
        stmt = self.query(call).offset(call.offset or None).limit(call.limit)
        return [dict(row) for row in session.execute(stmt).mappings()]

    def count(self, session: Session, call: Call) -> int:
        return session.scalar(select(func.count()).select_from(self._chosen(call).subquery()))

    def ids(self, session: Session, call: Call) -> list[int]:
        """Ids of the objects a changing verb acts on; a filter is required, an empty match fails."""
        if not call.filters and call.chosen is None:
            raise BadRequest(f"say which {self.name}s with -f, e.g. -f id=3 or -f name=lab-*")
        id_column = list(self.fields.values())[0]
        found = list(session.scalars(self.query(call, [id_column]).distinct()))
        if not found:
            raise NotFound(f"no {self.name} matches the filter")
        if len(found) > 1 and call.many is not None:
            call.many(len(found))
        return found

    def one_id(self, session: Session, call: Call, verb: str) -> int:
        """The id of the one object a verb that changes exactly one acts on."""
        ids = self.ids(session, call)
        if len(ids) != 1:
            raise DomainError(f"the filter matches {len(ids)} {self.name}s; {verb} changes one")
        return ids[0]


def show_page(admin: Context, call: Call, fields: list[str], rows: list[dict]) -> None:
    """Show rows a verb built in Python (not by a query), paged by the call as a query's are;
    the total counts them all."""
    end = None if call.limit is None else call.offset + call.limit
    admin.show(fields, rows[call.offset:end], len(rows))


def list_objects(admin: Context, view: ObjectView, call: Call) -> None:
    with admin.session() as session:
        rows = view.rows(session, call)
        paged = call.offset or call.limit is not None
        total = view.count(session, call) if paged else len(rows)
    admin.show(list(view.fields), rows, total)


