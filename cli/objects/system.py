"""qvd-admin system start|stop|status: a whole single-node system (what `make run` uses).

Everything lives under QVD_HOME: node.conf, the embedded PostgreSQL, the image store.
Starting again while it is up changes nothing but restarts any part that died.
"""
import hashlib
import io
import shutil
import os
import socket
import ssl
import sys
import tarfile
import time

import click
from sqlalchemy import func, select

from qvd.db.engine import embedded_cluster, uses_embedded
from qvd.hkd import daemon
from qvd.hkd.backends import host_di
from qvd.hkd.pidfile import PidFile
from qvd.l7r import start_status
from qvd.l7r.tls import self_signed
from qvd.db.models import SslConfig, Tenant, User

from ..verbs import CONTEXT, object_group
from . import api_process
from .db import init_database

group = object_group("system", "A single-node system under QVD_HOME (make run / make stop).")

DEMO = {"tenant": "demo", "login": "demo", "password": "demo", "osf": "desktop", "vm": "demo"}

NODE_CONF = """\
# Written by `qvd-admin system start` (make run). Every key: etc/node.conf in the sources.
nodename = {nodename}
path.home = {home}
path.storage.root = {home}/storage
path.run = {home}/run
path.log = {home}/log
{backend}# No database.* keys: the embedded PostgreSQL under path.home/pg is used.
"""

PROCESS_BACKEND = """\
# The process backend runs each VM as a local qvd-vma process (no root needed).
vm.hypervisor = process
"""

# Root with LXC installed: real containers, on a bridge of their own with no route out.
LXC_BACKEND = """\
# Running as root with LXC: each VM is an unprivileged LXC container on the bridge qvdnet
# (10.213.0.0/24, this node is 10.213.0.1 on it); the demo image borrows this machine's /usr
# read-only (its lxc/fstab: a trusted image) and brings its own copy of the agent.
vm.hypervisor = lxc
vm.lxc.init = {vma}
vm.lxc.unionfs.bind.fstab = 1
vm.network.bridge = qvdnet
vm.network.ip.start = 10.213.0.100
vm.network.netmask = 255.255.255.0
"""


def lxc_usable() -> bool:
    return os.geteuid() == 0 and shutil.which("lxc-start") is not None


def _home() -> str:
    return os.path.abspath(os.environ.get("QVD_HOME") or ".qvd")


def node_conf_text(home: str) -> str:
    backend = LXC_BACKEND.format(vma=host_di.AGENT) if lxc_usable() else PROCESS_BACKEND
    return NODE_CONF.format(nodename=socket.gethostname().split(".")[0], home=home,
                            backend=backend)


