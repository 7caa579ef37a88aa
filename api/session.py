"""Who acts on a request: the bearer token (Authorization header, or the HttpOnly cookie the
web tool carries) turned into the administrator, and the domain layer's Context for it."""
from __future__ import annotations

from fastapi import Request

from qvd.db.ops.context import Context

from .auth import COOKIE, actor_for


def token_of(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def acting(request: Request) -> Context:
    state = request.app.state
    actor = actor_for(state.engine, token_of(request))
    return Context(actor=actor, cfg=state.cfg, engine=state.engine, source="api",
                   client_address=client_address(request))
