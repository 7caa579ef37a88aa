"""POST /api: QVD 4.2's API form (qvd_actions.py translates it onto the domain layer). As in
QVD, every answer is HTTP 200 with a numeric `status`; a request carrying `login` and
`password` (and `tenant`) opens a session whose id (`sid`, our bearer token) comes back, and
later requests carry `sid` (or the token as a header or cookie)."""
from __future__ import annotations

import json

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from qvd.db.ops.context import Context

from . import auth, qvd_actions
from .problems import Problem
from .session import client_address, token_of

router = APIRouter()


def _login(request: Request, body: dict) -> str:
    state = request.app.state
    login, tenant = str(body.pop("login")), body.pop("tenant", None)
    if tenant and "@" not in login:
        login = f"{login}@{tenant}"
    token, _ = auth.log_in(state.engine, state.cfg, login, str(body.pop("password", "")),
                           body.pop("totp", None), client_address(request))
    return token


def _serve(request: Request, body: dict) -> dict:
    state, opened = request.app.state, None
    try:
        if "login" in body:
            opened = _login(request, body)
        sid = opened or body.pop("sid", None) or token_of(request)
        if "action" not in body and opened:
            return {**qvd_actions.answer(qvd_actions.OK), "sid": opened}
        try:
            actor = auth.actor_for(state.engine, sid)
        except Problem as exc:
            return qvd_actions.answer(qvd_actions.SESSION_EXPIRED if sid else
                                      qvd_actions.NO_CREDENTIALS, exc.detail)
    except Problem as exc:
        status = {401: qvd_actions.WRONG_CREDENTIALS, 429: qvd_actions.WRONG_CREDENTIALS}
        return qvd_actions.answer(status.get(exc.status, qvd_actions.WRONG_CREDENTIALS),
                                  exc.detail)
    body.pop("sid", None)
    ctx = Context(actor=actor, cfg=state.cfg, engine=state.engine, source="api",
                  client_address=client_address(request))
    answer = qvd_actions.run(ctx, body)
    return {**answer, "sid": opened} if opened else answer


@router.post("/api")
async def qvd_api(request: Request):
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return qvd_actions.answer(qvd_actions.BAD_JSON)
    if not isinstance(body, dict):
        return qvd_actions.answer(qvd_actions.BAD_JSON, "the request must be a JSON object")
    return await run_in_threadpool(_serve, request, body)