def write_node_conf(home: str) -> str:
    path = os.path.join(home, "node.conf")
    if not os.path.exists(path):
        os.makedirs(home, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(node_conf_text(home))
    os.environ["QVD_CONFIG"] = path
    os.environ["QVD_HOME"] = home
    return path


def demo_image(home: str, hypervisor: str) -> str:
    """For LXC, a desktop image made of this machine (host_di); for the process backend,
    which needs no image, a placeholder tarball."""
    if hypervisor == "lxc":
        return host_di.build(os.path.join(home, "demo-host-di.tar"))
    path = os.path.join(home, "demo-image.tar")
    if not os.path.exists(path):
        text = b"QVD demo image placeholder: replaced by a real desktop image by later issues.\n"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("README")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return path


def create_demo(admin, home: str) -> list[str] | None:
    """The demo objects, once: nothing is done when the demo user exists already."""
    from ..main import run  # the CLI itself, so demo objects get the same checks and audit log
    with admin.session() as s:
        exists = s.scalar(select(User.id).join(Tenant, Tenant.id == User.tenant_id)
                          .where(Tenant.name == DEMO["tenant"], User.login == DEMO["login"]))
    if exists:
        return None
    t = ["-t", DEMO["tenant"]]
    steps = [
        ["tenant", "add", f"name={DEMO['tenant']}"],
        ["user", "add", *t, f"login={DEMO['login']}", f"password={DEMO['password']}"],
        ["osf", "add", *t, f"name={DEMO['osf']}", "memory=256", "user_storage=64"],
        ["di", "add", *t, f"path={demo_image(home, admin.cfg.get('vm.hypervisor'))}",
         f"osf={DEMO['osf']}",
         # the host-built image binds host paths: the admin's word that it may
         *(["trusted=1"] if admin.cfg.get("vm.hypervisor") == "lxc" else [])],
        ["vm", "add", *t, f"name={DEMO['vm']}", f"user={DEMO['login']}", f"osf={DEMO['osf']}"],
        ["host", "add", f"name={admin.cfg.get('nodename')}", "address=127.0.0.1"],
        # qvd-api's demo administrator: manages the demo tenant only (not Root)
        ["admin", "add", *t, f"name={DEMO['login']}", f"password={DEMO['password']}"],
        ["admin", "role", *t, "-f", f"name={DEMO['login']}", "grant=Operator L3"],
    ]
    for step in steps:
        if run(step) != 0:
            raise click.ClickException(f"creating the demo failed at: qvd-admin {' '.join(step)}")
    return steps


def ensure_certificate(admin) -> bool:
    """A self-signed pair for the L7R when none is stored (replace it: qvd-admin config ssl)."""
    from ..main import run
    with admin.session() as s:
        if s.scalar(select(func.count()).select_from(SslConfig)
                    .where(SslConfig.key == "l7r.ssl.cert")):
            return False
    cert, key = self_signed(admin.cfg.get("nodename"))
    paths = []
    for name, text in (("l7r-cert.pem", cert), ("l7r-key.pem", key)):
        path = os.path.join(admin.cfg.get("path.run"), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(text)
        paths.append(path)
    if run(["config", "ssl", "--cert", paths[0], "--key", paths[1]]) != 0:
        raise click.ClickException("storing the generated certificate failed")
    return True


def certificate_fingerprint(admin) -> str:
    """sha256:<hex> of the stored L7R certificate, what qvd-client --fingerprint pins."""
    with admin.session() as s:
        pem = s.scalar(select(SslConfig.value).where(SslConfig.key == "l7r.ssl.cert"))
    return "sha256:" + hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _l7r_host(admin) -> str:
    address = admin.cfg.get("l7r.address")
    return "127.0.0.1" if address in ("", "0.0.0.0", "::") else address


def _l7r_status_file(admin) -> str:
    return start_status.status_path(admin.cfg.get("path.run"), admin.cfg.get("nodename"))


def _l7r_running(admin) -> bool:
    """An acceptor a previous qvd-hkd left running (it outlives the HKD on purpose)."""
    pid_path = os.path.join(admin.cfg.get("path.run"), f"l7r-{admin.cfg.get('nodename')}.pid")
    return PidFile(pid_path).running() is not None


def _l7r_failure(admin, wait: float = 20.0) -> str | None:
    """None once the node's L7R listens, else why not, in the acceptor's own words. Not a
    connection test: another program holding the port would pass one."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status = start_status.read(_l7r_status_file(admin))
        if status == start_status.LISTENING:
            return None
        if status:
            return status
        time.sleep(0.1)
    return f"it did not start within {wait:g}s; see {admin.cfg.get('path.log')}/hkd.log"


def run_doctor(admin) -> None:
    """`qvd-admin doctor` before the node starts: its warnings shown, a check that blocks the
    node ends `make run` with its line and what to do."""
    from qvd.hkd.doctor import run_checks
    results = run_checks(admin.cfg)
    for result in results:
        if result.level == "WARN":
            click.echo(f"doctor: {result.name}: {result.text}")
    blocking = [f"{r.name}: {r.text}" for r in results if r.blocks]
    if blocking:
        raise click.ClickException("; ".join(blocking) + " (see 'qvd-admin doctor')")


def client_command(admin) -> str:
    """The exact command that saves a picture of the demo desktop."""
    qvd_client = os.path.join(os.path.dirname(os.path.realpath(sys.argv[0])), "qvd-client")
    host = _l7r_host(admin)
    return (f"QVD_PASSWORD={DEMO['password']} {qvd_client} connect --host {host} "
            f"--port {admin.cfg.get('l7r.port')} --login {DEMO['login']}@{DEMO['tenant']} "
            f"--fingerprint {certificate_fingerprint(admin)} --screenshot demo-desktop.png")


@group.command("start", context_settings=CONTEXT)
@click.option("--debug", is_flag=True, hidden=True)
@click.pass_obj
def start(admin, debug):
    """Bring the system up under QVD_HOME (default ./.qvd) and create the demo once."""
    home = _home()
    conf = write_node_conf(home)
    for line in init_database(admin):
        click.echo(line)
    hypervisor = admin.cfg.get("vm.hypervisor")
    click.echo(f"VMs run as {'LXC containers' if hypervisor == 'lxc' else 'local processes'} "
               f"(vm.hypervisor = {hypervisor} in {conf})")
    steps = create_demo(admin, home)
    click.echo("demo objects created" if steps else "demo objects already there")
    if ensure_certificate(admin):
        click.echo("self-signed L7R certificate generated and stored")
    pid = daemon.running_pid(admin.cfg)
    if pid is None:
        run_doctor(admin)
        if not _l7r_running(admin):  # a previous run's word is not this one's
            start_status.clear(_l7r_status_file(admin))
        try:
            pid = daemon.start(admin.cfg)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"qvd-hkd started (pid {pid}, log {admin.cfg.get('path.log')}/hkd.log)")
    else:
        click.echo(f"qvd-hkd already running (pid {pid})")
    failure = _l7r_failure(admin)
    if failure:  # the node runs (and retries); the sentence is in `host list` too
        raise click.ClickException(f"the L7R does not accept desktop clients: {failure} "
                                   "(qvd-hkd keeps retrying; 'make stop' stops it)")
    try:
        api_pid, api_started = api_process.start(admin.cfg)
    except RuntimeError as exc:
        raise click.ClickException(f"the administration API does not start: {exc}") from None
    click.echo(f"qvd-api {'started' if api_started else 'already running'} (pid {api_pid}, "
               f"log {admin.cfg.get('path.log')}/api.log)")
    qvd_admin = os.path.join(os.path.dirname(os.path.realpath(sys.argv[0])), "qvd-admin")
    click.echo(f"""
QVD is up: node '{admin.cfg.get('nodename')}', state under {home}.
Desktop clients connect to https://<this machine>:{admin.cfg.get('l7r.port')} (self-signed certificate);
in a browser, the same address is the desktop portal (log in as {DEMO['login']}@{DEMO['tenant']}).
The web administration tool: https://<this machine>:{admin.cfg.get('api.port')}/wat/ and the API: \
/api/v1/docs (administrator {DEMO['login']}@{DEMO['tenant']}, password '{DEMO['password']}').
Demo: tenant '{DEMO['tenant']}', user '{DEMO['login']}@{DEMO['tenant']}' (password '{DEMO['password']}'), \
OSF '{DEMO['osf']}', VM '{DEMO['vm']}'.

See the demo desktop (starts the VM, saves a picture of the desktop as demo-desktop.png;
use --listen 127.0.0.1:5900 instead of --screenshot to open it in a VNC viewer):
  {client_command(admin)}

Go on with:
  export QVD_CONFIG={conf}
  {qvd_admin} vm start -f name={DEMO['vm']}
  {qvd_admin} vm list
  {qvd_admin} user add login=alice password=secret -t {DEMO['tenant']}
  {qvd_admin} vm add name=desk user=alice osf={DEMO['osf']} -t {DEMO['tenant']}
  make stop""")


@group.command("stop", context_settings=CONTEXT)
@click.option("--debug", is_flag=True, hidden=True)
@click.pass_obj
def stop(admin, debug):
    """Stop everything `system start` started."""
    write_node_conf(_home())
    if api_process.stop(admin.cfg):
        click.echo("qvd-api stopped")
    pid = daemon.stop(admin.cfg)
    click.echo(f"qvd-hkd stopped (pid {pid})" if pid else "qvd-hkd was not running")
    if uses_embedded(admin.cfg):
        stopped = embedded_cluster(admin.cfg).stop()
        click.echo("embedded PostgreSQL " + ("stopped" if stopped else "was not running"))
