"""The WAT's live updates for real: a qvd-api process over TLS, its /wat/events streams read
as a browser's EventSource would, and changes written straight into the database as the
node and the L7R write them. Each administrator gets what it may list: its own tenant's
objects, the listings its role grants; a stream outlives a database restart."""
import asyncio
import http.client
import os
import signal
import stat
import sys

import psycopg
import pytest

from qvd.db.acl.actor import local_actor
from qvd.db.config import Config
from qvd.db.engine import L7R_ROLE
from qvd.db.ops.context import Context
from qvd.db.ops.context import Request as OpRequest

import api_server
from admins import PASSWORD
from api_server import ApiProcess
from conftest import L7R_PASSWORD
from qvd.wat import live

# qvd-api itself, with the live part added until api/app.py mounts the WAT (then, as is).
LAUNCHER = """#!{python}
from qvd.api import app as api_app, main
from qvd.wat import live

made = api_app.create_app


def create_app(cfg, engine):
    app = made(cfg, engine)
    if not any(getattr(route, "path", None) == "/wat/events" for route in app.routes):
        live.install(app)
    return app


main.create_app = create_app
main.main()
"""

OTHER_TENANT = """
INSERT INTO tenants (name) VALUES ('other');
INSERT INTO users (tenant_id, login) SELECT id, 'olga' FROM tenants WHERE name = 'other';
INSERT INTO osfs (tenant_id, name, memory) SELECT id, 'os', 256 FROM tenants WHERE name = 'other';
INSERT INTO vms (name, user_id, osf_id, ip) SELECT 'theirs', u.id, o.id, '10.9.9.9'
    FROM users u, osfs o WHERE u.login = 'olga' AND o.name = 'os';
INSERT INTO vm_runtimes (vm_id) SELECT id FROM vms WHERE name = 'theirs';
"""


@pytest.fixture
def api(demo, tmp_path, monkeypatch):
    launcher = tmp_path / "qvd-api-live"
    launcher.write_text(LAUNCHER.format(python=sys.executable))
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(api_server, "QVD_API", str(launcher))
    server = ApiProcess(demo, tmp_path)
    yield server
    server.stop()


def run(demo, operation: str, tenant: str | None = None, filters=None, **args) -> None:
    """A domain operation as the local superadmin, in this process (no qvd-admin start)."""
    Context(actor=local_actor(), cfg=Config(), engine=demo.engine).run(
        operation, OpRequest(filters=filters or {}, tenant=tenant, args=args))


def make_admin(demo, login: str, *roles: str) -> None:
    name, tenant = login.split("@")
    run(demo, "admin add", tenant, name=login, password=PASSWORD)
    run(demo, "admin role", tenant, {"name": name}, grant=",".join(roles))


class Stream:
    """GET /wat/events, parsed as the SSE format says (comments skipped)."""

    def __init__(self, api, token: str, cookie: bool = False):
        self.conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=api.context,
                                                timeout=30)  # a missing event fails the test
        self.conn.request("GET", "/wat/events", headers={"Cookie": f"qvd_api_token={token}"}
                          if cookie else {"Authorization": f"Bearer {token}"})
        self.reply = self.conn.getresponse()

    def event(self) -> tuple[str, str]:
        name, data = None, []
        while True:
            line = self.reply.readline()
            if not line:
                raise EOFError("the stream ended")
            line = line.decode().rstrip("\n").rstrip("\r")
            if not line:
                if name is not None or data:
                    return name or "message", "\n".join(data)
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)

    def until(self, name: str, data: str | None = None) -> dict[str, str]:
        """Events up to and including `name` (with that data), as name -> data."""
        seen = {}
        while True:
            event, value = self.event()
            seen[event] = value
            if event == name and (data is None or value == data):
                return seen

    def close(self) -> None:
        self.conn.close()


