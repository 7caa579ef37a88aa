"""The WAT's pages: their routers, and how a missing login, a refusal or a cross-site post
is answered (as pages, not as the API's problem documents)."""
from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from . import dashboard, details, forms, lists, login, spy
from .web import LoginNeeded, PageError, is_htmx, page, render, same_origin, to_login


def install(app) -> None:
    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, exc: LoginNeeded):
        return to_login(request, exc.args[0] if exc.args else None)

    @app.exception_handler(PageError)
    async def _refused(request: Request, exc: PageError):
        if is_htmx(request):  # shown in the page's message area
            return render(request, "message.html", exc.status, error=exc.message)
        return page(request, None, "error.html", exc.status, error=exc.message)

    @app.middleware("http")
    async def _same_origin_posts(request: Request, call_next):
        path = request.url.path
        if (path.startswith("/wat/") and request.method not in ("GET", "HEAD")
                and not same_origin(request)):
            return HTMLResponse("cross-site request refused", status_code=403)
        reply = await call_next(request)
        if path.startswith("/wat") and not path.startswith(("/wat/static/", "/wat/vendor/")):
            # Administrators' data stays out of caches; and a page kept in the browser's
            # back-forward cache would keep its event stream open, and a browser opens six
            # connections to one HTTP/1.1 server at most.
            reply.headers["Cache-Control"] = "no-store"
        return reply

    @app.get("/wat", include_in_schema=False)
    def _root():
        return RedirectResponse("/wat/", status_code=307)

    for module in (login, dashboard, forms, spy, lists, details):
        app.include_router(module.router, include_in_schema=False)
