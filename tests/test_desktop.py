"""A real desktop end to end: qvd-client -> L7R over TLS -> process-backend VM -> qvd-vma ->
Xvnc or nxagent, started by a real qvd-hkd."""
import os
import subprocess
import sys
import time

import pytest

from vma_agent import call_as_node
from hkd_nodes import l7r_node, wait_for
from qvd.client.png import read_png
from qvd.hkd.backends.process import free_port
from xserver import Xvfb

QVD_CLIENT = os.path.join(os.path.dirname(sys.executable), "qvd-client")


@pytest.fixture
def node(demo, tmp_path):
    hkd = l7r_node(demo, tmp_path)
    yield hkd
    hkd.cleanup()


def client(node, *args, password="secret", login="alice@acme", **popen):
    command = [QVD_CLIENT, args[0], "--host", "127.0.0.1", "--port", str(node.port),
               "--fingerprint", node.fingerprint, "--login", login, *args[1:]]
    return subprocess.Popen(command, env=dict(popen.pop("env", os.environ), QVD_PASSWORD=password),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finished(proc, timeout=90):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def vma_state(demo):
    """x_state straight from the VM's agent (what the L7R asks)."""
    return call_as_node(demo, "x_state")[1]


def test_screenshot_of_the_desktop_through_the_l7r(node, demo, tmp_path):
    picture = tmp_path / "desk.png"
    code, _, err = finished(client(node, "connect", "--geometry", "800x600",
                                   "--screenshot", str(picture), "--settle", "2"))
    assert code == 0, err
    assert "... Starting virtual machine" in err and "saved 800x600" in err
    width, height, rgb = read_png(str(picture))
    assert (width, height) == (800, 600)
    colours = {rgb[i:i + 3] for i in range(0, len(rgb), 3 * 97)}
    assert len(colours) > 1  # the session drew something (an xterm on the root window)


def test_list_and_the_errors_a_user_reads(node, demo):
    code, out, err = finished(client(node, "list"))
    assert code == 0 and "desk" in out and "stopped" in out, err
    code, _, err = finished(client(node, "list", "--no-token", password="wrong"))
    assert code == 1 and err.strip() == (
        "qvd-client: The login or the password is wrong (or too many failed attempts: "
        "wait and retry).")
    bad_pin = "sha256:" + "00" * 32
    proc = subprocess.run([QVD_CLIENT, "list", "--port", str(node.port), "--login", "alice@acme",
                           "--fingerprint", bad_pin], env=dict(os.environ, QVD_PASSWORD="secret"),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "refusing to send the password" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert demo.sql("SELECT count(*) FROM host_counters WHERE auth_ok > 0") == [(1,)]
    code, _, err = finished(client(node, "connect", "--vm", "nope"))
    assert code == 1 and "no virtual machine 'nope'" in err


def test_second_client_reattaches_to_the_same_vnc_desktop(node, demo, tmp_path):
    first = client(node, "connect", "--listen", f"127.0.0.1:{free_port()}")
    try:
        wait_for(lambda: demo.sql("SELECT user_state FROM vm_runtimes") == [("connected",)],
                 60, "the first desktop")
        display = vma_state(demo)["display"]
        picture = tmp_path / "again.png"
        code, _, err = finished(client(node, "connect", "--screenshot", str(picture)))
        assert code == 0, err
        assert vma_state(demo)["display"] == display  # the same desktop session
        first_code, _, first_err = finished(first, 20)
        assert "Aborting previous connection" in err
        assert first_code == 1 and "ended the session before a viewer connected" in first_err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_nx_desktop_through_the_tunnel_with_nxproxy(node, demo):
    demo.ok("vm", "propset", "-f", "name=desk", "vma.session.type=nx")
    xserver = Xvfb()
    sessions = []
    try:
        sessions.append(client(node, "connect", "--nxproxy", "--link", "lan", env=xserver.env))
        wait_for(lambda: '"QVD"' in xserver.windows(), 90, "the NX desktop on the client display")
        # nxagent draws its window a moment before it logs "Session started"
        state = wait_for(lambda: vma_state(demo)["x_state"] == "connected" and vma_state(demo),
                         15, "the NX session to be connected")
        assert state["session"] == "nx"
        # a second client takes over: the first is cut, the same nxagent session is resumed
        sessions.append(client(node, "connect", "--nxproxy", env=xserver.env))
        assert finished(sessions[0], 60)[0] is not None
        wait_for(lambda: vma_state(demo)["x_state"] == "connected" and
                 demo.sql("SELECT user_state FROM vm_runtimes") == [("connected",)],
                 60, "the resumed session")
        assert vma_state(demo)["display"] == state["display"]
        assert "Session resumed" in open(os.path.join(
            demo.storage, "process", "1", "vma.log")).read()
    finally:
        for proc in sessions:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        xserver.stop()


def test_properties_choose_the_session_and_its_hooks(node, demo, tmp_path):
    record = tmp_path / "hook.txt"
    script = tmp_path / "on-connect"
    script.write_text(f"#!/bin/sh\necho \"$*\" > {record}\n")
    script.chmod(0o755)
    demo.ok("osf", "propset", "-f", "name=desktop", f"vma.on_action.connect={script}",
            "custom.floor=1")
    demo.ok("vm", "propset", "-f", "name=desk", "custom.floor=3")
    code, _, err = finished(client(node, "connect", "--screenshot", str(tmp_path / "p.png")))
    assert code == 0, err
    args = record.read_text().split()
    pairs = dict(zip(args[::2], args[1::2]))
    assert pairs["custom.floor"] == "3"  # the VM's property wins over the OSF's
    assert pairs["vma.session.type"] == "vnc" and pairs["qvd.client.geometry"] == "1024x768"
    assert pairs["qvd.hook.on_action"] == "connect"


def test_soft_expiry_reaches_the_agent_when_it_comes(node, demo, tmp_path):
    demo.ok("vm", "start", "-f", "name=desk")
    wait_for(lambda: demo.sql("SELECT vm_state FROM vm_runtimes") == [("running",)], 60, "running")
    soon = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + 2))
    demo.ok("vm", "edit", "-f", "name=desk", f"expiration_soft={soon}")

    def announced():
        return call_as_node(demo)[1]["expiration"].get("soft")
    expected = demo.sql("SELECT extract(epoch FROM expiration_soft) FROM vm_runtimes")[0][0]
    wait_for(lambda: announced() and abs(float(announced()) - float(expected)) < 1, 30,
             "the soft expiration to reach the VMA")
