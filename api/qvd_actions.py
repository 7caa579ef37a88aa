"""QVD 4.2's API form, translated onto the domain layer: `{action, filters, order_by, offset,
block, arguments}` in, `{status, message, total, rows}` out (always HTTP 200, as QVD answers),
so that scripts written for QVD's /api keep working.

Actions are `<object>_<verb>` (vm_get_list, vm_create, vm_update, vm_delete, vm_start,
vm_stop, vm_user_disconnect; the same for user, host, osf, di). QVD's field names are mapped
onto ours (user_name -> user, osf_name -> osf); its ids of related objects (user_id, osf_id)
are looked up through the same listing operations. Filters: a value, or {"=": v} /
{"~"|"LIKE": "lab%"} (% and _ become * and ?), joined by -and; -or and -not are refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qvd.db.acl.check import AccessDenied
from qvd.db.ops import REGISTRY
from qvd.db.ops.context import Context, Request
from qvd.db.ops.errors import BadRequest, DomainError, NotFound

# QVD's status codes (QVD::API::Exception) for what can happen here.
OK, PARTIAL, NOTHING_SELECTED = 0, 1200, 1300
NO_CREDENTIALS, WRONG_CREDENTIALS, SESSION_EXPIRED = 3100, 3200, 3300
UNKNOWN_ACTION, FORBIDDEN = 4100, 4210
BAD_JSON, BAD_FILTER, BAD_ARGUMENT, BAD_VALUE, BAD_ORDER = 6100, 6210, 6230, 6310, 6610

MESSAGES = {
    OK: "Successful completion", PARTIAL: "Action not accomplished for all elements",
    NOTHING_SELECTED: "Zero items selected, no item has been changed",
    NO_CREDENTIALS: "No credentials provided for authentication",
    WRONG_CREDENTIALS: "Wrong credentials - Login again",
    SESSION_EXPIRED: "Session expired - Login again",
    UNKNOWN_ACTION: "Unavailable action",
    FORBIDDEN: "Forbidden action for this administrator",
    BAD_JSON: "Syntax errors in input json", BAD_FILTER: "Inappropiate filter for this action",
    BAD_ARGUMENT: "Inappropiate argument for this action", BAD_VALUE: "Invalid value",
    BAD_ORDER: "Invalid order by field",
}

OBJECTS = ("vm", "user", "host", "osf", "di")
VERBS = {"get_list": "list", "create": "add", "update": "edit", "delete": "del",
         "start": "start", "stop": "stop", "user_disconnect": "disconnect"}

# QVD's name of a field -> ours, per object (the rest are the same on both sides).
FIELDS = {
    "vm": {"user_name": "user", "osf_name": "osf", "host_name": "host",
           "tenant_name": "tenant", "user_id": "user_id", "osf_id": "osf_id"},
    "user": {"name": "login", "tenant_name": "tenant"},
    "host": {},
    "osf": {"tenant_name": "tenant", "overlay": "use_overlay"},
    "di": {"osf_name": "osf", "tenant_name": "tenant", "disk_image": "path"},
}


class QvdError(Exception):
    def __init__(self, status: int, detail: str = ""):
        super().__init__(detail or MESSAGES[status])
        self.status = status


@dataclass
class Translated:
    operation: str
    request: Request
    block: bool | None = None          # update's `blocked`: a block or unblock as well
    secret: str | None = None          # user_update's password
    lookups: dict = field(default_factory=dict)  # our argument -> (object, id) to name


def answer(status: int, detail: str = "", total: int = 0, rows=None) -> dict:
    body = {"status": status, "message": MESSAGES.get(status, detail),
            "total": total, "rows": rows or []}
    if detail and detail != body["message"]:
        body["additional_info"] = detail
    return body


def _value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise QvdError(BAD_VALUE, f"unsupported value {value!r}")


def _filters(obj: str, tree) -> dict[str, str]:
    if tree in (None, {}, []):
        return {}
    if not isinstance(tree, dict):
        raise QvdError(BAD_FILTER, "filters must be an object")
    names = FIELDS[obj]
    out: dict[str, str] = {}
    for key, value in tree.items():
        if key == "-and":
            parts = value if isinstance(value, list) else [value]
            for part in parts:
                out.update(_filters(obj, part))
            continue
        if key.startswith("-"):
            raise QvdError(BAD_FILTER, f"{key} is not supported; use -and")
        if isinstance(value, dict):
            if len(value) != 1:
                raise QvdError(BAD_FILTER, f"filter {key}: one operator")
            (operator, operand), = value.items()
            if operator in ("~", "LIKE"):
                value = _value(operand).replace("%", "*").replace("_", "?")
            elif operator == "=":
                value = _value(operand)
            else:
                raise QvdError(BAD_FILTER, f"filter {key}: operator {operator} not supported")
        else:
            value = _value(value)
        out[names.get(key, key)] = value
    return out


def _order(obj: str, order_by) -> list[str]:
    if not order_by:
        return []
    if not isinstance(order_by, dict):
        raise QvdError(BAD_ORDER, "order_by must be {field: [...], order: -asc|-desc}")
    fields = order_by.get("field", [])
    fields = [fields] if isinstance(fields, str) else fields
    descending = order_by.get("order", "-asc") == "-desc"
    return [("-" if descending else "") + FIELDS[obj].get(name, name) for name in fields]


def _page(body: dict) -> tuple[int, int | None]:
    """QVD's offset is a page number from 1 and block the page size."""
    try:
        block = int(body["block"]) if body.get("block") is not None else None
        page = int(body.get("offset") or 1)
    except (TypeError, ValueError):
        raise QvdError(BAD_VALUE, "offset and block must be numbers") from None
    if block is None:
        return 0, None
    if block < 1 or page < 1:
        raise QvdError(BAD_VALUE, "offset and block start at 1")
    return (page - 1) * block, block


