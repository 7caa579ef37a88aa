"""qvd-vma on its own, as the L7R and the HKD see it: real Xvnc, nxagent, nxproxy, Xvfb."""
import os
import socket
import stat
import subprocess
import urllib.request

import pytest

from hkd_nodes import wait_for
from qvd.client import rfb
from vma_agent import Agent
from xserver import Xvfb


@pytest.fixture
def agent(tmp_path):
    started = []

    def start(session=None):
        started.append(Agent(str(tmp_path / f"vma{len(started)}.log"), session))
        return started[-1]
    yield start
    for one in started:
        one.stop()


def hook(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_bad_rpc_input_gets_a_clear_json_error(agent):
    vma = agent()
    status, body = vma.call("format_disk")
    assert status == 404 and "unknown method 'format_disk'" in body["error"]
    assert "x_start" in body["methods"]
    assert vma.call("x_start", **{"vma.session.type": "rdp"}) == (
        400, {"error": "unknown vma.session.type 'rdp' (nx or vnc)"})
    status, body = vma.call("expire", soft="tomorrow")
    assert status == 400 and "soft must be a Unix time" in body["error"]
    status, body = vma.call("x_start", **{"qvd.client.geometry": "huge;rm -rf"})
    assert status == 200 and "bad geometry" in body["error"] and body["x_state"] == "stopped"
    request = urllib.request.Request(f"http://127.0.0.1:{vma.port}/vma/poweroff", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405
    with socket.create_connection(("127.0.0.1", vma.port)) as raw:
        raw.sendall(b"GET /vma/x_start?%ff%fe=1 HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer " + vma.secret.encode() + b"\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400")
    assert vma.call("ping")[0] == 200 and vma.state() == "stopped"  # still serving, nothing ran


def test_vnc_session_states_follow_the_viewers(agent):
    vma = agent()
    status, body = vma.call("x_start", **{"qvd.client.geometry": "640x480"})
    assert status == 200 and body["session"] == "vnc"
    vma.wait_state("listening", 10)
    display = vma.call("x_state")[1]["display"]
    viewer = vma.desktop()
    assert viewer.recv(12) == b"RFB 003.008\n"
    vma.wait_state("connected", 5)
    viewer.close()
    vma.wait_state("suspended", 5)  # the desktop stays for the next client
    assert vma.call("x_start")[1]["x_state"] == "listening"
    assert vma.call("x_state")[1]["display"] == display  # the same desktop, reattached
    assert vma.call("x_stop")[1]["x_state"] in ("stopping", "stopped")
    vma.wait_state("stopped", 10)
    wait_for(lambda: vma.children() == [], 10, "Xvnc and the desktop to end")


def test_viewers_that_leave_during_the_handshake_do_not_lock_the_desktop(agent):
    """Every viewer reaches Xvnc through the agent's relay, all from one Unix-socket peer: its
    per-host blacklist (5 unfinished handshakes) would refuse the owner's next connection
    ("Too many security failures") after a few dropped clients or cut takeovers."""
    vma = agent()
    vma.call("x_start")
    vma.wait_state("listening", 10)
    for _ in range(8):  # a client that drops right after the banner
        with vma.desktop() as viewer:
            assert viewer.recv(12) == b"RFB 003.008\n"
        vma.wait_state("suspended", 5)
        assert vma.call("x_start")[1]["x_state"] == "listening"
    with vma.desktop() as viewer:
        assert viewer.recv(12) == b"RFB 003.008\n"
        viewer.sendall(b"RFB 003.008\n")
        assert viewer.recv(2) == b"\x01\x01"  # one security type: None (the relay checked)


def framebuffer_size(viewer: socket.socket) -> tuple[int, int]:
    """The desktop's size in Xvnc's ServerInit, past the RFB handshake (security None)."""
    banner = viewer.recv(12)
    assert banner == b"RFB 003.008\n"
    return rfb.handshake(rfb.Stream(viewer, banner), viewer)


def test_a_prepared_display_is_taken_over_by_the_first_client_at_its_geometry(agent):
    """A pool's spare: Xvnc alone, no desktop and no timeout, until the first x_start."""
    vma = agent()
    status, body = vma.call("x_prepare", **{"vma.timeout.listening": "1"})
    assert status == 200 and body == {"x_state": "prepared", "session": "vnc"}
    display = vma.call("x_state")[1]["display"]
    assert len(vma.children()) == 1  # Xvnc: the desktop command runs only for the user
    assert vma.call("x_prepare")[1]["x_state"] == "prepared"  # once is enough
    status, body = vma.call("x_start", **{"qvd.client.geometry": "1280x720"})
    assert status == 200 and body["x_state"] == "listening"
    assert vma.call("x_state")[1]["display"] == display  # the same Xvnc, taken over
    wait_for(lambda: len(vma.children()) == 2, 10, "the desktop command to start")
    with vma.desktop() as viewer:
        assert framebuffer_size(viewer) == (1280, 720)
        vma.wait_state("connected", 5)
    vma.wait_state("suspended", 5)
    assert vma.call("x_prepare")[1]["x_state"] == "suspended"  # a user's session stays
    vma.call("x_stop")
    vma.wait_state("stopped", 10)
    assert vma.call("x_prepare")[1]["x_state"] == "prepared"
    assert vma.call("x_start", **{"qvd.client.geometry": "1366x700"})[1]["x_state"] == \
        "listening"  # not one of Xvnc's modes: made for it
    with vma.desktop() as viewer:
        assert framebuffer_size(viewer) == (1366, 700)


def test_agents_sharing_a_machine_preparing_at_once_each_get_a_display(agent):
    """The process backend's agents share /tmp: each must reserve its display number, or two
    Xvnc race for one and a spare is left with none."""
    import threading
    agents = [agent() for _ in range(4)]
    answers = {}
    calls = [threading.Thread(target=lambda one=one: answers.update({one: one.call("x_prepare")}))
             for one in agents]
    for call in calls:
        call.start()
    for call in calls:
        call.join(30)
    assert [answers[one][1]["x_state"] for one in agents] == ["prepared"] * 4, answers
    assert len({one.call("x_state")[1]["display"] for one in agents}) == 4


def test_a_new_session_nobody_connects_to_is_stopped(agent):
    vma = agent()
    vma.call("x_start", **{"vma.timeout.listening": "1"})
    vma.wait_state("listening", 10)
    vma.wait_state("stopped", 5)
    assert "nobody connected in time" in vma.log()  # the listening timeout, nothing else
    wait_for(lambda: vma.children() == [], 10, "Xvnc to end")


def test_a_resumed_session_nobody_takes_goes_back_to_suspended(agent):
    vma = agent()
    vma.call("x_start", **{"vma.timeout.listening": "1"})
    vma.wait_state("listening", 10)
    vma.desktop().close()
    vma.wait_state("suspended", 5)
    assert vma.call("x_start", **{"vma.timeout.listening": "1"})[1]["x_state"] == "listening"
    vma.wait_state("suspended", 5)  # not stopped: the user's desktop is kept
    assert vma.children() != []


def test_hooks_run_with_the_session_properties_and_can_veto(agent, tmp_path):
    record = tmp_path / "hooks.txt"
    props = {"vma.on_action.connect": hook(tmp_path, "connect", f'echo "connect $*" >> {record}'),
             "vma.on_state.connected": hook(tmp_path, "conn", f'echo "state $*" >> {record}'),
             "custom.department": "sales"}
    vma = agent()
    assert vma.call("x_start", **props)[1]["x_state"] in ("starting", "listening")
    vma.wait_state("listening", 10)
    vma.desktop().close()
    wait_for(lambda: record.exists() and "on_state" in record.read_text(), 10, "the state hook")
    lines = record.read_text().splitlines()
    assert lines[0].startswith("connect custom.department sales ")
    assert lines[0].endswith("qvd.hook.on_action connect")
    assert "state custom.department sales qvd.hook.on_state connected" in lines

    veto = dict(props, **{"vma.on_action.pre-connect": hook(tmp_path, "no", "exit 3")})
    other = agent()
    status, body = other.call("x_start", **veto)
    assert status == 200 and body == {"error": "the pre-connect hook failed (exit 3)",
                                      "x_state": "stopped", "session": "vnc"}
    assert other.children() == []


def test_the_session_ends_when_the_desktop_command_ends(agent):
    vma = agent(session="sleep 2")
    vma.call("x_start")
    vma.wait_state("listening", 10)
    vma.wait_state("stopped", 10)


def test_poweroff_ends_the_agent_and_its_session(agent):
    vma = agent()
    vma.call("x_start")
    vma.wait_state("listening", 10)
    session = vma.children()
    assert session
    assert vma.call("poweroff") == (200, {"status": "ok"})
    vma.proc.wait(15)
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}/stat") and
                             open(f"/proc/{pid}/stat").read().split()[2] != "Z"
                             for pid in session), 10, "the session processes to end")


