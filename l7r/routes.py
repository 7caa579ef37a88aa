"""Which handler answers a request: the QVD protocol's GET /qvd/* endpoints, and the browser
portal's pages, forms, files and tunnel when l7r.portal.enabled."""
from __future__ import annotations

from . import portal
from .endpoints import ENDPOINTS
from .http import HttpError, Request

QVD = {("GET", path): handler for path, handler in ENDPOINTS.items()}
WITH_PORTAL = {**QVD, **portal.ROUTES}


def handler_for(req: Request, portal_enabled: bool):
    routes = WITH_PORTAL if portal_enabled else QVD
    handler = routes.get((req.method, req.path))
    if handler is not None:
        return handler
    if portal_enabled and req.method == "GET":
        for prefix, handler in portal.PREFIXES.items():
            if req.path.startswith(prefix):
                return handler
    allowed = sorted(method for method, path in routes if path == req.path)
    if allowed:
        raise HttpError(405, "Method Not Allowed\n", [("Allow", ", ".join(allowed))])
    if req.method not in ("GET", "POST"):
        raise HttpError(405, "Method Not Allowed\n", [("Allow", "GET")])
    raise HttpError(404, "Not Found\n")
