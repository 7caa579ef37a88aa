"""What every WAT page shares: the templates, the administrator behind the cookie (or a
redirect to the login page), running a domain operation with its errors turned into pages,
and whether the administrator may run an operation (so that forbidden actions are not
offered; the domain layer refuses them anyway)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from qvd.api.auth import actor_for
from qvd.api.problems import Problem, status_of
from qvd.api.session import client_address, token_of
from qvd.db.acl.check import AccessDenied, require
from qvd.db.ops import REGISTRY
from qvd.db.ops.context import Context
from qvd.db.ops.context import Request as OpRequest
from qvd.db.ops.errors import DomainError

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# The WAT's lists: URL segment -> the domain layer's object, in the order of the menu.
OBJECTS = {"vms": "vm", "users": "user", "hosts": "host", "osfs": "osf", "dis": "di",
           "sessions": "session", "tenants": "tenant", "admins": "admin", "roles": "role",
           "configs": "config", "tokens": "user token", "logs": "log"}
TITLES = {"vms": "VMs", "users": "Users", "hosts": "Nodes", "osfs": "OSFs", "dis": "Images",
          "sessions": "Sessions", "tenants": "Tenants", "admins": "Administrators",
          "roles": "Roles", "configs": "Settings", "tokens": "User tokens", "logs": "Audit log"}


# Fields whose changes are pushed to open pages (wat/live.py) as `sse-swap="vm-7-state"`.
LIVE_FIELDS = {"vm": ("state", "user_state", "host", "last_error"),
               "host": ("state", "last_error", "vms")}


def cell(value) -> str:
    """A value as a page shows it (and as the live updates send it): empty for none."""
    if value is None:
        return ""
    if value is True or value is False:
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


templates.env.filters["cell"] = cell
templates.env.globals["LIVE_FIELDS"] = LIVE_FIELDS


class LoginNeeded(Exception):
    """No valid token: the page sends the browser to the login form."""


class PageError(Exception):
    """A refusal or failure shown to the administrator, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def object_of(resource: str) -> str:
    """The domain layer's object behind a list's URL segment."""
    if resource not in OBJECTS:
        raise PageError(404, f"no list '{resource}'")
    return OBJECTS[resource]


def acting(request: Request) -> Context:
    """The administrator of the WAT's cookie, as it is now; LoginNeeded otherwise."""
    state = request.app.state
    token = token_of(request)
    try:
        actor = actor_for(state.engine, token)
    except Problem:
        raise LoginNeeded("your session has expired or was ended: log in again" if token
                          else None) from None
    return Context(actor=actor, cfg=state.cfg, engine=state.engine, source="wat",
                   client_address=client_address(request))


def run(ctx: Context, operation: str, **request) -> Context:
    """Run a domain operation for the page; its refusal or error becomes a PageError."""
    ctx.said, ctx.shown = [], None
    try:
        ctx.run(operation, OpRequest(**request))
    except (DomainError, AccessDenied) as exc:
        raise PageError(status_of(exc), str(exc)) from None
    return ctx


def rows_of(ctx: Context, operation: str, **request) -> tuple[list[str], list[dict], int]:
    """A listing's fields, rows and total; a listing the administrator may not see is empty."""
    if not allowed(ctx, operation):
        return [], [], 0
    return run(ctx, operation, **request).shown


def allowed(ctx: Context, operation: str, argument_keys=()) -> bool:
    if operation not in REGISTRY:
        return False
    try:
        require(ctx.actor, operation, argument_keys)
    except AccessDenied:
        return False
    return True


def render(request: Request, template: str, status: int = 200, **values) -> HTMLResponse:
    return templates.TemplateResponse(request, template, values, status_code=status)


def page(request: Request, ctx: Context | None, template: str, status: int = 200,
         **values) -> HTMLResponse:
    """A whole page (with the menu of what the administrator may list)."""
    menu = [(resource, TITLES[resource]) for resource, obj in OBJECTS.items()
            if ctx is not None and allowed(ctx, f"{obj} list")]
    return render(request, template, status, ctx=ctx, menu=menu,
                  assets_missing=request.app.state.wat_assets_missing, **values)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def to_login(request: Request, reason: str | None = None):
    target = "/wat/login" + (f"?{urlencode({'why': reason})}" if reason else "")
    if is_htmx(request):  # htmx follows this header with a full page load
        return HTMLResponse("", status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def same_origin(request: Request) -> bool:
    """A form post from our own pages: its Origin (sent by browsers on every POST) names
    this server. The SameSite=Strict cookie already keeps other sites' posts unauthenticated."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"https://{host}", f"http://{host}")


def done(url: str, ctx: Context) -> RedirectResponse:
    """After a change: back to a page that says what was done (303: the browser GETs it)."""
    said = "; ".join(ctx.said) or "done"
    joint = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{joint}{urlencode({'done': said})}", status_code=303)
