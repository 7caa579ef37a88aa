"""The checks of `qvd-admin doctor`: one node's prerequisites, each giving one line that says
what was found and, when it is wrong, what to do. FAIL blocks the node (exit status 1), WARN
does not; SKIP: a check that needs an earlier one (the database) that failed.

Read-only: nothing here changes the machine or the database. The database is reached with
plain psycopg and a short timeout, so a doctor run is quick even when it is down.
"""
from __future__ import annotations

import datetime
import errno
import os
import shutil
import socket
import time
from dataclasses import dataclass

import psycopg

from qvd.db.embedded import EmbeddedError
from qvd.db.engine import connection_params, describe
from qvd.l7r.start_status import LISTENING, read as read_status, status_path

from .backends import lxc_cgroup
from .metrics_server import MetricsAddressError, parse_address
from .pidfile import PidFile

CERT_WARN_DAYS = 14
LXC_TOOLS = ("lxc-start", "lxc-stop", "lxc-info", "nft")


@dataclass
class Result:
    level: str  # ok | WARN | FAIL | skip
    name: str
    text: str

    @property
    def blocks(self) -> bool:
        return self.level == "FAIL"


@dataclass
class Limits:
    clock_tolerance: float = 1.0   # seconds of offset to the database's clock
    min_free_gib: float = 2.0      # free space in the storage root below which it blocks


def ok(name, text):
    return Result("ok", name, text)


def warn(name, text):
    return Result("WARN", name, text)


def fail(name, text):
    return Result("FAIL", name, text)


def skip(name, text="not checked: the database cannot be reached"):
    return Result("skip", name, text)


# --- the database and what it holds -----------------------------------------------------------
def connect(cfg):
    params = dict(connection_params(cfg), connect_timeout=3)
    return psycopg.connect(**params, autocommit=True), describe(params)


def check_database(cfg, conn, where: str, error: str | None) -> Result:
    if conn is None and where == "the database":
        return fail("database", error)
    if conn is None:
        return fail("database", f"{where} cannot be reached ({error}): start it ('qvd-admin db "
                                f"start' for the embedded one) or fix database.* in the node file")
    from qvd.db.migrate import head_revision  # alembic is slow to import: only here
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    found, wanted = (row[0] if row else None), head_revision()
    if found != wanted:
        return fail("database", f"{where} answers but its schema is at {found or 'nothing'}, "
                                f"this node needs {wanted}: run 'qvd-admin db upgrade'")
    return ok("database", f"{where} answers, schema at {found} (current)")


def check_node_name(cfg, conn) -> Result:
    name = cfg.get("nodename")
    if not name:
        return fail("node name", "nodename is not set: add 'nodename = NAME' to the node file")
    if conn is None:
        return skip("node name")
    row = conn.execute("SELECT h.id, r.state FROM hosts h JOIN host_runtimes r ON "
                       "r.host_id = h.id WHERE h.name = %s", (name,)).fetchone()
    if row is None:
        return fail("node name", f"no host named '{name}': add it with 'qvd-admin host add "
                                 f"name={name} address=THIS_NODE_ADDRESS'")
    return ok("node name", f"'{name}' is host {row[0]} ({row[1]})")


def check_clock(cfg, conn, limits: Limits) -> Result:
    if conn is None:
        return skip("clock")
    before = time.time()
    (db_now,), = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchall()
    after = time.time()
    offset = db_now - (before + after) / 2  # the round trip's middle: within half of it
    text = f"{abs(offset):.3f}s {'ahead of' if offset > 0 else 'behind'} the database"
    if abs(offset) > limits.clock_tolerance:
        return warn("clock", f"{text} (more than {limits.clock_tolerance:g}s): leases use the "
                             "database's clock but VM expirations and logs use this one; run "
                             "an NTP client (chrony) on every node and the database server")
    return ok("clock", text)