def test_nx_session_suspends_and_resumes_with_nxproxy(agent):
    vma = agent()
    forwarder = vma.desktop_forwarder()
    xserver = Xvfb()
    proxies = []

    def nxproxy():
        proxies.append(subprocess.Popen(
            ["nxproxy", "-S", f"nx/nx,connect=tcp:127.0.0.1:{forwarder}:0"], env=xserver.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    try:
        status, body = vma.call("x_start", **{"vma.session.type": "nx",
                                              "qvd.client.geometry": "800x600"})
        assert status == 200 and body["session"] == "nx", body
        vma.wait_state("listening", 15)
        agent_pid = vma.children()
        nxproxy()
        vma.wait_state("connected", 15)
        wait_for(lambda: '"QVD"' in xserver.windows(), 10, "the NX desktop on the client display")
        proxies[-1].terminate()
        proxies[-1].wait()
        vma.wait_state("suspended", 15)
        vma.call("x_start", **{"vma.session.type": "nx"})
        vma.wait_state("listening", 15)
        nxproxy()
        vma.wait_state("connected", 15)
        assert set(agent_pid) <= set(vma.children())  # the same nxagent: resumed, not restarted
    finally:
        for proc in proxies:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        xserver.stop()


def test_the_agent_obeys_only_its_node(agent, tmp_path):
    """A desktop user (or another VM) calling the agent: without the node's secret nothing
    runs, whatever the call asks for."""
    ran = tmp_path / "ran-as-root"
    vma = agent()
    evil = {"vma.on_action.pre-connect": hook(tmp_path, "evil", f"touch {ran}"),
            "qvd.vm.user.name": "root"}
    for offered in ("", "0" * 64, vma.secret[:-1] + "x"):
        status, body = vma.call("x_start", _secret=offered, **evil)
        assert (status, body) == (401, {"error": "this agent answers its node only"})
        assert vma.call("x_stop", _secret=offered)[0] == 401
    assert not ran.exists() and vma.state() == "stopped" and vma.children() == []
    assert "refused x_start from 127.0.0.1: no valid node secret" in vma.log()


def test_the_desktop_port_needs_the_node_secret(agent):
    """Only a connection that starts with the node's secret reaches the display server; the
    display server itself has no TCP port."""
    vma = agent()
    vma.call("x_start")
    vma.wait_state("listening", 10)
    for greeting in (b"", b"RFB 003.008\n", b"QVD-AUTH " + b"0" * 64 + b"\r\n"):
        with socket.create_connection(("127.0.0.1", vma.x_port), timeout=10) as raw:
            raw.sendall(greeting)
            if not greeting:
                raw.shutdown(socket.SHUT_WR)
            assert raw.recv(64) == b""  # cut off: not a byte of the desktop
    assert vma.state() == "listening"  # nobody got in
    with vma.desktop() as viewer:
        assert viewer.recv(12) == b"RFB 003.008\n"
        vma.wait_state("connected", 5)
    xvnc = [pid for pid in vma.children()
            if open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].endswith(b"Xvnc")]
    assert xvnc
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    assert not [line for line in listening.splitlines() if f"pid={xvnc[0]}," in line]


def test_a_kvm_guests_agent_reads_its_secret_from_the_smbios_strings(tmp_path):
    """What a KVM guest's kernel shows of the domain's <oemStrings> (type 11 raw entry: a
    header, then NUL-ended strings)."""
    from qvd.vma import secret
    entry = tmp_path / "11-0"
    entry.mkdir()
    (entry / "raw").write_bytes(b"\x0b\x05\x2a\x00\x02other=1\x00qvd.vma_secret=" +
                                b"ab" * 32 + b"\x00\x00")
    assert secret.read_smbios(str(tmp_path)) == "ab" * 32
    (entry / "raw").write_bytes(b"\x0b\x05\x2a\x00\x01other=1\x00\x00")
    with pytest.raises(ValueError, match="no qvd.vma_secret"):
        secret.read_smbios(str(tmp_path))
