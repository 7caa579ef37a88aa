"""The browser portal on a real node's L7R (process backend, real Xvnc), from the outside: the
login form and its cookie, the desktops list, the WebSocket tunnel carrying the real RFB
stream, and what a hostile browser or script tries (wrong password, foreign VM, missing or
forged cookie, another site's pages, bad frames, paths out of the static folders)."""
from __future__ import annotations

import struct

import pytest

from hkd_nodes import l7r_node, wait_for
from portal_client import WebSocket, http
from test_l7r import open_desktop

LOGIN = {"login": "alice@acme", "password": "secret"}


@pytest.fixture
def node(demo, tmp_path):
    hkd = l7r_node(demo, tmp_path)
    yield hkd
    hkd.cleanup()


def origin(node) -> dict:
    return {"Origin": f"https://127.0.0.1:{node.port}"}


def log_in(node, form=LOGIN) -> str:
    reply = http(node.port, "POST", "/portal/login", form, origin(node))
    assert reply.status == 303, reply.text
    return reply.cookies["qvd_portal"]


def vm_state(demo) -> tuple:
    return tuple(demo.sql("SELECT vm_state, user_state FROM vm_runtimes WHERE vm_id = 1")[0])


def test_login_cookie_and_desktops_list(demo, node):
    page = http(node.port, "GET", "/")
    assert page.status == 200 and 'action="/portal/login"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    wrong = http(node.port, "POST", "/portal/login", dict(LOGIN, password="nope"), origin(node))
    assert wrong.status == 401 and "Authentication failed." in wrong.text
    assert "qvd_portal" not in wrong.cookies

    login = http(node.port, "POST", "/portal/login", LOGIN, origin(node))
    assert login.status == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    token = login.cookies["qvd_portal"]
    listing = http(node.port, "GET", "/", headers={"Cookie": f"qvd_portal={token}"})
    assert listing.status == 200 and "desk" in listing.text and "alice@acme" in listing.text
    assert 'href="/portal/desktop?id=1"' in listing.text

    # Logging out revokes the token itself, not only the browser's copy.
    out = http(node.port, "POST", "/portal/logout", {}, dict(origin(node),
                                                            Cookie=f"qvd_portal={token}"))
    assert out.status == 303 and out.cookies["qvd_portal"] == ""
    again = http(node.port, "GET", "/", headers={"Cookie": f"qvd_portal={token}"})
    assert again.status == 401 and "Your session has ended" in again.text


def test_a_password_change_ends_the_portal_session(demo, node):
    token = log_in(node)
    demo.ok("user", "passwd", "login=alice@acme", input="changed\n")
    reply = http(node.port, "GET", "/portal/desktops.json",
                 headers={"Cookie": f"qvd_portal={token}"})
    assert reply.status == 401


def test_forms_from_another_site_are_refused(demo, node):
    evil = {"Origin": "https://evil.example"}
    assert http(node.port, "POST", "/portal/login", LOGIN, evil).status == 403
    token = log_in(node)
    stop = http(node.port, "POST", "/portal/stop", {"id": "1"},
                dict(evil, Cookie=f"qvd_portal={token}"))
    assert stop.status == 403
    # A script that sends no Origin at all is refused too: forms are for our pages only.
    assert http(node.port, "POST", "/portal/login", LOGIN).status == 403


def test_the_tunnel_carries_the_desktop(demo, node):
    token = log_in(node)
    with WebSocket(node.port, "/portal/tunnel?id=1&geometry=800x600", token) as ws:
        assert ws.status == 101
        said = ws.messages_until_ready()
        assert [m.get("progress") for m in said[:-1]] == [
            "Assigning VM to host", "Starting virtual machine",
            "Waiting for VM to reach state 'running'", "Starting X session",
            "Connecting X session", "Connection established"]
        assert said[-1] == {"ready": True, "vm": 1}
        assert ws.receive_bytes(12) == b"RFB 003.008\n"  # Xvnc in the VM, through the tunnel
        ws.send_bytes(b"RFB 003.008\n")
        assert ws.receive_bytes(1) >= b"\x01"  # its security types: it heard us
        assert vm_state(demo) == ("running", "connected")
    wait_for(lambda: demo.sql("SELECT end_reason, bytes_from_client FROM sessions") ==
             [("client closed", 12)], 15, "the session's end")


