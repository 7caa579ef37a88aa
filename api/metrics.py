"""qvd-api's Prometheus metrics: GET /metrics on qvd-api's own port, from a registry of its
own (not prometheus_client's global one, so several applications in one process, as the
tests make, do not share series).

Exported:
- qvd_api_requests_total{route, method, status}: every answer, the WAT's pages included;
- qvd_api_request_seconds{route}: from the request to its last byte (histogram);
- qvd_api_event_streams: Server-Sent Events streams open now (the WAT's /wat/events). A
  stream lasts as long as its page, so streams are counted here and never timed: they
  would fill the top bucket of the histogram and hide the requests;
- qvd_api_logins_total{result}: logins of the API and of the WAT, ok / refused / throttled;
- qvd_api_acl_refusals_total{route}: requests an endpoint refused with 403 Forbidden (the
  administrator's role lacks the ACL; the WAT's cross-site refusals, answered before any
  endpoint, are not ACL refusals and are only in the request counts).

Labels are bounded: `route` is the route's template (/api/v1/vms/{id}, never the raw path;
`unmatched` for a path no route has), methods outside the usual few are `other`.

Who may read it: clients on a loopback address without a token (the Prometheus of the node
itself, an SSH tunnel), anyone else with a valid administrator token (Authorization: Bearer,
as for the API). The figures hold no name or id, but login and refusal counts tell an
outsider whether a guessing attack is being noticed, and the route counts map the API's use:
not for the open network. A reverse proxy on this machine must send X-Forwarded-For (uvicorn
trusts it from 127.0.0.1), or everyone behind it counts as loopback.
"""
from __future__ import annotations

import ipaddress
import time

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)
from starlette.routing import Match, Mount

from .auth import actor_for
from .session import client_address, token_of

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
LOGIN_ROUTES = {"/api/v1/login", "/wat/login"}
LOGIN_RESULTS = ("ok", "refused", "throttled")
STREAM_TYPE = b"text/event-stream"


class ApiMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("qvd_api_requests", "Requests answered, by route template, "
                                "method and status", ["route", "method", "status"],
                                registry=self.registry)
        self.seconds = Histogram("qvd_api_request_seconds", "From a request to the last byte "
                                 "of its answer (event streams excluded)", ["route"],
                                 buckets=BUCKETS, registry=self.registry)
        self.streams = Gauge("qvd_api_event_streams", "Server-Sent Events streams open now",
                             registry=self.registry)
        self.logins = Counter("qvd_api_logins", "Administrators' logins (API and WAT), by "
                              "result", ["result"], registry=self.registry)
        self.refusals = Counter("qvd_api_acl_refusals", "Requests refused for a missing ACL "
                                "(403), by route template", ["route"], registry=self.registry)
        for result in LOGIN_RESULTS:  # rate() needs the zero
            self.logins.labels(result)

    def answered(self, route: str, method: str, status: int, routed: bool) -> None:
        self.requests.labels(route, method if method in METHODS else "other",
                             str(status)).inc()
        if route in LOGIN_ROUTES and method == "POST":
            result = "ok" if status < 400 else {401: "refused", 429: "throttled"}.get(status)
            if result:  # a malformed body (422) is no login attempt
                self.logins.labels(result).inc()
        if status == 403 and routed:
            self.refusals.labels(route).inc()


def route_of(app, scope: dict, before: dict) -> tuple[str, bool]:
    """(the route's template, whether an endpoint was reached). The router leaves its route
    in the scope; static mounts and paths refused before routing are matched here, on the
    scope as it came in (a mount rewrites root_path)."""
    route = scope.get("route")
    if route is not None:
        return route.path, True
    for candidate in app.router.routes:
        match, _ = candidate.matches(before)
        if match == Match.FULL:
            return (candidate.path + "/{path}" if isinstance(candidate, Mount)
                    else candidate.path), False
    return "unmatched", False


class Instrumented:
    """The ASGI application around the whole middleware stack, so every answer is counted:
    those of middlewares added after it (the WAT's cross-site check) and the 500s of
    exceptions nothing handled."""

    def __init__(self, inner, app: FastAPI, metrics: ApiMetrics):
        self.inner, self.app, self.metrics = inner, app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        before = {"type": "http", "path": scope["path"], "method": scope["method"],
                  "root_path": scope.get("root_path", "")}
        began, seen = time.perf_counter(), {"status": 500, "stream": False, "end": None}

        async def watching(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["stream"] = any(k == b"content-type" and v.startswith(STREAM_TYPE)
                                     for k, v in message.get("headers", ()))
                if seen["stream"]:
                    self.metrics.streams.inc()
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                seen["end"] = time.perf_counter()
            await send(message)

        try:
            await self.inner(scope, receive, watching)
        finally:
            route, routed = route_of(self.app, scope, before)
            self.metrics.answered(route, scope["method"], seen["status"], routed)
            if seen["stream"]:
                self.metrics.streams.dec()
            else:
                self.metrics.seconds.labels(route).observe(
                    (seen["end"] or time.perf_counter()) - began)


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def install(app: FastAPI) -> None:
    metrics = ApiMetrics()
    app.state.metrics = metrics
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: Instrumented(build(), app, metrics)

    @app.get("/metrics", include_in_schema=False)
    async def _metrics(request: Request):
        """Loopback clients without a token; others with an administrator's (Problem 401)."""
        if not _loopback(client_address(request)):
            await run_in_threadpool(actor_for, request.app.state.engine, token_of(request))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
