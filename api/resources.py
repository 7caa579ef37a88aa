"""/api/v1/<resource>: the domain layer's operations as REST resources, generically.

GET    /api/v1/vms?name=lab-*&tenant=acme&order_by=-name&offset=0&limit=100   vm list
GET    /api/v1/vms/7                                   vm list, id=7 (404 when not visible)
POST   /api/v1/vms          {"name": ..., "user": ...} vm add
PATCH  /api/v1/vms/7        {"di_tag": "testing"}      vm edit, id=7
DELETE /api/v1/vms/7                                   vm del, id=7
POST   /api/v1/vms/7/start  {args}                     vm start, id=7 (any verb of the object)
POST   /api/v1/vms/start    {"filters": {...}, "args": {...}, "tenant": ...}   bulk
Query keys other than tenant, order_by, offset and limit are the CLI's -f filters (* and ?
wildcards). configs: POST sets keys, DELETE /configs/KEY removes one, GET /configs/KEY reads.
"""
from __future__ import annotations

import json

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from qvd.db.ops import REGISTRY
from qvd.db.ops.context import Context
from qvd.db.ops.context import Request as OpRequest
from qvd.db.ops.values import json_default

from .problems import Problem
from .session import acting

RESOURCES = {"tenants": "tenant", "users": "user", "tokens": "user token", "osfs": "osf",
             "dis": "di", "vms": "vm", "pools": "pool", "hosts": "host", "configs": "config",
             "sessions": "session", "logs": "log", "admins": "admin",
             "administrators": "admin", "roles": "role", "acls": "acl"}
RESERVED = {"tenant", "order_by", "offset", "limit"}
DEFAULT_PAGE, LARGEST_PAGE = 100, 1000
# Operations whose new password is not an argument (qvd-admin reads it from the terminal).
SECRET_FROM_BODY = {"user passwd", "admin passwd"}

Value = str | int | float | bool
Args = dict[str, Value]

router = APIRouter(prefix="/api/v1")


class Bulk(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filters: dict[str, Value] = {}
    args: Args = {}
    tenant: str | None = None


def _object(resource: str) -> str:
    if resource not in RESOURCES:
        raise Problem(404, f"no resource '{resource}'; there are: " + ", ".join(RESOURCES))
    return RESOURCES[resource]


def _text(values: dict) -> dict[str, str]:
    return {key: ("1" if v is True else "0" if v is False else str(v))
            for key, v in values.items()}


def _run(ctx: Context, operation: str, request: OpRequest) -> dict:
    if operation not in REGISTRY:
        raise Problem(404, f"no operation '{operation}'")
    if operation in SECRET_FROM_BODY and "password" in request.args:
        ctx.secret = request.args.pop("password")
    ctx.run(operation, request)
    if ctx.shown is not None:
        fields, rows, total = ctx.shown
        return Rows({"total": total, "offset": request.offset, "limit": request.limit,
                     "fields": fields, "rows": rows})
    return {"message": "\n".join(ctx.said)}


class Rows(JSONResponse):
    """Rows rendered straight to JSON (the generic encoder costs more than the query)."""

    def render(self, content) -> bytes:
        return json.dumps(content, default=json_default, separators=(",", ":")).encode()


def _page(offset: int, limit: int | None) -> tuple[int, int]:
    if offset < 0 or (limit is not None and not 1 <= limit <= LARGEST_PAGE):
        raise Problem(422, f"offset must be 0 or more and limit 1 to {LARGEST_PAGE}")
    return offset, DEFAULT_PAGE if limit is None else limit


@router.get("/{resource}")
def list_objects(resource: str, request: Request, ctx: Context = Depends(acting),
                 tenant: str | None = None, order_by: str | None = None,
                 offset: int = 0, limit: int | None = Query(None)):
    obj = _object(resource)
    offset, limit = _page(offset, limit)
    filters = {k: v for k, v in request.query_params.items() if k not in RESERVED}
    return _run(ctx, f"{obj} list", OpRequest(
        filters=filters, tenant=tenant, offset=offset, limit=limit,
        order_by=[name.strip() for name in (order_by or "").split(",") if name.strip()]))


@router.get("/{resource}/{key}")
def one_object(resource: str, key: str, ctx: Context = Depends(acting),
               tenant: str | None = None):
    obj = _object(resource)
    if obj == "config":
        return _run(ctx, "config get", OpRequest(args={key: None}, tenant=tenant))
    ctx.run(f"{obj} list", OpRequest(filters={"id": key}, tenant=tenant))
    rows = ctx.shown[1]
    if not rows:
        raise Problem(404, f"no {obj} {key}")
    return Rows(rows[0])


@router.post("/{resource}", status_code=201)
def add_object(resource: str, ctx: Context = Depends(acting), tenant: str | None = None,
               args: Args = Body(default_factory=dict)):
    obj = _object(resource)
    verb = "set" if obj == "config" else "add"
    return _run(ctx, f"{obj} {verb}", OpRequest(args=_text(args), tenant=tenant))


@router.patch("/{resource}/{key}")
def edit_object(resource: str, key: str, ctx: Context = Depends(acting),
                tenant: str | None = None, args: Args = Body(default_factory=dict)):
    obj = _object(resource)
    return _run(ctx, f"{obj} edit", OpRequest(filters={"id": key}, args=_text(args),
                                              tenant=tenant))


@router.delete("/{resource}/{key}")
def delete_object(resource: str, key: str, ctx: Context = Depends(acting),
                  tenant: str | None = None):
    obj = _object(resource)
    if obj == "config":
        return _run(ctx, "config del", OpRequest(args={key: None}, tenant=tenant))
    return _run(ctx, f"{obj} del", OpRequest(filters={"id": key}, tenant=tenant))


@router.post("/{resource}/{key}/{verb}")
def act_on_one(resource: str, key: str, verb: str, ctx: Context = Depends(acting),
               tenant: str | None = None, args: Args = Body(default_factory=dict)):
    obj = _object(resource)
    return _run(ctx, f"{obj} {verb}", OpRequest(filters={"id": key}, args=_text(args),
                                                tenant=tenant))


@router.post("/{resource}/{verb}")
def act_on_many(resource: str, verb: str, bulk: Bulk, ctx: Context = Depends(acting)):
    obj = _object(resource)
    return _run(ctx, f"{obj} {verb}", OpRequest(filters=_text(bulk.filters),
                                                args=_text(bulk.args), tenant=bulk.tenant))
