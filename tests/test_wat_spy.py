"""Watching a user's desktop for support (vm spy) through a real qvd-api, against a real node
(process backend, real Xvnc with an xterm) whose user is connected through the L7R: view
only means nothing the watcher sends reaches the desktop; interactive needs the stronger
ACL; the user's session goes on throughout; every refusal is the defined one."""
from __future__ import annotations

import os
import struct
import uuid

import pytest

from admins import PASSWORD, make_admin
from api_server import ApiProcess
from hkd_nodes import l7r_node, wait_for
from portal_client import WebSocket
from qvd.api.auth import COOKIE
from qvd.client import rfb
from test_l7r import open_desktop

RETURN = 0xff0d
IN_TERMINAL = (60, 60)  # no window manager: the keys go to the window under the pointer


@pytest.fixture
def cluster(demo, tmp_path):
    node = l7r_node(demo, tmp_path)
    api = ApiProcess(demo, tmp_path)
    yield node, api
    api.stop()
    node.cleanup()


def keys(text: str) -> bytes:
    out = b""
    for char in text:
        keysym = RETURN if char == "\n" else ord(char)
        out += struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym)
    return out


def pointer_to_terminal() -> bytes:
    return struct.pack(">BBHH", 5, 0, *IN_TERMINAL)


def watch(api: ApiProcess, token: str | None, interactive: bool = False, origin="self"):
    return WebSocket(api.port, "/wat/vms/1/spy/tunnel" + ("?interactive=1" if interactive
                                                          else ""),
                     cookie=token, origin=origin, cookie_name=COOKIE)


def refusal(ws: WebSocket) -> tuple[int, str]:
    (said, closed) = ws.messages_until_ready()
    assert closed["closed"] == 4000 + said["status"]
    return said["status"], said["error"]


def viewer(sock, early: bytes = b"") -> tuple[rfb.Stream, int, int]:
    stream = rfb.Stream(sock, early)
    width, height = rfb.handshake(stream, sock)
    return stream, width, height


def one_update(stream: rfb.Stream, sock, width: int, height: int) -> None:
    """A whole-screen update asked for and read: what was sent before it was handled."""
    rfb._request(sock, width, height, incremental=False)
    while (kind := stream.read(1)[0]) != 0:
        rfb._skip_message(stream, kind)
    rfb._apply_update(stream, bytearray(width * height * 4), width)


def test_watching_a_desktop(demo, cluster):
    node, api = cluster
    make_admin(demo, "watcher@acme", "Operator L2")  # vm.spy, not vm.spy.interactive
    make_admin(demo, "helper@acme", "Operator L3")   # both
    make_admin(demo, "reader@acme", "Operator L1")   # neither
    watcher, helper, reader = (api.login(f"{name}@acme", PASSWORD)
                               for name in ("watcher", "helper", "reader"))

    # Refused: a stopped VM; no ACL; interactive without its ACL; no login; another site.
    with watch(api, watcher) as ws:
        status, error = refusal(ws)
        assert status == 409 and "only a running desktop can be watched" in error
    conn, reply, banner = open_desktop((node.port, node.cert))
    with conn:
        assert reply.status == 101
        user, width, height = viewer(conn.sock, banner)
        with watch(api, reader) as ws:
            assert refusal(ws)[0] == 403
        with watch(api, watcher, interactive=True) as ws:
            status, error = refusal(ws)
            assert status == 403 and "vm.spy.interactive" in error
        for token, origin in ((None, "self"), (watcher, "https://evil.example")):
            with watch(api, token, origin=origin) as ws:
                assert ws.status == 403
        page = api.call("GET", "/wat/vms/1/spy", headers={"Cookie": f"{COOKIE}={watcher}"})
        assert page.status == 200 and b"watching (view only)" in page.body
        assert api.call("GET", "/wat/vms/1/spy",
                        headers={"Cookie": f"{COOKIE}={reader}"}).status == 403

        # View only: the watcher sees the screen; its pointer and keys reach nothing.
        ignored, typed = (f"/tmp/qvd-spy-{kind}-{uuid.uuid4().hex[:8]}"
                          for kind in ("ignored", "typed"))
        with watch(api, watcher) as ws:
            assert ws.messages_until_ready() == [{"ready": True}]
            stream, spy_width, spy_height = viewer(ws)
            assert (spy_width, spy_height) == (width, height)  # the user's screen
            ws.sendall(pointer_to_terminal() + keys(f"touch {ignored}\n"))
            one_update(stream, ws, spy_width, spy_height)
            ws.sendall(b"\x07")  # no RFB message: the stream ends, nothing else does
            assert ws.recv() == b"" and ws.closed == 1008
        assert demo.sql("SELECT action, who FROM admin_log WHERE object = 'vm' "
                        "ORDER BY id DESC LIMIT 1") == [("spy", "watcher@acme")]

        # Interactive, with vm.spy.interactive: the same keys run a command in the terminal.
        with watch(api, helper, interactive=True) as ws:
            assert ws.messages_until_ready() == [{"ready": True}]
            stream, spy_width, spy_height = viewer(ws)
            ws.sendall(pointer_to_terminal() + keys(f"touch {typed}\n"))
            try:
                wait_for(lambda: os.path.exists(typed), 20, "the helper's command to run")
                leaked = os.path.exists(ignored)  # typed first, on the same terminal
            finally:
                for mark in (typed, ignored):
                    if os.path.exists(mark):
                        os.unlink(mark)
        assert not leaked

        # The user's own session went on throughout: it still gets its screen and types.
        one_update(user, conn.sock, width, height)
        mine = f"/tmp/qvd-spy-user-{uuid.uuid4().hex[:8]}"
        conn.sock.sendall(pointer_to_terminal() + keys(f"touch {mine}\n"))
        try:
            wait_for(lambda: os.path.exists(mine), 20, "the user's command to run")
        finally:
            if os.path.exists(mine):
                os.unlink(mine)
        assert demo.sql("SELECT user_state FROM vm_runtimes WHERE vm_id = 1") == [("connected",)]