def test_refused_tunnels(demo, node):
    token = log_in(node)
    demo.ok("user", "add", "-t", "acme", "login=bob", "password=secret")
    demo.ok("vm", "add", "-t", "acme", "name=bobs", "user=bob", "osf=desktop")
    (bobs,), = demo.sql("SELECT id FROM vms WHERE name = 'bobs'")
    cases = {
        "no cookie": (None, "self", 1, 401),
        "forged cookie": ("A" * 43, "self", 1, 401),
        "another user's VM": (token, "self", bobs, 404),
        "no such VM": (token, "self", 999, 404),
        "another site": (token, "https://evil.example", 1, 403),
        "no Origin": (token, None, 1, 403),
    }
    for case, (cookie, site, vm, status) in cases.items():
        with WebSocket(node.port, f"/portal/tunnel?id={vm}", cookie, site) as ws:
            assert ws.status == status, case
    assert vm_state(demo) == ("stopped", "disconnected")  # nothing was started for them


def test_hostile_frames_end_only_their_own_stream(demo, node):
    token = log_in(node)
    with WebSocket(node.port, "/portal/tunnel?id=1", token) as ws:
        assert ws.messages_until_ready()[-1] == {"ready": True, "vm": 1}
        ws.receive_bytes(12)
        # A frame no browser sends: unmasked. The L7R closes with 1002 (protocol error).
        ws.sock.sendall(b"\x82\x05hello")
        closing = ws.next_event()
        assert getattr(closing, "code", None) == 1002
    # A frame that claims 2^40 bytes: passed on as it comes, never gathered in memory.
    with WebSocket(node.port, "/portal/tunnel?id=1", token) as ws:
        assert ws.messages_until_ready()[-1] == {"ready": True, "vm": 1}
        ws.receive_bytes(12)
        ws.sock.sendall(b"\x82\xff" + struct.pack("!Q", 1 << 40) + b"\0\0\0\0" + b"x" * 65536)
    # The node still serves: another connection gets its desktop at once.
    conn, reply, banner = open_desktop((node.port, node.cert))
    with conn:
        assert reply.status == 101 and banner == b"RFB 003.008\n"


def test_static_files_stay_in_their_folders(demo, node):
    reply = http(node.port, "GET", "/portal/novnc/core/rfb.js")  # noVNC from the npm package
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/javascript")
    assert b"export default class RFB" in reply.body
    for path in ("/portal/static/../cookie.py", "/portal/static/%2e%2e/cookie.py",
                 "/portal/novnc/../../../../etc/passwd", "/portal/novnc/%2e%2e/%2e%2e/setup.cfg",
                 "/portal/novnc/package.json", "/portal/static/"):
        assert http(node.port, "GET", path).status == 404, path


def test_a_pools_desktop_is_handed_out_by_its_tunnel_not_by_its_page(demo, node):
    """Opening a pool's entry: its page (a GET a browser may prefetch or reload) takes no VM;
    the desktop's tunnel does, and names the VM it handed out; the page then opens that VM."""
    demo.ok("pool", "add", "-t", "acme", "name=lab", "osf=desktop", "max=1")
    demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "add=alice")
    (pool,), = demo.sql("SELECT id FROM pools")
    cookie = {"Cookie": f"qvd_portal={log_in(node)}"}
    listing = http(node.port, "GET", "/", headers=cookie)
    assert f'href="/portal/desktop?id={-pool}"' in listing.text
    for _ in range(2):
        page = http(node.port, "GET", f"/portal/desktop?id={-pool}", headers=cookie)
        assert page.status == 200 and f'data-vm="{-pool}"' in page.text
    assert demo.sql("SELECT count(*) FROM vms WHERE pool_id IS NOT NULL") == [(0,)]
    stranger = http(node.port, "GET", f"/portal/desktop?id={-pool - 1}", headers=cookie)
    assert stranger.status == 404

    with WebSocket(node.port, f"/portal/tunnel?id={-pool}", cookie["Cookie"][11:]) as ws:
        ready = ws.messages_until_ready()[-1]
        (given,), = demo.sql("SELECT id FROM vms v WHERE pool_id IS NOT NULL AND user_id = "
                             "(SELECT id FROM users WHERE login = 'alice')")
        assert ready == {"ready": True, "vm": given}
        assert ws.receive_bytes(12) == b"RFB 003.008\n"
    page = http(node.port, "GET", f"/portal/desktop?id={-pool}", headers=cookie)
    assert f'data-vm="{given}"' in page.text  # a reload opens the VM now hers
