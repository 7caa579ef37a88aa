"""qvd-api for real: a qvd-api process over TLS against the test database. Logins and
tokens, listings with filters and pages, tenants kept apart, roles enforced, actions that
write the node's command and the audit log, bad requests as problem details, DI uploads
whole or not at all, QVD's /api action form, the checked-in OpenAPI document."""
import json
import os
import socket
import time

import pytest

from qvd.api.resources import RESOURCES
from qvd.db.config import Config

from admins import PASSWORD, make_admin
from api_server import ApiProcess
from conftest import make_host_running

ROOT = "root@*"
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def api(demo, tmp_path):
    server = ApiProcess(demo, tmp_path)
    yield server
    server.stop()


def problem(reply, status: int) -> str:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["status"] == status and body["title"]
    return body["detail"]


def last_entry(demo, obj: str):
    return demo.sql("SELECT who, action, status, source, host(client_address), error "
                    "FROM admin_log WHERE object = :o ORDER BY id DESC LIMIT 1", o=obj)[0]


def test_logins_tokens_and_logout(demo, api):
    make_admin(demo, ROOT, "Root")
    wrong = api.call("POST", "/api/v1/login", {"login": ROOT, "password": "not-it"})
    assert "name, password or TOTP code is wrong" in problem(wrong, 401)
    assert last_entry(demo, "admin") == (ROOT, "login", "refused", "api", "127.0.0.1",
                                         "wrong password")
    assert "log in first" in problem(api.call("GET", "/api/v1/vms"), 401)
    token = api.login(ROOT, PASSWORD)
    assert [vm["name"] for vm in api.call("GET", "/api/v1/vms", token=token).json()["rows"]] \
        == ["desk"]
    assert api.call("POST", "/api/v1/logout", token=token).status == 200
    assert "log in first" in problem(api.call("GET", "/api/v1/vms", token=token), 401)
    demo.ok("admin", "block", "-f", "name=root", "-t", "*")
    blocked = api.call("POST", "/api/v1/login", {"login": ROOT, "password": PASSWORD})
    assert "is blocked" in problem(blocked, 401)
    (whole,), = demo.sql("SELECT string_agg(l::text, ' ') FROM admin_log l")
    assert PASSWORD not in whole


def test_the_web_tool_s_cookie_carries_the_token(demo, api):
    make_admin(demo, ROOT, "Root")
    reply = api.call("POST", "/api/v1/login", {"login": ROOT, "password": PASSWORD})
    cookie = reply.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert cookie.startswith(f"qvd_api_token={reply.json()['token']};")
    jar = {"Cookie": cookie.split(";")[0]}
    assert api.call("GET", "/api/v1/vms", headers=jar).status == 200


def test_an_expired_token_is_refused(demo, api):
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    assert api.call("GET", "/api/v1/vms", token=token).status == 200
    # Its lifetime is over (set in the table, rather than waited for).
    demo.sql("UPDATE admin_tokens SET expires_at = now() - interval '1 second'")
    assert "log in first" in problem(api.call("GET", "/api/v1/vms", token=token), 401)


def test_failed_logins_back_off_like_the_l7r_s(demo, api):
    make_admin(demo, ROOT, "Root")
    limit = Config().get_int("l7r.auth.backoff.max_failures")  # the test node keeps the default
    for _ in range(limit):
        problem(api.call("POST", "/api/v1/login", {"login": ROOT, "password": "not-it"}), 401)
    # Past the limit even the right password is not checked.
    held = api.call("POST", "/api/v1/login", {"login": ROOT, "password": PASSWORD})
    assert "too many failed logins" in problem(held, 429)
    assert held.headers["retry-after"]
    assert last_entry(demo, "admin")[:5] == (ROOT, "login", "refused", "api", "127.0.0.1")


def test_a_token_dies_with_its_administrator_s_block(demo, api):
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    demo.ok("admin", "block", "-f", "name=root", "-t", "*")
    assert "is blocked" in problem(api.call("GET", "/api/v1/vms", token=token), 401)


