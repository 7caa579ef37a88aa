"""One object's page: every field of its listing, its properties (add, change, delete), the
objects that belong to it (a VM's sessions, a node's VMs, a user's VMs and tokens, a role's
ACLs, an administrator's effective ACLs) and the actions its role allows."""
from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .catalog import ACTIONS, DETAILED, FORM_VERBS
from .forms import offered
from .web import OBJECTS, TITLES, PageError, acting, allowed, done, page, rows_of, run

router = APIRouter(prefix="/wat")
RELATED_ROWS = 20


def related(resource: str, row: dict) -> list[tuple[str, str, dict]]:
    """(title, list, filters) of the objects shown under this one."""
    key = row.get("id")
    return {
        "vms": [("Sessions", "sessions", {"vm_id": key})],
        "hosts": [("VMs on this node", "vms", {"host_id": key})],
        "users": [("VMs", "vms", {"user_id": key}),
                  ("Tokens", "tokens", {"login": row.get("login"), "tenant": row.get("tenant")})],
        "osfs": [("Images", "dis", {"osf_id": key}), ("VMs", "vms", {"osf_id": key})],
        "tenants": [("Users", "users", {"tenant": row.get("name")}),
                    ("VMs", "vms", {"tenant": row.get("name")})],
        "roles": [("ACLs of this role", "acls", {"role": row.get("name")})],
        "admins": [("Effective ACLs", "acls",
                    {"admin": f"{row.get('name')}@{row.get('tenant')}"})],
    }.get(resource, [])


def one(ctx, resource: str, key: int) -> dict:
    obj = OBJECTS[resource]
    _, rows, _ = rows_of(ctx, f"{obj} list", filters={"id": str(key)})
    if not rows:
        raise PageError(404, f"no {obj} {key}")
    return rows[0]


def _resource(resource: str) -> str:
    if resource not in DETAILED:
        raise PageError(404, f"no page for one of '{resource}'")
    return OBJECTS[resource]


# A VM's desktop watched for support (wat/spy.py): label, query, the arguments it needs.
WATCH = (("Watch the desktop", "", ()), ("Use the desktop", "?interactive=1", ("interactive",)))


@router.get("/{resource}/{key:int}", response_class=HTMLResponse)
def detail(request: Request, resource: str, key: int):
    ctx = acting(request)
    obj = _resource(resource)
    row = one(ctx, resource, key)
    sections = []
    for title, listed, filters in related(resource, row):
        filters = {k: str(v) for k, v in filters.items()}
        operation = "acl list" if listed == "acls" else f"{OBJECTS[listed]} list"
        if allowed(ctx, operation):
            fields, rows, total = rows_of(ctx, operation, filters=filters, limit=RELATED_ROWS)
            link = f"/wat/{listed}?" + urlencode({f"f.{k}": v for k, v in filters.items()})
            sections.append(dict(title=title, resource=listed, link=link, fields=fields,
                                 rows=rows, total=total))
    properties = None
    if allowed(ctx, f"{obj} propget"):  # not every object has properties
        properties = rows_of(ctx, f"{obj} propget", filters={"id": str(key)})[1]
    forms = [(verb, label) for verb, label in FORM_VERBS.get(resource, [])
             if offered(ctx, f"{obj} {verb}")]
    actions = [a for a in ACTIONS.get(resource, [])
               if allowed(ctx, a.operation(obj), a.argument_keys())]
    watch = [(label, f"/wat/vms/{key}/spy{query}") for label, query, keys in WATCH
             if obj == "vm" and allowed(ctx, "vm spy", keys)]
    return page(request, ctx, "detail.html", title=f"{TITLES[resource]}: {row.get('name') or key}",
                resource=resource, obj=obj, kind=obj, key=key, row=row, sections=sections,
                properties=properties, forms=forms, actions=actions, watch=watch,
                can_set_properties=allowed(ctx, f"{obj} propset"),
                can_delete_properties=allowed(ctx, f"{obj} propdel"),
                done=request.query_params.get("done"))


@router.post("/{resource}/{key:int}/properties")
async def properties(request: Request, resource: str, key: int):
    form = await request.form()
    ctx = acting(request)
    obj = _resource(resource)
    name = form.get("key", "").strip()
    if not name:
        raise PageError(422, "give the property's name")
    if form.get("delete"):
        run(ctx, f"{obj} propdel", filters={"id": str(key)}, args={name: None})
    else:
        run(ctx, f"{obj} propset", filters={"id": str(key)}, args={name: form.get("value", "")})
    return done(f"/wat/{resource}/{key}", ctx)
