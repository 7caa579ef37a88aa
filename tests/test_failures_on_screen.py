"""Failures that only a log file knew now reach `qvd-admin host list`: the L7R acceptor that
cannot listen (its port taken by another program) puts the sentence on the host row, and
takes it back once it listens."""
import json
import os
import shutil
import socket
import subprocess
import tempfile

from conftest import QVD_ADMIN
from hkd_nodes import HkdNode, wait_for
from qvd.cli.objects.system import NODE_CONF, PROCESS_BACKEND
from qvd.hkd.backends.process import free_port
from qvd.l7r.client import accepting
from tests_tls import write_pair


def host_row(demo) -> dict:
    return json.loads(demo.ok("host", "list", "--json"))[0]


def test_a_taken_l7r_port_is_on_the_host_row_until_it_is_free(demo, tmp_path):
    cert, key, _ = write_pair(tmp_path)
    demo.ok("config", "ssl", "--cert", cert, "--key", key)
    other = socket.socket()  # another program holds the port first
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    node = HkdNode(demo, "node1", f"l7r.address = 127.0.0.1\nl7r.port = {port}\n")
    try:
        node.start()
        row = wait_for(lambda: (r := host_row(demo))["last_error"] and r, 20,
                       "the L7R's failure on the host row")
        assert row["last_error"] == (f"qvd-l7r: cannot listen on 127.0.0.1:{port}: Address "
                                     "already in use; free the port or set l7r.port (or "
                                     "l7r.address) to another")
        assert row["state"] == "running"  # the node itself runs: VMs can still start
        other.close()
        wait_for(lambda: accepting("127.0.0.1", port), 20, "the L7R to listen once free")
        wait_for(lambda: not host_row(demo)["last_error"], 20, "the error taken back")
    finally:
        other.close()
        node.cleanup()


def test_an_unusable_certificate_is_on_the_host_row(demo, tmp_path):
    cert, key, _ = write_pair(tmp_path)
    demo.ok("config", "ssl", "--cert", cert, "--key", key)
    # what psql, or a disk that lost a block, can leave: the CLI itself checks what it stores
    demo.sql("UPDATE ssl_configs SET value = 'not a certificate' WHERE key = 'l7r.ssl.cert'")
    node = HkdNode(demo, "node1", f"l7r.address = 127.0.0.1\nl7r.port = {free_port()}\n")
    try:
        node.start()
        row = wait_for(lambda: (r := host_row(demo))["last_error"] and r, 20,
                       "the L7R's failure on the host row")
        assert row["last_error"] == (
            "qvd-l7r: the L7R certificate or key cannot be used (not a PEM certificate and "
            "key); store a valid pair with 'qvd-admin config ssl --cert FILE --key FILE'")
    finally:
        node.cleanup()


def _make_run(extra: str, holder: socket.socket | None = None):
    """`qvd-admin system start` (what `make run` runs) in a fresh home with the process
    backend: (its result, the host list's rows)."""
    root = tempfile.mkdtemp(prefix="qvd-home-")
    os.chmod(root, 0o755)  # the embedded PostgreSQL may run as another account
    home = os.path.join(root, "qvd")
    os.makedirs(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QVD_")}
    env.update(QVD_HOME=home, QVD_CONFIG=os.path.join(home, "node.conf"))
    with open(env["QVD_CONFIG"], "w", encoding="utf-8") as handle:
        handle.write(NODE_CONF.format(nodename="node1", home=home, backend=PROCESS_BACKEND)
                     + f"hkd.metrics.address =\n{extra}")
    try:
        result = subprocess.run([QVD_ADMIN, "system", "start"], env=env, capture_output=True,
                                text=True, timeout=180)
        hosts = json.loads(subprocess.run([QVD_ADMIN, "host", "list", "--json"], env=env,
                                          capture_output=True, text=True).stdout or "[]")
        return result, hosts
    finally:
        if holder is not None:
            holder.close()
        subprocess.run([QVD_ADMIN, "system", "stop"], env=env, capture_output=True, timeout=180)
        shutil.rmtree(root, ignore_errors=True)


def test_make_run_fails_with_the_doctors_line_when_the_l7r_port_is_taken():
    """A port held by another program used to pass make run's connection test and print
    "QVD is up"; the doctor, run first, names the holder and the fix."""
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    result, _ = _make_run(f"l7r.address = 127.0.0.1\nl7r.port = {port}\n", other)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "QVD is up" not in result.stdout and "qvd-hkd started" not in result.stdout
    assert result.stderr.strip().splitlines() == [
        f"qvd-admin: L7R port: 127.0.0.1:{port} is held by {_comm()} (pid {os.getpid()}): "
        "stop it or set l7r.port to a free port (see 'qvd-admin doctor')"]


def _comm() -> str:
    with open("/proc/self/comm", encoding="utf-8") as handle:
        return handle.read().strip()