def ids(demo) -> dict[str, int]:
    return dict(demo.sql("SELECT name, id FROM vms UNION ALL SELECT 'node1', id FROM hosts"))


def test_a_stream_needs_a_token_and_takes_the_web_tool_s_cookie(demo, api):
    reply = api.call("GET", "/wat/events")
    assert reply.status == 401 and "log in first" in reply.json()["detail"]
    make_admin(demo, "root@*", "Root")
    stream = Stream(api, api.login("root@*", PASSWORD), cookie=True)  # as a browser sends it
    try:
        demo.sql("UPDATE vm_runtimes SET blocked = true")
        assert stream.until("vm-changed")[f"vm-{ids(demo)['desk']}-blocked"] == "yes"
    finally:
        stream.close()


def test_changes_reach_the_administrators_who_may_list_them(demo, api):
    demo.sql(OTHER_TENANT)
    run(demo, "role add", name="users-only")
    run(demo, "role acl", filters={"name": "users-only"},
        grant="user.see-main.,session.see-main.")
    make_admin(demo, "root@*", "Root")
    make_admin(demo, "ops@other", "Operator L3")
    make_admin(demo, "helpdesk@acme", "users-only")
    n = ids(demo)
    root, other, helpdesk = (Stream(api, api.login(login, PASSWORD))
                             for login in ("root@*", "ops@other", "helpdesk@acme"))
    try:
        assert root.reply.status == 200
        assert root.reply.headers["content-type"].startswith("text/event-stream")
        assert root.reply.headers["cache-control"] == "no-store"
        assert root.reply.headers["x-accel-buffering"] == "no"
        # The node takes the VM: its state and node, then one "changed" for the lists.
        demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'starting' WHERE vm_id = :v",
                 h=n["node1"], v=n["desk"])
        desk, node = f"vm-{n['desk']}", f"host-{n['node1']}"
        seen = root.until("vm-changed")
        assert (seen[f"{desk}-state"], seen[f"{desk}-host"]) == ("starting", "node1")
        assert seen[f"{node}-vms"] == "1"  # the node list's VM count
        assert seen["vm-changed"] == str(n["desk"])
        demo.sql("UPDATE vm_runtimes SET vm_state = 'running', last_error = :e "
                 "WHERE vm_id = :v", e="disk full\n<b>again</b>", v=n["desk"])
        assert root.until("vm-changed") == {f"{desk}-state": "running",
                                            f"{desk}-last_error":
                                                "disk full\n&lt;b&gt;again&lt;/b&gt;",
                                            "vm-changed": str(n["desk"])}
        # A huge error is cut for the notification; a huge name only loses the fields.
        demo.sql("UPDATE vm_runtimes SET last_error = repeat('x', 20000) WHERE vm_id = :v",
                 v=n["desk"])
        assert root.until("vm-changed")[f"{desk}-last_error"] == "x" * 999 + "…"
        demo.sql("INSERT INTO sessions (login, vm_name, host_name) "
                 "VALUES (repeat('y', 9000), 'desk', 'node1')")
        assert list(root.until("session-changed")) == ["session-rows", "session-changed"]

        # The other tenant's administrator: its own VM's change comes, acme's never came.
        demo.sql("UPDATE vm_runtimes SET blocked = true WHERE vm_id = :v", v=n["theirs"])
        seen = other.until("vm-changed", str(n["theirs"]))
        assert seen == {f"vm-{n['theirs']}-blocked": "yes", "vm-changed": str(n["theirs"])}

        # Without the VM listing's ACL: a session (which it may list) comes, no VM change.
        demo.sql("INSERT INTO sessions (user_id, login, vm_id, vm_name, host_id, host_name) "
                 "SELECT u.id, 'alice', :v, 'desk', :h, 'node1' FROM users u "
                 "WHERE u.login = 'alice'", v=n["desk"], h=n["node1"])
        seen = helpdesk.until("session-changed")
        assert not [event for event in seen if event.startswith(("vm-", "host-"))], seen
        assert seen[next(e for e in seen if e.endswith("-vm"))] == "desk"
    finally:
        for stream in (root, other, helpdesk):
            stream.close()