def check_certificate(cfg, conn) -> Result:
    if not cfg.get_bool("l7r.use_ssl"):
        return warn("certificate", "l7r.use_ssl = 0: desktop clients connect without TLS "
                                   "(tests only); set l7r.use_ssl = 1")
    if conn is None:
        return skip("certificate")
    rows = dict(conn.execute("SELECT key, value FROM ssl_configs WHERE key IN "
                             "('l7r.ssl.cert', 'l7r.ssl.key')").fetchall())
    if len(rows) < 2:
        return fail("certificate", "no L7R certificate stored: store one with 'qvd-admin "
                                   "config ssl --cert FILE --key FILE'")
    from cryptography import x509
    try:
        cert = x509.load_pem_x509_certificate(rows["l7r.ssl.cert"].encode())
    except ValueError:
        return fail("certificate", "the stored L7R certificate is not a PEM certificate: "
                                   "store a valid one with 'qvd-admin config ssl'")
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    subject = cert.subject.rfc4514_string()
    if left.total_seconds() <= 0:
        return fail("certificate", f"the L7R certificate ({subject}) expired on "
                                   f"{cert.not_valid_after_utc:%Y-%m-%d}: store a new one "
                                   "with 'qvd-admin config ssl'")
    if left.days < CERT_WARN_DAYS:
        return warn("certificate", f"the L7R certificate ({subject}) expires in "
                                   f"{left.total_seconds() / 86400:.1f} days: renew it and "
                                   "store it with 'qvd-admin config ssl'")
    return ok("certificate", f"{subject}, valid for {left.days} more days")