def test_listing_filters_orders_and_pages(demo, api):
    make_admin(demo, ROOT, "Root")
    demo.ok("vm", "add", "-t", "acme", "name=lab", "user=alice", "osf=desktop", "bulk=12")
    token = api.login(ROOT, PASSWORD)
    page = api.call("GET", "/api/v1/vms?name=lab-*&order_by=-name&offset=5&limit=5",
                    token=token).json()
    assert page["total"] == 12 and page["offset"] == 5 and page["limit"] == 5
    everything = sorted((f"lab-{n}" for n in range(1, 13)), reverse=True)
    assert [vm["name"] for vm in page["rows"]] == everything[5:10]
    one = api.call("GET", "/api/v1/vms/1", token=token).json()
    assert one["name"] == "desk" and one["user"] == "alice" and one["tenant"] == "acme"
    assert "no vm 999" in problem(api.call("GET", "/api/v1/vms/999", token=token), 404)
    assert "cannot order" in problem(api.call("GET", "/api/v1/vms?order_by=nope",
                                              token=token), 422)


def test_every_resource_lists_with_a_total(demo, api):
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    unpaged = []
    for resource in RESOURCES:
        reply = api.call("GET", f"/api/v1/{resource}?limit=2", token=token)
        assert reply.status == 200, (resource, reply.body)
        page = reply.json()
        assert page["total"] >= len(page["rows"]), resource
        if len(page["rows"]) > 2:
            unpaged.append(resource)
    assert unpaged == []


def test_properties_through_the_api(demo, api):
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    set_ = api.call("POST", "/api/v1/vms/1/propset", {"colour": "blue"}, token=token)
    assert set_.json() == {"message": "1 propert(ies) set on 1 vm(s)"}
    got = api.call("POST", "/api/v1/vms/1/propget", {}, token=token).json()
    assert [(row["key"], row["value"]) for row in got["rows"]] == [("colour", "blue")]
    api.call("POST", "/api/v1/vms/1/propdel", {"colour": ""}, token=token)
    assert api.call("POST", "/api/v1/vms/1/propget", {}, token=token).json()["rows"] == []


def test_pools_through_the_api(demo, api):
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    made = api.call("POST", "/api/v1/pools?tenant=acme",
                    {"name": "lab", "osf": "desktop", "min": 0, "spare": 0, "max": 3,
                     "assignment": "throwaway"}, token=token)
    assert made.status == 201, made.body
    (pool,) = api.call("GET", "/api/v1/pools?name=lab", token=token).json()["rows"]
    assert (pool["max"], pool["assignment"], pool["vms"]) == (3, "throwaway", 0), pool
    members = api.call("POST", f"/api/v1/pools/{pool['id']}/members",
                       {"add": "alice", "add_group": "designers"}, token=token).json()
    assert [(row["login"], row["via"]) for row in members["rows"]] == [
        (None, "group designers"), ("alice", "user")], members  # nobody of it logged in yet
    assert api.call("PATCH", f"/api/v1/pools/{pool['id']}", {"max": 5}, token=token).status \
        == 200
    assert api.call("GET", f"/api/v1/pools/{pool['id']}", token=token).json()["max"] == 5
    refused = api.call("PATCH", f"/api/v1/pools/{pool['id']}", {"max": 0}, token=token)
    assert problem(refused, 422) == "max must be positive, got '0'"
    assert api.call("DELETE", f"/api/v1/pools/{pool['id']}", token=token).status == 200
    assert demo.sql("SELECT count(*) FROM pools") == [(0,)]
    assert last_entry(demo, "pool")[:4] == (ROOT, "del", "ok", "api")


def test_a_tenant_administrator_sees_and_touches_only_its_tenant(demo, api):
    demo.ok("tenant", "add", "name=beta")
    demo.ok("user", "add", "-t", "beta", "login=bob")
    demo.ok("osf", "add", "-t", "beta", "name=desktop")
    demo.ok("vm", "add", "-t", "beta", "name=other", "user=bob", "osf=desktop")
    (beta_vm,), = demo.sql("SELECT id FROM vms WHERE name = 'other'")
    make_admin(demo, "ops@acme", "Operator L3")
    make_admin(demo, ROOT, "Root")
    ops, root = api.login("ops@acme", PASSWORD), api.login(ROOT, PASSWORD)
    assert problem(api.call("GET", f"/api/v1/vms/{beta_vm}", token=ops), 404)
    assert [vm["name"] for vm in api.call("GET", "/api/v1/vms?name=*", token=ops).json()[
        "rows"]] == ["desk"]
    assert problem(api.call("GET", "/api/v1/vms?tenant=beta", token=ops), 404)
    assert problem(api.call("POST", f"/api/v1/vms/{beta_vm}/block", {}, token=ops), 404)
    api.call("POST", "/api/v1/vms/block", {"filters": {"name": "*"}}, token=ops)
    assert demo.sql("SELECT v.name, r.blocked FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id "
                    "ORDER BY v.name") == [("desk", True), ("other", False)]
    assert api.call("GET", f"/api/v1/vms/{beta_vm}", token=root).json()["tenant"] == "beta"