def test_the_l7r_s_writes_still_pass_and_are_pushed(demo, api):
    """The L7R's own role writes vm_runtimes and sessions; their triggers read vms, users
    and hosts with its rights."""
    make_admin(demo, "root@*", "Root")
    n = ids(demo)
    stream = Stream(api, api.login("root@*", PASSWORD))
    try:
        with psycopg.connect(**dict(demo.params, user=L7R_ROLE, password=L7R_PASSWORD),
                             autocommit=True) as l7r:
            l7r.execute("UPDATE vm_runtimes SET l7r_host_id = %s, l7r_pid = %s, "
                        "user_state = 'connected' WHERE vm_id = %s",
                        (n["node1"], os.getpid(), n["desk"]))
            l7r.execute("INSERT INTO sessions (user_id, login, vm_id, vm_name, host_id, "
                        "host_name) SELECT id, 'alice', %s, 'desk', %s, 'node1' FROM users "
                        "WHERE login = 'alice'", (n["desk"], n["node1"]))
            l7r.execute("UPDATE sessions SET ended_at = now(), end_reason = 'closed'")
        assert stream.until("vm-changed")[f"vm-{n['desk']}-user_state"] == "connected"
        started = stream.until("session-changed")
        assert [v for e, v in started.items() if e.endswith("-host")] == ["node1"]
        ended = stream.until("session-changed")
        assert [v for e, v in ended.items() if e.endswith("-end_reason")] == ["closed"]
    finally:
        stream.close()


def test_a_stream_outlives_a_database_restart(demo, api, pg_server):
    make_admin(demo, "root@*", "Root")
    n = ids(demo)
    stream = Stream(api, api.login("root@*", PASSWORD))
    try:
        pg_server.cluster.stop()
        pg_server.cluster.start()
        # Listening again: every list is told to refetch what it missed meanwhile.
        assert stream.until("vm-changed", "")["vm-changed"] == ""
        demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'starting' WHERE vm_id = :v",
                 h=n["node1"], v=n["desk"])
        assert stream.until("vm-changed", str(n["desk"]))[f"vm-{n['desk']}-state"] == "starting"
    finally:
        stream.close()


def test_qvd_api_stops_with_streams_open(demo, api):
    """uvicorn's graceful stop waits for every open response: the streams end first."""
    make_admin(demo, "root@*", "Root")
    streams = [Stream(api, api.login("root@*", PASSWORD)) for _ in range(2)]
    api.process.send_signal(signal.SIGTERM)
    for stream in streams:
        with pytest.raises(EOFError):
            stream.event()
        stream.close()  # as a browser's EventSource does at the end (TLS close_notify)
    assert api.process.wait(timeout=30) in (0, -signal.SIGTERM)


def test_a_revoked_token_s_stream_ends_at_the_next_keep_alive(demo, api):
    make_admin(demo, "root@*", "Root")
    stream = Stream(api, api.login("root@*", PASSWORD))
    try:
        demo.sql("DELETE FROM admin_tokens")  # what logging out elsewhere does
        with pytest.raises(EOFError):  # within one keep-alive (15 s) of the 30 s timeout
            stream.event()
    finally:
        stream.close()


def test_a_stream_that_falls_behind_is_dropped_not_grown():
    async def publish():
        hub = live.Hub()
        slow, keeping_up = hub.subscribe(), hub.subscribe()
        for number in range(live.QUEUE_SIZE + 1):
            hub.publish({"k": "vm", "id": number, "t": 1, "f": {}})
            assert keeping_up.get_nowait()["id"] == number
        assert hub.queues == {keeping_up}
        assert slow.get_nowait() is live._END and slow.empty()  # its stream ends
    asyncio.run(publish())