# --- ports ------------------------------------------------------------------------------------
def _listener_of(port: int) -> str | None:
    """'NAME (pid N)' of the process listening on a TCP port, from /proc (when visible)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                for line in list(handle)[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] in inodes:
                    with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
                        return f"{handle.read().strip()} (pid {pid})"
        except OSError:
            continue
    return None


def _port_free(address: str, port: int) -> OSError | None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the acceptor does
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc
    return None


def check_l7r_port(cfg) -> Result:
    address, port = cfg.get("l7r.address"), cfg.get_int("l7r.port")
    error = _port_free(address, port)
    if error is None:
        return ok("L7R port", f"{address}:{port} is free")
    run_dir, name = cfg.get("path.run"), cfg.get("nodename") or ""
    ours = PidFile(os.path.join(run_dir, f"l7r-{name}.pid")).running()
    if ours is not None and read_status(status_path(run_dir, name)) == LISTENING:
        return ok("L7R port", f"{address}:{port} is held by this node's qvd-l7r (pid {ours})")
    if error.errno != errno.EADDRINUSE:
        return fail("L7R port", f"cannot listen on {address}:{port} ({error.strerror}): fix "
                                "l7r.address (an address of this machine) or l7r.port")
    holder = _listener_of(port) or "another program"
    return fail("L7R port", f"{address}:{port} is held by {holder}: stop it or set l7r.port "
                            "to a free port")


def check_metrics_port(cfg) -> Result:
    try:
        where = parse_address(cfg.get("hkd.metrics.address"))
    except MetricsAddressError as exc:
        return fail("metrics port", f"{exc}")
    if where is None:
        return ok("metrics port", "metrics are off (hkd.metrics.address is empty)")
    error = _port_free(*where)
    if error is None:
        return ok("metrics port", f"{where[0]}:{where[1]} is free")
    holder = _listener_of(where[1]) or "another program"
    if "qvd-hkd" in holder:
        return ok("metrics port", f"{where[0]}:{where[1]} is served by {holder}")
    return warn("metrics port", f"{where[0]}:{where[1]} is held by {holder}: the node will run "
                                "without metrics; set hkd.metrics.address to a free port")


# --- the kernel and the backend's tools --------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def check_user_namespaces(cfg) -> Result:
    needed = cfg.get("vm.hypervisor") == "lxc" and not cfg.get_bool("vm.lxc.privileged")
    most = _read("/proc/sys/user/max_user_namespaces")
    clone = _read("/proc/sys/kernel/unprivileged_userns_clone")  # Debian's switch, if present
    if most == "0" or clone == "0":
        text = ("user namespaces are disabled (user.max_user_namespaces = 0 or "
                "kernel.unprivileged_userns_clone = 0)")
        if needed:
            return fail("user namespaces", f"{text}: unprivileged containers need them; "
                                           "enable them with sysctl")
        return ok("user namespaces", f"{text}; not needed by vm.hypervisor = "
                                     f"{cfg.get('vm.hypervisor')}")
    return ok("user namespaces", f"available (at most {most or '?'})")


def check_cgroups(cfg) -> Result:
    """The LXC backend limits memory, CPU and processes in either hierarchy (lxc_cgroup.py)."""
    version = lxc_cgroup.host_version()
    if version == 2:
        present = set((_read(lxc_cgroup.UNIFIED_MARK) or "").split())
    else:
        present = {c for c in ("memory", "cpu", "pids") if os.path.isdir(f"/sys/fs/cgroup/{c}")}
    missing = [c for c in ("memory", "cpu", "pids") if c not in present]
    if missing and cfg.get("vm.hypervisor") == "lxc":
        return fail("cgroups", f"cgroup v{version} lacks the {', '.join(missing)} "
                               "controller(s) that limit each container: enable them (kernel "
                               "command line, or mount them under /sys/fs/cgroup)")
    return ok("cgroups", f"v{version}, " + (f"missing {', '.join(missing)} (not needed by "
                                            f"vm.hypervisor = {cfg.get('vm.hypervisor')})"
                                            if missing else "memory, cpu and pids limits usable"))


def check_hypervisor(cfg) -> Result:
    kind = cfg.get("vm.hypervisor")
    if kind == "process":
        return ok("hypervisor", "process: VMs are local qvd-vma processes, nothing to install")
    if kind == "lxc":
        missing = [tool for tool in LXC_TOOLS if shutil.which(tool) is None]
        if missing:
            return fail("hypervisor", f"lxc: {', '.join(missing)} not found: install the "
                                      "Debian packages lxc and nftables")
        return ok("hypervisor", "lxc: " + ", ".join(LXC_TOOLS) + " found")
    uri = cfg.get("vm.kvm.uri")
    try:
        import libvirt
    except ImportError:
        return fail("hypervisor", "kvm: the libvirt Python binding is missing: "
                                  "scripts/install-deps.sh installs it")
    libvirt.registerErrorHandler(lambda *_: None, None)  # its own stderr print: we say it
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        return fail("hypervisor", f"kvm: libvirt at {uri} does not answer "
                                  f"({str(exc).splitlines()[0]}): start libvirtd or fix "
                                  "vm.kvm.uri")
    try:
        return ok("hypervisor", f"kvm: libvirt at {uri} answers ({conn.getType()})")
    finally:
        conn.close()


def check_disk(cfg, limits: Limits) -> Result:
    root = cfg.get("path.storage.root")
    existing = root
    while not os.path.exists(existing):  # not made yet: the disk it will be made on
        existing = os.path.dirname(existing)
    free = shutil.disk_usage(existing).free / 2**30
    where = root if existing == root else f"{root} (not made yet; on {existing})"
    if free < limits.min_free_gib:
        return fail("disk", f"{free:.1f} GiB free in {where}, less than {limits.min_free_gib:g}"
                            " GiB: VM overlays and images need room; free some or move "
                            "path.storage.root")
    if not os.access(existing, os.W_OK):
        return fail("disk", f"{where} is not writable by this user: run as root or fix "
                            "its owner")
    return ok("disk", f"{free:.1f} GiB free in {where}")


def run_checks(cfg, limits: Limits | None = None) -> list[Result]:
    limits = limits or Limits()
    conn, error, where = None, None, "the database"
    try:
        conn, where = connect(cfg)
    except EmbeddedError as exc:  # says itself what to do
        error = str(exc)
    except psycopg.OperationalError as exc:
        error = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        where = describe(connection_params(cfg))
    try:
        results = [check_database(cfg, conn, where, error)]
        db = None if results[0].blocks else conn  # a schema we do not know: leave it alone
        results += [check_node_name(cfg, db), check_clock(cfg, db, limits),
                    check_certificate(cfg, db)]
    finally:
        if conn is not None:
            conn.close()
    return results + [check_l7r_port(cfg), check_metrics_port(cfg), check_user_namespaces(cfg),
                      check_cgroups(cfg), check_hypervisor(cfg), check_disk(cfg, limits)]