def _held(demo, role: str) -> set[str]:
    return {acl["name"] for acl in json.loads(demo.ok("acl", "list", "-f", f"role={role}",
                                                      "--json"))}


def test_roles_decide_what_an_administrator_may_do(demo, api):
    assert "vm.update.block" not in _held(demo, "Operator L1")
    assert "vm.update.block" in _held(demo, "Operator L2")
    make_admin(demo, "reader@acme", "Operator L1")
    make_admin(demo, "operator@acme", "Operator L2")
    reader, operator = api.login("reader@acme", PASSWORD), api.login("operator@acme", PASSWORD)
    assert api.call("GET", "/api/v1/vms", token=reader).status == 200
    refused = api.call("POST", "/api/v1/vms/1/block", {}, token=reader)
    assert "needs the ACL vm.update.block" in problem(refused, 403)
    assert last_entry(demo, "vm")[:5] == ("reader@acme", "block", "refused", "api",
                                          "127.0.0.1")
    assert api.call("POST", "/api/v1/vms/1/block", {}, token=operator).status == 200
    assert demo.sql("SELECT blocked FROM vm_runtimes WHERE vm_id = 1") == [(True,)]


def test_start_and_stop_write_the_node_command_and_the_audit_log(demo, api):
    host_id = make_host_running(demo, "node1")
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    started = api.call("POST", "/api/v1/vms/1/start", {}, token=token)
    assert started.json() == {"message": "start sent to 1 vm(s): 1"}
    assert demo.sql("SELECT host_id, vm_cmd FROM vm_runtimes WHERE vm_id = 1") == [
        (host_id, "start")]
    assert last_entry(demo, "vm") == (ROOT, "start", "ok", "api", "127.0.0.1", None)
    again = api.call("POST", "/api/v1/vms/1/start", {}, token=token)
    assert "is already starting" in problem(again, 409)
    api.call("POST", "/api/v1/vms/1/stop", {}, token=token)
    assert demo.sql("SELECT host_id, vm_cmd FROM vm_runtimes WHERE vm_id = 1") == [
        (None, None)]


def test_bad_requests_are_problem_details_and_change_nothing(demo, api):
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    before = demo.snapshot()
    assert "not valid JSON" in problem(api.call("POST", "/api/v1/login", raw=b"{nope"), 422)
    assert "extra" in problem(api.call("POST", "/api/v1/login", {
        "login": ROOT, "password": PASSWORD, "role": "Root"}), 422).lower()
    assert problem(api.call("POST", "/api/v1/vms", {"name": {"nested": 1}}, token=token), 422)
    assert "unknown key 'colour'" in problem(api.call("PATCH", "/api/v1/vms/1",
                                                      {"colour": "red"}, token=token), 422)
    assert "no resource 'printers'" in problem(api.call("GET", "/api/v1/printers",
                                                        token=token), 404)
    assert "only qvd-admin on the node" in problem(api.call(
        "POST", "/api/v1/dis", {"path": "/etc/shadow", "osf": "desktop"}, token=token), 422)
    demo.take_failed_changes()
    after = demo.snapshot()
    after.pop("admin_tokens"), before.pop("admin_tokens")
    assert after == before


def _images(demo) -> list[str]:
    return sorted(os.listdir(os.path.join(demo.storage, "images")))


def _cut_upload(api, token: str, sent: bytes, announced: int) -> None:
    """An upload whose client goes away after `sent` of `announced` bytes."""
    raw = socket.create_connection(("127.0.0.1", api.port))
    with api.context.wrap_socket(raw) as tls:
        tls.sendall((f"PUT /api/v1/dis/upload?osf=desktop&tenant=acme&version=cut HTTP/1.1\r\n"
                     f"Host: qvd\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Length: {announced}\r\n\r\n").encode() + sent)


