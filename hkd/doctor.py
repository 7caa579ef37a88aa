"""The checks of `qvd-admin doctor`: one node's prerequisites, each giving one line that says
what was found and, when it is wrong, what to do. FAIL blocks the node (exit status 1), WARN
does not; SKIP: a check that needs an earlier one (the database, the VM network's settings)
that failed.

Read-only: nothing here changes the machine or the database. The database is reached with
plain psycopg and a short timeout, so a doctor run is quick even when it is down. Whether the
VM bridge could be made is judged from CAP_NET_ADMIN, and whether the firewall's tables could
be loaded with `nft --check` (the kernel validates them and keeps nothing).
"""
from __future__ import annotations

import datetime
import errno
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

import psycopg

from qvd.db.embedded import EmbeddedError
from qvd.db.engine import connection_params, describe
from qvd.l7r.start_status import LISTENING, read as read_status, status_path

from .backends import bridge as vm_bridge, lxc_cgroup
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


# --- the VM network: bridge, address plan, firewall (LXC and KVM) ------------------------------
NETWORKED = ("lxc", "kvm")
CAP_NET_ADMIN = 12
IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # what a Linux interface name may be


def _may_admin_network() -> bool:
    """CAP_NET_ADMIN in this process's effective set: what making a bridge and loading nft
    rules need (root has it unless a container or a bounding set took it away)."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return False


def _vm_network(cfg) -> tuple[str, ipaddress.IPv4Network, str]:
    """(bridge, VM network, the node's address on it) as the backends compute them; a
    ValueError that names the setting when they cannot."""
    name, prefix, gateway = vm_bridge.plan(cfg)
    network = ipaddress.IPv4Network(f"{cfg.get('vm.network.ip.start')}/{prefix}", strict=False)
    if ipaddress.IPv4Address(gateway) not in network:
        raise ValueError(f"the node's address on it, {gateway} (vm.network.gateway), is "
                         f"outside the VM network {network}")
    if not IFNAME.fullmatch(name or ""):
        raise ValueError(f"vm.network.bridge = '{name}' is not an interface name (1 to 15 "
                         "letters, digits, '-', '_' or '.')")
    return name, network, gateway



def check_bridge(cfg) -> Result:
    kind = cfg.get("vm.hypervisor")
    if kind not in NETWORKED:
        return ok("bridge", f"no VM network: not used by vm.hypervisor = {kind}")
    try:
        name, network, gateway = _vm_network(cfg)
    except ValueError as exc:
        return fail("bridge", f"{exc}: fix that setting (in the node file, or with "
                              "'qvd-admin config set')")
    from pyroute2 import IPRoute
    with IPRoute() as ip:
        links = {link.get_attr("IFLA_IFNAME"): link for link in ip.get_links()}
        names = {link["index"]: ifname for ifname, link in links.items()}
        own = links.get(name)
        for addr in ip.get_addr(family=socket.AF_INET):
            where = f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"
            if own is not None and addr["index"] == own["index"]:
                continue
            if ipaddress.IPv4Network(where, strict=False).overlaps(network):
                return fail("bridge", f"the VM network {network} is also on "
                                      f"{names.get(addr['index'], '?')} ({where}): VMs on "
                                      f"{name} would be unreachable; remove that address or "
                                      "choose another vm.network.ip.start")
    if own is not None:
        info = own.get_attr("IFLA_LINKINFO")
        link_kind = info.get_attr("IFLA_INFO_KIND") if info else None
        if link_kind != "bridge":
            what = f" (a {link_kind} link)" if link_kind else ""
            return fail("bridge", f"{name} exists but is not a bridge{what}: choose another "
                                  "vm.network.bridge")
        return ok("bridge", f"{name} is a bridge; {network} is on no other interface")
    if not _may_admin_network():
        return fail("bridge", f"{name} does not exist and this process may not make it (no "
                              "CAP_NET_ADMIN): run qvd-hkd as root")
    return ok("bridge", f"{name} will be made at the first VM's start, with {gateway}/"
                        f"{network.prefixlen}; {network} is on no other interface")


def _nft(*args: str, text: str | None = None) -> tuple[bool, str]:
    done = subprocess.run(["nft", *args], input=text, capture_output=True, text=True)
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return done.returncode == 0, (lines[0] if lines else f"exit status {done.returncode}")


def check_nftables(cfg) -> Result:
    """nft works here, and the node's tables are there or would be accepted as they are
    (`nft --check`: the kernel validates the rules and keeps nothing)."""
    kind = cfg.get("vm.hypervisor")
    if kind not in NETWORKED:
        return ok("nftables", f"no VM firewall: not used by vm.hypervisor = {kind}")
    if shutil.which("nft") is None:
        return fail("nftables", "nft not found: install the Debian package nftables")
    works, why = _nft("list", "tables")
    if not works:
        return fail("nftables", f"nft cannot read the ruleset ({why}): run qvd-hkd as root "
                                "(it needs CAP_NET_ADMIN), on a kernel with nf_tables")
    from .backends import firewall
    from .backends.base import BackendError
    try:
        name, network, _ = _vm_network(cfg)
    except ValueError:
        return skip("nftables", "not checked: the VM network's settings are wrong (see "
                                "bridge)")
    try:
        allow = firewall.parse_allow(cfg.get("vm.network.allow"))
    except BackendError as exc:
        return fail("nftables", f"{exc}: fix it (in the node file, or with 'qvd-admin "
                                "config set')")
    table = f"qvd_{name}"
    if _nft("list", "table", "inet", table)[0] and \
            _nft("list", "table", "bridge", firewall.ports_table(name))[0]:
        return ok("nftables", f"tables inet {table} and bridge {firewall.ports_table(name)} "
                              "present")
    first = str(network.network_address + 2)  # a VM's port, as the first start adds one
    rules = (firewall.ruleset(name, str(network), cfg.get_bool("vm.network.firewall."
                                                               "protect_host"),
                              cfg.get_bool("vm.network.firewall.nat"),
                              cfg.get_bool("vm.network.use_dhcp"),
                              cfg.get_bool("vm.network.firewall.protect_vms"), allow)
             + firewall.port_rules(name, vm_bridge.veth_name(1), vm_bridge.mac_for(first),
                                   first, cfg.get_bool("vm.network.use_dhcp")))
    accepted, why = _nft("--check", "-f", "-", text=rules)
    if not accepted:
        return fail("nftables", f"the kernel refuses the VM network's rules ({why}): load "
                                "nf_tables and its inet, bridge and nat parts (Debian's "
                                "kernel has them as modules)")
    return ok("nftables", f"table inet {table} not made yet; its rules pass 'nft --check' "
                          "and are loaded at the first VM's start")


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
                      check_cgroups(cfg), check_hypervisor(cfg), check_bridge(cfg),
                      check_nftables(cfg), check_disk(cfg, limits)]
