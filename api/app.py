"""The qvd-api application: login and logout, the resources (resources.py), DI uploads
(uploads.py), QVD's /api action form (compat.py), problem details for every error, and the
web administration tool (wat/)."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from qvd import wat

from . import auth, compat, metrics, problems, resources, uploads
from .session import client_address, token_of

VERSION = "1"


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str
    password: str
    totp: str | None = None


def create_app(cfg, engine) -> FastAPI:
    """cfg: the node's configuration with the database's global layer; engine: a pooled
    SQLAlchemy engine."""
    app = FastAPI(title="qvd-api", version=VERSION, openapi_url="/api/v1/openapi.json",
                  docs_url="/api/v1/docs", redoc_url=None,
                  description="Administration API of qvd: every operation of qvd-admin, "
                              "with the same filters and ACLs.")
    app.state.cfg, app.state.engine = cfg, engine
    problems.install(app)
    metrics.install(app)

    @app.post("/api/v1/login")
    def log_in(body: Login, request: Request):
        """A bearer token for the administrator (also set as an HttpOnly cookie)."""
        token, expires = auth.log_in(engine, cfg, body.login, body.password, body.totp,
                                     client_address(request))
        reply = JSONResponse({"token": token, "expires_at": expires.isoformat()})
        reply.set_cookie(auth.COOKIE, token, httponly=True, secure=True, samesite="strict",
                         max_age=int(cfg.get_float("api.token.lifetime")), path="/api")
        return reply

    @app.post("/api/v1/logout")
    def log_out(request: Request):
        token = token_of(request)
        if token:
            auth.log_out(engine, token)
        reply = JSONResponse({"message": "logged out"})
        reply.delete_cookie(auth.COOKIE, path="/api")
        return reply

    app.include_router(uploads.router)
    app.include_router(compat.router)
    app.include_router(resources.router)
    wat.install(app)  # the web administration tool under /wat/
    return app
