"""qvd-api's /metrics for real: a qvd-api process over TLS (tests/api_server.py), its
requests, logins and ACL refusals counted by route template and result, the WAT's event
stream counted open and never timed, the endpoint closed to non-loopback clients without a
token, and a real Prometheus scraping it (the dashboard's qvd-api panels asked of it)."""
import collections
import http.client

import pytest
from prometheus_client.parser import text_string_to_metric_families

from admins import PASSWORD, make_admin
from api_server import ApiProcess
from hkd_nodes import wait_for
from test_metrics import check_dashboard, prometheus_for  # noqa: F401 - a fixture

ROOT = "root@*"
RESULTS = {200: "ok", 401: "refused", 429: "throttled"}
OUTSIDE = {"X-Forwarded-For": "203.0.113.7"}  # as a reverse proxy on this machine says


@pytest.fixture
def api(demo, tmp_path):
    server = ApiProcess(demo, tmp_path)
    yield server
    server.stop()


def samples(api, **call) -> dict:
    """{(sample name, frozenset(labels)): value} of qvd-api's /metrics."""
    reply = api.call("GET", "/metrics", **call)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.body.decode())
            for s in family.samples}


def count(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def wat_login(api, login: str, password: str) -> int:
    """The WAT's login form posted as a browser on its page posts it."""
    name, tenant = login.split("@")
    body = f"name={name}&tenant={tenant.replace('*', '%2A')}&password={password}"
    return api.call("POST", "/wat/login", raw=body.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": f"https://127.0.0.1:{api.port}"}).status


def test_requests_logins_and_refusals_by_route_and_result(demo, api, prometheus_for):
    prometheus = prometheus_for(f"127.0.0.1:{api.port}", job="qvd-api", https=True)
    make_admin(demo, ROOT, "Root")
    make_admin(demo, "reader@acme", "Operator L1")
    results = collections.Counter()

    def log_in(login: str, password: str) -> str | None:
        reply = api.call("POST", "/api/v1/login", {"login": login, "password": password})
        results[RESULTS[reply.status]] += 1
        return reply.json().get("token")
    log_in(ROOT, "no")
    root, reader = log_in(ROOT, PASSWORD), log_in("reader@acme", PASSWORD)
    assert wat_login(api, ROOT, PASSWORD) == 303
    results["ok"] += 1
    for vm in (1, 1, 999):  # three answers, one route
        api.call("GET", f"/api/v1/vms/{vm}", token=root)
    assert api.call("POST", "/api/v1/vms/1/block", {}, token=reader).status == 403
    # A cross-site post is refused before any endpoint: no ACL refusal, no login.
    assert api.call("POST", "/wat/login", raw=b"", headers={
        "Origin": "https://elsewhere.example"}).status == 403
    for _ in range(20):  # the back-off's limit counts the attempts from this address too
        log_in(ROOT, "no")
        if results["throttled"] == 2:
            break

    found = samples(api)
    assert results["refused"] >= 2 and results["throttled"] == 2
    assert {result: count(found, "qvd_api_logins_total", result=result)
            for result in RESULTS.values()} == results
    item = "/api/v1/{resource}/{key}"
    assert count(found, "qvd_api_requests_total", route=item, method="GET", status="200") == 2
    assert count(found, "qvd_api_requests_total", route=item, method="GET", status="404") == 1
    assert count(found, "qvd_api_request_seconds_count", route=item) == 3
    assert count(found, "qvd_api_requests_total", route="/wat/login", method="POST",
                  status="403") == 1
    refusals = {dict(labels)["route"]: value for (name, labels), value in found.items()
                if name == "qvd_api_acl_refusals_total"}
    assert refusals == {"/api/v1/{resource}/{key}/{verb}": 1}
    routes = {dict(labels).get("route") for (name, labels), _ in found.items()
              if name.startswith("qvd_api_")} - {None}
    assert not routes & {"/api/v1/vms/1", "/api/v1/vms/999", "/api/v1/vms/1/block"}, routes

    # Prometheus scrapes the same figures, and the dashboard's qvd-api panels parse.
    wait_for(lambda: prometheus.query('qvd_api_logins_total{result="throttled"}')
             == {frozenset({("result", "throttled")}): 2.0}, 30,
             "prometheus to see the throttled login")
    check_dashboard(prometheus, lambda expr: "qvd_api_" in expr)


def test_an_event_stream_is_counted_open_and_never_timed(demo, api):
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    stream = http.client.HTTPSConnection("127.0.0.1", api.port, context=api.context,
                                         timeout=30)
    stream.request("GET", "/wat/events", headers={"Authorization": f"Bearer {token}"})
    reply = stream.getresponse()
    assert reply.status == 200 and reply.headers["content-type"].startswith(
        "text/event-stream")
    try:
        found = samples(api)
        assert count(found, "qvd_api_event_streams") == 1
        assert count(found, "qvd_api_request_seconds_count", route="/wat/events") == 0
    finally:
        stream.close()

    def ended():
        now = samples(api)
        return (count(now, "qvd_api_event_streams") == 0 and now) or None
    found = wait_for(ended, 20, "qvd-api to see the stream end")
    assert count(found, "qvd_api_requests_total", route="/wat/events", method="GET",
                 status="200") == 1
    assert ("qvd_api_request_seconds_count", frozenset({("route", "/wat/events")})) \
        not in found


def test_only_loopback_clients_read_it_without_a_token(demo, api):
    refused = api.call("GET", "/metrics", headers=OUTSIDE)
    assert refused.status == 401 and "log in first" in refused.json()["detail"]
    assert b"qvd_api" not in refused.body
    assert api.call("GET", "/metrics", headers=OUTSIDE, token="not-a-token").status == 401
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    assert count(samples(api, headers=OUTSIDE, token=token), "qvd_api_logins_total",
                 result="ok") == 1
