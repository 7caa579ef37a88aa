"""`make run` / `make stop` as a user runs them: qvd-admin system start|stop in a fresh home."""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile

import pytest

from qvd.cli.objects.system import lxc_usable, node_conf_text
from qvd.db.migrate import head_revision
from qvd.hkd.backends.bridge import link_exists
from qvd.hkd.backends.lxc_storage import mounts_under
from qvd.hkd.backends.procfs import alive as _alive
from qvd.hkd.backends.process import free_port
from qvd.l7r.client import QvdConnection, accepting, tls_context

from conftest import QVD_ADMIN
from hkd_nodes import wait_for
from vm_network import clear_network, remove_test_bridge


@pytest.fixture
def home():
    root = tempfile.mkdtemp(prefix="qvd-home-")
    os.chmod(root, 0o755)
    if lxc_usable():
        clear_network("10.213.0.0/24", keep="qvdnet")
    yield os.path.join(root, "qvd")
    subprocess.run([QVD_ADMIN, "system", "stop"], env=_env(os.path.join(root, "qvd")),
                   capture_output=True)
    if lxc_usable():  # the demo bridge and its rules, made for the containers
        remove_test_bridge("qvdnet")
    for point in sorted(mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    subprocess.run(["rm", "-rf", root])


def _env(home, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QVD_")}
    return dict(env, QVD_HOME=home, **extra)


def run(home, *args, conf=True):
    env = _env(home, QVD_CONFIG=os.path.join(home, "node.conf")) if conf else _env(home)
    return subprocess.run([QVD_ADMIN, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _postmaster_pid(home):
    with open(os.path.join(home, "pg", "data", "postmaster.pid"), encoding="ascii") as handle:
        return int(handle.readline())


def _api_call(port, method, path, body=None, token=None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                       context=tls_context(verify=False))
    headers = {"Content-Type": "application/json",
               **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        reply = conn.getresponse()
        assert reply.status == 200, reply.read()
        return json.loads(reply.read())
    finally:
        conn.close()


def _the_vm_if(home, state):
    (vm,) = json.loads(run(home, "vm", "list", "--json").stdout)
    return vm if vm["state"] == state else None


def test_system_start_demo_restart_and_stop(home):
    # The node file make run writes, on a port of its own (a developer's make run may hold 8443).
    port, api_port = free_port(), free_port()
    os.makedirs(home)
    with open(os.path.join(home, "node.conf"), "w", encoding="utf-8") as handle:
        handle.write(node_conf_text(home) + f"l7r.port = {port}\nl7r.address = 127.0.0.1\n"
                     f"api.port = {api_port}\napi.address = 127.0.0.1\n")
    first = run(home, "system", "start", conf=False)
    assert first.returncode == 0, first.stderr
    assert "demo objects created" in first.stdout
    assert f"export QVD_CONFIG={home}/node.conf" in first.stdout

    (vm,) = json.loads(run(home, "vm", "list", "--json").stdout)
    assert (vm["name"], vm["user"], vm["tenant"], vm["state"]) == ("demo", "demo", "demo",
                                                                   "stopped")
    (host,) = json.loads(run(home, "host", "list", "--json").stdout)
    assert host["state"] == "running" and _alive(host["pid"])
    hkd_pid = host["pid"]
    assert "self-signed L7R certificate generated" in first.stdout
    wait_for(lambda: accepting("127.0.0.1", port), 10, "the node's L7R to accept")
    with QvdConnection("127.0.0.1", port, tls_context(verify=False)) as conn:  # over TLS
        assert conn.ping().status == 200
        conn.login("demo@demo", "demo")
        assert [v["name"] for v in conn.list_of_vm().json()] == ["demo"]
    # The administration API runs beside it; its demo administrator manages the demo tenant.
    assert "qvd-api started" in first.stdout
    api = _api_call(api_port, "POST", "/api/v1/login", {"login": "demo@demo",
                                                        "password": "demo"})
    listed = _api_call(api_port, "GET", "/api/v1/vms", token=api["token"])
    assert [v["name"] for v in listed["rows"]] == ["demo"]
    # The demo VM starts on the demo node: a real qvd-vma process answers.
    assert run(home, "vm", "start", "-f", "name=demo").returncode == 0
    vm = wait_for(lambda: _the_vm_if(home, "running"), 60, "the demo VM to run")
    assert _alive(vm["pid"])
    vma_pid = vm["pid"]
    log_before = run(home, "log", "list", "--csv").stdout

    # The command make run prints, pasted as is, saves a picture of the demo desktop.
    (command,) = [line.strip() for line in first.stdout.splitlines() if "qvd-client connect" in line]
    shot = subprocess.run(command, shell=True, cwd=os.path.dirname(home), capture_output=True,
                          text=True, timeout=120, env=_env(home))
    assert shot.returncode == 0, shot.stderr
    with open(os.path.join(os.path.dirname(home), "demo-desktop.png"), "rb") as picture:
        assert picture.read(8) == b"\x89PNG\r\n\x1a\n"

    again = run(home, "system", "start", conf=False)
    assert again.returncode == 0 and "already running" in again.stdout
    assert f"qvd-hkd already running (pid {hkd_pid})" in again.stdout
    assert "demo objects already there" in again.stdout
    assert run(home, "log", "list", "--csv").stdout == log_before  # nothing changed

    # A part that died is restarted by the next start.
    pid = _postmaster_pid(home)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), 5, "PostgreSQL to die")
    os.kill(hkd_pid, signal.SIGKILL)
    revived = run(home, "system", "start", conf=False)
    assert revived.returncode == 0, revived.stderr
    assert "qvd-hkd started" in revived.stdout
    (host,) = json.loads(run(home, "host", "list", "--json").stdout)
    hkd_pid = host["pid"]
    (vm,) = json.loads(run(home, "vm", "list", "--json").stdout)
    assert vm["state"] == "running" and vm["pid"] == vma_pid  # adopted, not restarted

    status = run(home, "db", "status")
    latest = head_revision()
    assert status.returncode == 0 and f"schema revision {latest}, latest {latest}" in status.stdout

    pid = _postmaster_pid(home)
    stopped = run(home, "system", "stop", conf=False)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not _alive(pid) and not _alive(hkd_pid) and not _alive(vma_pid)
    with pytest.raises(OSError):  # the L7R acceptor is gone too
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert "qvd-api stopped" in stopped.stdout
    with pytest.raises(OSError):  # and qvd-api
        socket.create_connection(("127.0.0.1", api_port), timeout=2).close()
    if lxc_usable():  # and so is the bridge it made for the containers
        assert not link_exists("qvdnet")
    down = run(home, "db", "status")
    assert down.returncode == 1 and "not running" in down.stderr
