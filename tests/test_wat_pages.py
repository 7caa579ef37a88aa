"""Every page of the WAT answers, for an administrator who may see everything and for one who
may only look: each list, each object's page, each form (served over TLS by a real qvd-api,
read as HTML). The browser tests (test_wat.py) check what the pages do; this one that none of
them fails."""
import http.client
import re

from qvd.db.ops import REGISTRY
from qvd.wat.catalog import DETAILED, FORM_VERBS
from qvd.wat.web import OBJECTS

from admins import PASSWORD, make_admin
from test_api import api  # noqa: F401  (api: a real qvd-api, the fixture)


def get(api, token: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=api.context, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": f"qvd_api_token={token}"})
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def first_id(body: str, resource: str) -> str | None:
    found = re.search(rf'href="/wat/{resource}/(\d+)"', body)
    return found.group(1) if found else None


def test_every_list_object_and_form_answers(demo, api):  # noqa: F811
    make_admin(demo, "root@*", "Root")
    demo.ok("vm", "propset", "-f", "name=desk", "-t", "acme", "room=B-12")
    demo.sql("INSERT INTO sessions (user_id, login, vm_id, vm_name, host_name) "
             "SELECT v.user_id, 'alice', v.id, v.name, 'node1' FROM vms v")
    token = api.login("root@*", PASSWORD)
    for resource, obj in OBJECTS.items():
        status, body = get(api, token, f"/wat/{resource}")
        assert status == 200, (resource, body[:300])
        if resource in DETAILED:
            key = first_id(body, resource)
            assert key, f"no row of {resource} links to its page"
            status, body = get(api, token, f"/wat/{resource}/{key}")
            assert status == 200, (resource, key, body[:300])
            for verb, _label in FORM_VERBS.get(resource, []):
                status, body = get(api, token, f"/wat/{resource}/{key}/do/{verb}")
                assert status == 200 and 'id="submit"' in body, (resource, verb)
        if f"{obj} add" in REGISTRY:
            status, body = get(api, token, f"/wat/{resource}/new")
            assert status == 200 and 'id="submit"' in body, resource
    status, body = get(api, token, "/wat/dis/upload")
    assert status == 200 and "upload-progress" in body


def test_a_read_only_administrator_gets_no_form(demo, api):  # noqa: F811
    make_admin(demo, "look@acme", "Operator L1")
    token = api.login("look@acme", PASSWORD)
    (vm,), = demo.sql("SELECT id FROM vms WHERE name = 'desk'")
    assert get(api, token, "/wat/vms")[0] == 200
    for path in ("/wat/vms/new", f"/wat/vms/{vm}/do/edit", "/wat/dis/upload",
                 "/wat/users/new"):
        status, body = get(api, token, path)
        assert status == 403 and "does not allow" in body, path
