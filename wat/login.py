"""Logging in and out of the WAT: the API's own login (api/auth.py: password, TOTP, back-off,
tokens), its token kept in an HttpOnly, Secure, SameSite=Strict cookie for the whole site."""
from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from qvd.api import auth
from qvd.api.problems import Problem
from qvd.api.session import client_address, token_of

from .web import page

router = APIRouter(prefix="/wat")


@router.get("/login")
def login_form(request: Request, why: str | None = None):
    return page(request, None, "login.html", error=why)


@router.post("/login")
def log_in(request: Request, name: str = Form(""), tenant: str = Form(""),
           password: str = Form(""), totp: str = Form("")):
    state = request.app.state
    login = f"{name.strip()}@{tenant.strip()}" if tenant.strip() else name.strip()
    try:
        token, _expires = auth.log_in(state.engine, state.cfg, login, password,
                                      totp.strip() or None, client_address(request))
    except Problem as exc:
        return page(request, None, "login.html", status=exc.status, error=exc.detail,
                    name=name, tenant=tenant)
    reply = RedirectResponse("/wat/", status_code=303)
    reply.set_cookie(auth.COOKIE, token, httponly=True, secure=True, samesite="strict",
                     max_age=int(state.cfg.get_float("api.token.lifetime")), path="/")
    return reply


@router.post("/logout")
def log_out(request: Request):
    token = token_of(request)
    if token:
        auth.log_out(request.app.state.engine, token)
    reply = RedirectResponse("/wat/login?why=logged+out", status_code=303)
    reply.delete_cookie(auth.COOKIE, path="/")
    return reply
