"""Forms: create an object (/wat/<resource>/new), run one of its verbs that take arguments
(/wat/<resource>/<id>/do/<verb>: a VM's edit and expiration, a DI's tags, a role's ACLs, an
administrator's roles, passwords), the settings page with each key's documentation and
source, and the DI upload page.

A form's fields are the operation's own arguments, read from its help text (the same text
`qvd-admin ... --help` prints), so a new argument shows up without touching the WAT. The
domain layer's error is shown next to the field it names."""
from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from qvd.api.resources import SECRET_FROM_BODY
from qvd.db.config_keys import KEYS
from qvd.db.ops import REGISTRY

from .catalog import FORM_VERBS
from .web import (OBJECTS, TITLES, PageError, acting, allowed, done, object_of, page, rows_of,
                  run)

router = APIRouter(prefix="/wat")

# `name=NAME`, `[di_tag=default]`; not the examples of filters (`-f login=alice`).
_ARGUMENT = re.compile(r"(?<!-f )(\[?)\b([a-z_]+)=([^\s\],]*)")
_QUOTED = re.compile(r"'([^']*)'")
_TOGGLE = re.compile(r"^(0\|1|1)$")
DOCS = {key.name: key.doc for key in KEYS}
# Objects every tenant shares: their forms offer no tenant to add them to.
SHARED_ADDS = {"tenant add", "host add", "role add"}


@dataclass
class Field:
    name: str
    required: bool
    hint: str

    @property
    def kind(self) -> str:
        if self.name == "password":
            return "password"
        if self.name.startswith("expiration"):
            return "datetime-local"
        if _TOGGLE.match(self.hint):
            return "toggle"
        return "text"


def fields_of(operation: str, creates: bool) -> list[Field]:
    """The arguments an operation's help names; only a creation has required ones."""
    found: dict[str, Field] = {}
    for bracket, name, hint in _ARGUMENT.findall(REGISTRY[operation].help):
        if name not in found:
            found[name] = Field(name, creates and not bracket, hint)
    fields = list(found.values())
    if operation in SECRET_FROM_BODY:  # read from the terminal by qvd-admin
        fields.insert(0, Field("password", False, "new password"))
    return fields


def usable_fields(ctx, operation: str, creates: bool) -> list[Field]:
    """The fields of the operation the administrator's role lets it give (a VM's edit offers
    the expiration to one who may change only that); 403 when it may give none."""
    refused = PageError(403, f"your role does not allow '{operation}'")
    if not allowed(ctx, operation):  # also for an operation that does not exist
        raise refused
    fields = fields_of(operation, creates)
    usable = [f for f in fields if allowed(ctx, operation, [f.name])]
    if fields and not usable:
        raise refused
    return usable


def offered(ctx, operation: str) -> bool:
    """Whether a link to the operation's form is shown."""
    try:
        usable_fields(ctx, operation, operation.endswith(" add"))
    except PageError:
        return False
    return True


def field_of_error(message: str, values: dict[str, str]) -> str | None:
    """The field an error is about: named as `key=`, or else the one whose value the message
    quotes last ("OSF 'base' has no DI tagged 'x'" is about the tag; "unknown tenant 'acme'"
    about the field that said bob@acme)."""
    for name in values:
        if f"{name}=" in message:
            return name
    quotes = list(reversed(_QUOTED.findall(message)))
    for matches in (str.__eq__, lambda value, quoted: bool(quoted) and quoted in value):
        for quoted in quotes:
            found = [name for name, value in values.items() if value and matches(value, quoted)]
            if found:
                return found[0]
    return None


def _choices(ctx) -> dict[str, list[str]]:
    """Suggestions for fields that name other objects (a datalist, not a limit)."""
    suggestions = {}
    for field, listed, column in (("user", "user list", "login"), ("osf", "osf list", "name")):
        if allowed(ctx, listed):
            suggestions[field] = [r[column] for r in rows_of(ctx, listed, limit=200)[1]]
    return suggestions


def _form_page(request, ctx, operation, fields, action, title, values=None, error=None,
               status=200, back=None):
    values = values or {}
    where = field_of_error(error, values) if error else None
    in_tenant = operation.endswith(" add") and operation not in SHARED_ADDS
    return page(request, ctx, "form.html", status=status, title=title, fields=fields,
                action=action, values=values, error=error, error_field=where, back=back,
                choices=_choices(ctx), operation=operation, help=REGISTRY[operation].help,
                tenants=_tenants(ctx) if in_tenant else [])


def _posted(form, fields: list[Field]) -> dict[str, str]:
    values = {}
    for field in fields:
        value = (form.get(field.name) or "").strip()
        if value:
            values[field.name] = value
    return values