def translate(body) -> Translated:
    if not isinstance(body, dict):
        raise QvdError(BAD_JSON, "the request must be a JSON object")
    action = body.get("action")
    obj, _, verb = str(action or "").partition("_")
    if obj not in OBJECTS or verb not in VERBS or \
            (VERBS[verb] in ("start", "stop", "disconnect") and obj != "vm"):
        raise QvdError(UNKNOWN_ACTION, f"unknown action {action!r}")
    ours = VERBS[verb]
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise QvdError(BAD_ARGUMENT, "arguments must be an object")
    names = FIELDS[obj]
    args = {names.get(key, key): _value(value) for key, value in arguments.items()}
    offset, limit = _page(body)
    request = Request(filters=_filters(obj, body.get("filters")), args=args,
                      order_by=_order(obj, body.get("order_by")), offset=offset, limit=limit)
    found = Translated(f"{obj} {ours}", request)
    if ours == "edit":
        if "blocked" in args:
            found.block = args.pop("blocked") not in ("0", "false", "")
        if obj == "user" and "password" in args:
            found.secret = args.pop("password")
    if ours == "add":
        for ours_key, id_key, kind in (("user", "user_id", "user"), ("osf", "osf_id", "osf")):
            if id_key in args:
                found.lookups[ours_key] = (kind, args.pop(id_key))
        if "tenant_id" in args:
            found.lookups["tenant"] = ("tenant", args.pop("tenant_id"))
    return found


def _name_of(ctx: Context, kind: str, object_id: str) -> tuple[str, str | None]:
    """(name, tenant) of a related object given by id, through its own listing."""
    ctx.run(f"{kind} list", Request(filters={"id": object_id}))
    rows = ctx.shown[1] if ctx.shown else []
    if not rows:
        raise QvdError(BAD_VALUE, f"no {kind} with id {object_id}")
    row = rows[0]
    return row.get("login") or row["name"], row.get("tenant")


def _rows_out(obj: str, rows: list[dict]) -> list[dict]:
    back = {ours: theirs for theirs, ours in FIELDS[obj].items() if not theirs.endswith("_id")}
    return [{**row, **{back[k]: v for k, v in row.items() if k in back}} for row in rows]


def run(ctx: Context, body) -> dict:
    """One QVD action as the acting administrator; the answer QVD would give."""
    try:
        found = translate(body)
        request, obj = found.request, found.operation.split()[0]
        for key, (kind, object_id) in found.lookups.items():
            name, tenant = _name_of(ctx, kind, _value(object_id))
            if kind == "tenant":
                request.tenant = name
            else:
                request.args[key] = f"{name}@{tenant}" if kind == "user" else name
                request.tenant = request.tenant or tenant
        ctx.shown, ctx.said = None, []
        if found.operation.endswith(" edit"):
            _update(ctx, found)
        else:
            ctx.run(found.operation, request)
    except QvdError as exc:
        return answer(exc.status, str(exc))
    except AccessDenied as exc:
        return answer(FORBIDDEN, str(exc))
    except NotFound as exc:
        return answer(NOTHING_SELECTED, str(exc))
    except BadRequest as exc:
        return answer(BAD_ARGUMENT, str(exc))
    except DomainError as exc:
        return answer(PARTIAL, str(exc))
    if ctx.shown is not None:
        _fields, rows, total = ctx.shown
        return answer(OK, total=total, rows=_rows_out(obj, rows))
    return answer(OK, "\n".join(ctx.said))


def _update(ctx: Context, found: Translated) -> None:
    """QVD's update carries what our CLI splits into verbs: edit, block/unblock, passwd."""
    obj = found.operation.split()[0]
    request = found.request
    if not request.filters:
        raise QvdError(BAD_FILTER, "say which objects with filters")
    if found.block is not None:
        ctx.run(f"{obj} {'block' if found.block else 'unblock'}",
                Request(filters=dict(request.filters), tenant=request.tenant))
    if found.secret is not None:
        ctx.secret = found.secret
        ctx.run("user passwd", Request(filters=dict(request.filters), tenant=request.tenant))
    if request.args:
        if found.operation not in REGISTRY:
            raise QvdError(BAD_ARGUMENT, f"{obj}_update changes only blocked"
                           + (" and password" if obj == "user" else ""))
        ctx.run(found.operation, request)