def test_di_uploads_land_whole_or_not_at_all(demo, api):
    make_admin(demo, ROOT, "Root")
    token = api.login(ROOT, PASSWORD)
    before = _images(demo)
    _cut_upload(api, token, b"x" * 4096, 100_000)
    deadline = time.monotonic() + 20
    while not demo.sql("SELECT 1 FROM admin_log WHERE object = 'di' AND status = 'failed'"):
        assert time.monotonic() < deadline, "the cut upload was never recorded"
        time.sleep(0.05)  # polling the audit log for the server's verdict
    assert "of 100000 bytes" in last_entry(demo, "di")[5]
    assert _images(demo) == before and demo.sql("SELECT count(*) FROM dis") == [(1,)]
    too_big = api.call("PUT", "/api/v1/dis/upload?osf=desktop&tenant=acme", token=token,
                       raw=b"y" * (2**20 + 1))
    assert "larger than api.upload.max_size" in problem(too_big, 413)
    whole = api.call("PUT", "/api/v1/dis/upload?osf=desktop&tenant=acme&version=v2&name=new.tar",
                     token=token, raw=b"image v2")
    assert whole.status == 201, whole.body
    (path,), = demo.sql("SELECT path FROM dis WHERE version = 'v2'")
    with open(os.path.join(demo.storage, "images", path), "rb") as image:
        assert image.read() == b"image v2"
    assert not [name for name in _images(demo) if name.endswith(".part")]


def test_qvd_api_action_form(demo, api):
    make_host_running(demo, "node1")
    make_admin(demo, "root@*", "Root")
    make_admin(demo, "reader@acme", "Operator L1")
    listed = api.call("POST", "/api", {"login": "root", "tenant": "*", "password": PASSWORD,
                                       "action": "vm_get_list",
                                       "filters": {"name": {"~": "de%"}}}).json()
    assert listed["status"] == 0 and listed["total"] == 1 and listed["sid"]
    assert listed["rows"][0]["name"] == "desk" and listed["rows"][0]["user_name"] == "alice"
    sid = listed["sid"]

    def act(body):
        reply = api.call("POST", "/api", {"sid": sid, **body})
        assert reply.status == 200  # as QVD: the status is in the body
        return reply.json()
    assert act({"action": "vm_start", "filters": {"id": 1}})["status"] == 0
    assert demo.sql("SELECT vm_cmd FROM vm_runtimes WHERE vm_id = 1") == [("start",)]
    (alice, osf), = demo.sql("SELECT u.id, o.id FROM users u, osfs o")
    created = act({"action": "vm_create", "arguments": {"name": "two", "user_id": alice,
                                                        "osf_id": osf}})
    assert created["status"] == 0, created
    assert act({"action": "user_update", "filters": {"name": "alice"},
                "arguments": {"blocked": 1}})["status"] == 0
    assert demo.sql("SELECT login, blocked FROM users") == [("alice", True)]
    page = act({"action": "vm_get_list", "order_by": {"field": ["name"], "order": "-desc"},
                "offset": 1, "block": 1})
    assert page["total"] == 2 and [vm["name"] for vm in page["rows"]] == ["two"]
    assert act({"action": "vm_reboot"})["status"] == 4100
    assert act({"action": "vm_get_list", "filters": {"-or": [{"id": 1}]}})["status"] == 6210
    expired = api.call("POST", "/api", {"sid": "not-a-session", "action": "vm_get_list"})
    assert expired.json()["status"] == 3300
    assert api.call("POST", "/api", raw=b"{oops").json()["status"] == 6100
    reader = api.call("POST", "/api", {"login": "reader@acme", "password": PASSWORD,
                                       "action": "vm_stop", "filters": {"id": 1}}).json()
    assert reader["status"] == 4210 and "vm.update.state" in reader["additional_info"]


def test_the_served_openapi_document_is_the_checked_in_one(api):
    served = api.call("GET", "/api/v1/openapi.json").json()
    with open(os.path.join(HERE, "..", "docs", "openapi.json"), encoding="utf-8") as handle:
        assert served == json.load(handle), \
            "regenerate: python -m qvd.api.openapi > docs/openapi.json"