def _run_form(ctx, operation: str, values: dict[str, str], **request) -> PageError | None:
    """Run the operation with the form's values; its error (if any) is returned, to be shown
    in the form. A refusal (403) is not the form's business: it is raised."""
    args = dict(values)
    ctx.secret = args.pop("password", None) if operation in SECRET_FROM_BODY else None
    try:
        run(ctx, operation, args=args, **request)
    except PageError as exc:
        if exc.status == 403:
            raise
        return exc
    return None


@router.get("/{resource}/new", response_class=HTMLResponse)
def new_form(request: Request, resource: str):
    ctx = acting(request)
    operation = f"{object_of(resource)} add"
    return _form_page(request, ctx, operation, usable_fields(ctx, operation, True),
                      f"/wat/{resource}/new", f"Add to {TITLES[resource]}",
                      back=f"/wat/{resource}")


@router.post("/{resource}/new", response_class=HTMLResponse)
async def create(request: Request, resource: str):
    form = await request.form()
    ctx = acting(request)
    operation = f"{object_of(resource)} add"
    fields = usable_fields(ctx, operation, True)
    values = _posted(form, fields)
    error = _run_form(ctx, operation, values, tenant=form.get("tenant") or None)
    if error:
        return _form_page(request, ctx, operation, fields, f"/wat/{resource}/new",
                          f"Add to {TITLES[resource]}", {**values, "tenant": form.get("tenant")},
                          error.message, error.status, back=f"/wat/{resource}")
    return done(f"/wat/{resource}", ctx)


def _verb(resource: str, verb: str) -> str:
    if verb not in dict(FORM_VERBS.get(resource, [])):
        raise PageError(404, f"no form '{verb}' for {TITLES.get(resource, resource)}")
    return f"{OBJECTS[resource]} {verb}"


@router.get("/{resource}/{key:int}/do/{verb}", response_class=HTMLResponse)
def verb_form(request: Request, resource: str, key: int, verb: str):
    ctx = acting(request)
    operation = _verb(resource, verb)
    return _form_page(request, ctx, operation, usable_fields(ctx, operation, False),
                      f"/wat/{resource}/{key}/do/{verb}",
                      f"{dict(FORM_VERBS[resource])[verb]}: {OBJECTS[resource]} {key}",
                      back=f"/wat/{resource}/{key}")


@router.post("/{resource}/{key:int}/do/{verb}", response_class=HTMLResponse)
async def run_verb(request: Request, resource: str, key: int, verb: str):
    form = await request.form()
    ctx = acting(request)
    operation = _verb(resource, verb)
    fields = usable_fields(ctx, operation, False)
    values = _posted(form, fields)
    error = _run_form(ctx, operation, values, filters={"id": str(key)})
    if error:
        return _form_page(request, ctx, operation, fields, f"/wat/{resource}/{key}/do/{verb}",
                          f"{dict(FORM_VERBS[resource])[verb]}: {OBJECTS[resource]} {key}",
                          values, error.message, error.status, back=f"/wat/{resource}/{key}")
    return done(f"/wat/{resource}/{key}", ctx)


@router.get("/dis/upload", response_class=HTMLResponse)
def upload_page(request: Request):
    ctx = acting(request)
    if not allowed(ctx, "di add"):
        raise PageError(403, "your role does not allow 'di add'")
    return page(request, ctx, "upload.html", title="Upload an image",
                osfs=_choices(ctx).get("osf", []), tenants=_tenants(ctx))


def _tenants(ctx) -> list[str]:
    """The tenants an administrator of the supertenant chooses from (others have one)."""
    if not ctx.actor.is_super:
        return []
    return [r["name"] for r in rows_of(ctx, "tenant list")[1]]


@router.get("/configs", response_class=HTMLResponse)
def settings(request: Request):
    ctx = acting(request)
    pattern = (request.query_params.get("f.key") or "").strip()
    tenant = request.query_params.get("tenant") or None
    _, rows, _ = rows_of(ctx, "config list", tenant=tenant,
                         filters={"key": pattern} if pattern else {})
    tenants = _tenants(ctx)
    return page(request, ctx, "configs.html", title="Settings", rows=rows, docs=DOCS,
                pattern=pattern, tenant=tenant, tenants=tenants,
                can_set=allowed(ctx, "config set"), can_reset=allowed(ctx, "config del"),
                done=request.query_params.get("done"))


@router.post("/configs", response_class=HTMLResponse)
async def change_setting(request: Request):
    form = await request.form()
    ctx = acting(request)
    key, tenant = (form.get("key") or "").strip(), form.get("tenant") or None
    if form.get("reset"):
        run(ctx, "config del", args={key: None}, tenant=tenant)
    else:
        run(ctx, "config set", args={key: form.get("value", "")}, tenant=tenant)
    return done("/wat/configs" + (f"?tenant={tenant}" if tenant else ""), ctx)
