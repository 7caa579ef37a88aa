"""The portal's pages and forms: the login (login@tenant and password, through the tenant's
authentication chain and the same back-off as every login), the user's desktops with their
state and a button to open or stop each, the desktop page (noVNC, static/desktop.js) and the
JSON the pages poll. Forms change state only with our own Origin (cookie.same_origin) and the
SameSite=Strict cookie; pages are never cached."""
from __future__ import annotations

import base64
import json
from pathlib import Path

from qvd.db.runtime import vm_commands

from ..auth import chain
from ..auth import token as tokens
from .. import pools
from ..endpoints import owned_vm, vm_id_of
from ..http import HttpError, Request
from .cookie import clear_cookie, portal_token, require_portal_user, same_origin, set_cookie

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Everything the pages load comes from this server; no page may be framed by another site.
# (Referrer-Policy no-referrer would make Chromium send "Origin: null" on our own forms.)
HEADERS = [("Cache-Control", "no-store"), ("X-Frame-Options", "DENY"),
           ("Referrer-Policy", "same-origin"), ("X-Content-Type-Options", "nosniff"),
           ("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; "
                                       "frame-ancestors 'none'; form-action 'self'")]

DESKTOPS = f"""
SELECT v.id, v.name, r.vm_state AS state, r.blocked, r.user_state,
       extract(epoch FROM r.expiration_soft)::float8 AS expiration_soft,
       extract(epoch FROM r.expiration_hard)::float8 AS expiration_hard
FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id JOIN osfs o ON o.id = v.osf_id
WHERE v.user_id = %(user)s AND NOT o.is_application
UNION ALL {pools.PORTAL_ENTRIES}
ORDER BY name, id"""

_environment = None


def render(template: str, /, **context) -> str:
    """A template of templates/, autoescaped (Jinja2 is loaded by the first page, never by a
    QVD client's connection)."""
    global _environment
    if _environment is None:
        import jinja2
        _environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                          autoescape=True)
    return _environment.get_template(template).render(**context)


def respond_page(session, status: int, template: str, headers=(), /, **context) -> None:
    session.http.respond(status, render(template, **context), [*HEADERS, *headers],
                         content_type="text/html; charset=utf-8")


def redirect(session, to: str = "/", headers=()) -> None:
    session.http.respond(303, "", [("Location", to), *HEADERS, *headers])


def login_page(session, status: int = 200, error: str | None = None, headers=()) -> None:
    respond_page(session, status, "login.html", headers, error=error)


def _user_or_login(session, req: Request):
    """The cookie's user, or None after answering with the login page (saying why)."""
    if portal_token(req) is None:
        login_page(session)
        return None
    try:
        return require_portal_user(session, req)
    except HttpError as exc:
        if exc.status != 401:
            raise
        login_page(session, 401, "Your session has ended: log in again.", [clear_cookie()])
        return None


def _require_form(req: Request) -> dict[str, str]:
    if not same_origin(req, required=True):
        raise HttpError(403, "Cross-origin form refused\n")
    return req.form()


def index(session, req: Request) -> None:
    """GET /: the login form, or the user's desktops."""
    user = _user_or_login(session, req)
    if user is None:
        return
    desktops = session.db.fetch(DESKTOPS, {"user": user.user_id})
    respond_page(session, 200, "desktops.html", user=user, desktops=desktops,
                 serving=session.node_serving())


def log_in(session, req: Request) -> None:
    """POST /portal/login: the password through the tenant's chain; a token in the cookie."""
    form = _require_form(req)
    login, password = form.get("login", "").strip(), form.get("password", "")
    if not login or not password:
        return login_page(session, 422, "Give your login (name@tenant) and your password.")
    basic = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
    try:
        user = session.authenticate(f"Basic {basic}")
    except HttpError as exc:
        if exc.status not in (401, 503):
            raise
        return login_page(session, exc.status, exc.message.strip().rstrip(".") + ".",
                          [h for h in exc.headers if h[0] == "Retry-After"])
    cfg = session.cfg  # the user's tenant's settings, now
    if "token" not in chain(cfg):
        return login_page(session, 403, "Browser sessions are not enabled for your tenant "
                                        "(its authentication chain has no token plugin).")
    token = tokens.create(session.db, cfg, user.user_id)
    redirect(session, "/", [set_cookie(token, cfg.get_int("l7r.auth.token.lifetime"))])


def log_out(session, req: Request) -> None:
    """POST /portal/logout: the token is revoked, not only forgotten by the browser."""
    _require_form(req)
    token = portal_token(req)
    if token is not None:
        session.db.execute("DELETE FROM user_tokens WHERE token_hash = %(hash)s",
                           {"hash": tokens.token_hash(token)})
    redirect(session, "/", [clear_cookie()])


def stop(session, req: Request) -> None:
    """POST /portal/stop (id=N): ask the user's VM to stop; back to the list, which follows."""
    form = _require_form(req)
    user = require_portal_user(session, req)
    session.require_serving()
    vm = owned_vm(session, user, vm_id_of(Request("POST", req.path, list(form.items()), {})),
                  claim=False)  # a pool's entry: stopping hands out nothing
    vm_commands.stop(session.db, vm["id"])
    redirect(session, "/")


def desktop(session, req: Request) -> None:
    """GET /portal/desktop?id=N: the browser client's page for one of the user's desktops."""
    user = _user_or_login(session, req)
    if user is None:
        return
    try:
        vm_id = vm_id_of(req)
        vm_id = pools.page_id(session, user, -vm_id) if vm_id < 0 else \
            owned_vm(session, user, vm_id)["id"]
    except HttpError as exc:
        return respond_page(session, exc.status, "message.html", user=user,
                            message=exc.message.strip())
    name = next((d["name"] for d in session.db.fetch(DESKTOPS, {"user": user.user_id})
                 if d["id"] == vm_id), "")
    respond_page(session, 200, "desktop.html", user=user, vm_id=vm_id, name=name)


def desktops_json(session, req: Request) -> None:
    """GET /portal/desktops.json: what the pages poll (states, expirations)."""
    user = require_portal_user(session, req)
    rows = session.db.fetch(DESKTOPS, {"user": user.user_id})
    session.http.respond(200, json.dumps(rows), HEADERS, content_type="application/json")
