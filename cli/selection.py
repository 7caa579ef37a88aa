"""Choosing objects: a select with named fields, narrowed by filters and the tenant."""
from __future__ import annotations

from sqlalchemy import Select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from .context import Admin, Call
from .errors import UserError, usage
from .grammar import apply_filters


class ObjectView:
    """How one kind of object is listed and filtered.

    fields: name -> column expression (filter keys and list columns); the first is the id.
    tenant: the column holding the tenant name, or None for objects outside tenants.
    """

    def __init__(self, name: str, fields: dict[str, ColumnElement], base: Select,
                 tenant: ColumnElement | None = None, order=None):
        self.name = name
        self.fields = fields
        self.base = base
        self.tenant = tenant
        self.order = order if order is not None else list(fields.values())[0]

    def query(self, call: Call, columns: list[ColumnElement] | None = None) -> Select:
        labelled = [col.label(key) for key, col in self.fields.items()]
        stmt = self.base.with_only_columns(*(columns or labelled))
        stmt = apply_filters(stmt, self.fields, call.filters)
        if call.tenant is not None:
            if self.tenant is None:
                raise usage(f"{self.name} objects do not belong to a tenant: drop -t")
            stmt = stmt.where(self.tenant == call.tenant)
        return stmt.order_by(self.order)

    def rows(self, session: Session, call: Call) -> list[dict]:
        return [dict(row) for row in session.execute(self.query(call)).mappings()]

    def ids(self, session: Session, call: Call) -> list[int]:
        """Ids of the objects a changing verb acts on; a filter is required, an empty match fails."""
        if not call.filters:
            raise usage(f"say which {self.name}s with -f, e.g. -f id=3 or -f name=lab-*")
        id_column = list(self.fields.values())[0]
        found = list(session.scalars(self.query(call, [id_column]).distinct()))
        if not found:
            raise UserError(f"no {self.name} matches the filter")
        return found


def list_objects(admin: Admin, view: ObjectView, call: Call) -> None:
    from .output import print_rows
    with admin.session() as session:
        rows = view.rows(session, call)
    print_rows(list(view.fields), rows, call.fmt, call.quiet)


