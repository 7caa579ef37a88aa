"""Every configuration key with its built-in default, its type and what it means.

Layering (later wins): these defaults < the node file (QVD_CONFIG, default /etc/qvd/node.conf)
< DB `configs` rows of the global tenant (-1) < DB `configs` rows of the user's tenant.
Keys keep QVD's names where QVD has one. Timeouts are in seconds, memory in MiB.

Scopes:
  node    only in the node file (how to reach the database, who this node is, local paths);
  any     node file or database.
Keys under an open prefix (OPEN_PREFIXES) are free-form: admin hooks and custom properties.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    name: str
    default: str | None
    type: str          # str | int | float | bool | ip | port | path | enum:<a>|<b>...
    doc: str
    scope: str = "any"  # "node" or "any"


def _k(name, default, type_, doc, scope="any"):
    return Key(name, None if default is None else str(default), type_, doc, scope)


KEYS: list[Key] = [
    # --- who this node is and where it keeps its state --------------------------------------
    _k("nodename", None, "str", "Name of this node's row in `hosts`; required by qvd-hkd.", "node"),
    _k("path.home", "/var/lib/qvd", "path",
       "QVD_HOME: private state of this node (embedded PostgreSQL under pg/, logs, pid files). "
       "The environment variable QVD_HOME overrides it.", "node"),
    _k("path.storage.root", "/var/lib/qvd/storage", "path",
       "Root of images/, basefs/, overlayfs/, rootfs/, homefs/ and homes/.", "node"),
    _k("path.run", "/var/run/qvd", "path", "Runtime files: lock files, sockets.", "node"),
    _k("path.log", "/var/log/qvd", "path", "Log files of the node's daemons.", "node"),
    # --- the database ------------------------------------------------------------------------
    _k("database.host", None, "str",
       "PostgreSQL host name, address or Unix socket directory; several, comma-separated "
       "(HOST or HOST:PORT each), for a primary and its standbys: the writable one is used. "
       "Unset: the embedded cluster under $QVD_HOME/pg is used.", "node"),
    _k("database.port", 5432, "port", "PostgreSQL port.", "node"),
    _k("database.name", "qvd", "str", "Database name.", "node"),
    _k("database.user", "qvd", "str", "Database role.", "node"),
    _k("database.password", "", "str", "Database password.", "node"),
    _k("database.l7r.user", "", "str",
       "Role the L7R's connection processes log in as: qvd_l7r (migration 0006 creates it: "
       "not a superuser, only the grants a desktop connection needs; give it LOGIN and a "
       "password). Empty: database.user. The embedded cluster sets qvd_l7r up by itself.",
       "node"),
    _k("database.l7r.password", "", "str", "Password of database.l7r.user.", "node"),
    _k("database.connect_timeout", 5, "int", "Seconds to wait for a database connection.", "node"),
    _k("database.tcp_timeout", 10, "int",
       "Seconds of unanswered traffic (keepalives included) after which a connection to the "
       "database counts as dead, instead of the kernel's 15 minutes.", "node"),
    _k("database.statement_timeout", 60, "int",
       "Seconds a statement may run (0: no limit).", "node"),
    # --- node daemon (qvd-hkd) --------------------------------------------------------------
    _k("hkd.lease.interval", 2, "float", "Seconds between two renewals of the node's lease."),
    _k("hkd.lease.fence_timeout", 70, "float",
       "A node that could not renew its lease for this long kills its own VMs (self-fencing). "
       "A database outage shorter than this loses no desktop."),
    _k("hkd.cluster.node_timeout", 90, "float",
       "Another node whose lease a monitor saw unrenewed for this long, on one unbroken "
       "database connection, is declared lost and its VMs released. Must exceed "
       "hkd.lease.fence_timeout by the time the node needs to kill its VMs."),
    _k("hkd.poll.interval", 30, "float",
       "Safety-net poll for commands whose notification was lost."),
    _k("hkd.metrics.address", "127.0.0.1:9640", "str",
       "HOST:PORT where qvd-hkd serves its Prometheus metrics (/metrics); empty: no metrics. "
       "Read at start.", "node"),
    _k("internal.hkd.max_heavy", 10, "int", "VM starts/stops running at once on one node."),
    _k("hkd.vm.max_failed_starts", 3, "int",
       "Consecutive failed starts after which a VM is blocked, with the reason recorded."),
    _k("internal.hkd.timeout.vm.state.starting", 120, "float",
       "Seconds a VM may take from start to a VMA that answers."),
    _k("internal.hkd.timeout.vm.state.stopping_shutdown", 30, "float",
       "Seconds to wait after asking the VMA to power off."),
    _k("internal.hkd.timeout.vm.state.stopping_stop", 20, "float",
       "Seconds to wait after asking the backend to stop the VM, before killing it."),
    _k("internal.hkd.timeout.vm.state.zombie_retry", 10, "float",
       "Seconds between two cleanup attempts of a zombie VM."),
    _k("internal.hkd.vma.ping.interval", 5, "float", "Seconds between two VMA pings."),
    _k("internal.hkd.vma.ping.interval_after_failure", 2, "float",
       "Seconds between VMA pings after one failed."),
    _k("internal.hkd.vma.failures.starting", 40, "int",
       "Failed pings after which a starting VM is dead (together with the time threshold)."),
    _k("internal.hkd.vma.failures.running", 6, "int",
       "Failed pings after which a running VM is dead (together with the time threshold)."),
    _k("internal.hkd.vma.dead_after.starting", 120, "float",
       "Seconds since last seen alive after which a starting VM is dead."),
    _k("internal.hkd.vma.dead_after.running", 30, "float",
       "Seconds since last seen alive after which a running VM is dead."),
    _k("internal.hkd.cluster.node.timeout", 15, "float",
       "QVD's name for hkd.cluster.node_timeout; kept for old node files."),
    # --- administration API (qvd-api) -------------------------------------------------------
    _k("api.address", "0.0.0.0", "str", "Address qvd-api listens on."),
    _k("api.port", 8444, "port", "Port qvd-api listens on (HTTPS)."),
    _k("api.use_ssl", 1, "bool", "Serve TLS (1; the L7R's stored certificate unless --cert "
       "is given) or plain HTTP (0, tests only)."),
    _k("api.token.lifetime", 3600, "float",
       "Seconds an administrator's bearer token from POST /api/v1/login lasts."),
    _k("api.upload.max_size", 65536, "int", "Largest DI upload qvd-api accepts, in MiB."),
    # --- layer-7 router ---------------------------------------------------------------------
    _k("l7r.address", "0.0.0.0", "str", "Address the HTTPS acceptor listens on."),
    _k("l7r.port", 8443, "port", "Port the HTTPS acceptor listens on."),
    _k("l7r.use_ssl", 1, "bool", "Serve TLS (1) or plain HTTP (0, tests only)."),
    _k("l7r.auth.plugins", "default,token", "str",
       "Comma-separated authentication chain: default (database), ldap, token (a chain "
       "without token refuses the tenant's bearer tokens)."),
    _k("l7r.max_connections", 500, "int", "Concurrent client connections per node."),
    _k("l7r.prefork", 2, "int",
       "Connection processes the L7R keeps forked ahead, each with its database connection "
       "open and warm, so a new client waits for neither (0: fork one per client as it comes; "
       "each ready one holds one of l7r.database.max_connections)."),
    _k("l7r.portal.enabled", 1, "bool",
       "Serve the browser portal (https://node:port/) and its desktop tunnel (a WebSocket) on "
       "the L7R's port; QVD clients' /qvd/ paths are served either way."),
    _k("l7r.portal.nx_as_vnc", 1, "bool",
       "A browser opening a desktop whose vma.session.type is nx gets a VNC session in its "
       "place (0: such desktops are refused in browsers, with a message saying so)."),
    _k("l7r.limits.header_size", 16384, "int", "Largest request head in bytes."),
    _k("l7r.limits.header_count", 100, "int", "Most request headers."),
    _k("l7r.limits.request_line", 8192, "int", "Longest request line in bytes."),
    _k("l7r.timeout.handshake", 10, "float", "Seconds allowed for the TLS handshake."),
    _k("l7r.timeout.idle", 60, "float", "Seconds a connection may sit idle between requests."),
    _k("l7r.timeout.head", 10, "float",
       "Seconds allowed for a whole request head, from its first byte (for the first request: "
       "from the end of the TLS handshake); slower clients get 408."),
    _k("l7r.proxy_protocol.trusted", "", "str",
       "Comma-separated addresses of load balancers that open each connection with a PROXY "
       "protocol v2 header: the client address it names is the one back-off, caps, logs and "
       "sessions see. No per-address cap applies to the balancers themselves."),
    _k("l7r.max_connections.per_address", 50, "int",
       "Concurrent client connections from one client address per node; more get 503."),
    _k("l7r.database.max_connections", 16, "int",
       "Database connections the node's L7R processes hold at once (a process holds one only "
       "while it serves a request); keep nodes x (this + 3) below the server's "
       "max_connections."),
    _k("l7r.database.wait", 10, "float",
       "Seconds a request waits for one of those connections before it gets 503."),
    _k("l7r.auth.max_concurrent_hashes", 2, "int",
       "Password checks (Argon2id, 64 MiB each) running at once on a node."),
    _k("l7r.auth.hash_wait", 5, "float",
       "Seconds a login waits for a free password check slot before it gets 503."),
    _k("l7r.auth.backoff.max_failures", 5, "int",
       "Failed logins per login or client address before back-off starts."),
    _k("l7r.auth.backoff.seconds", 30, "float", "Back-off after too many failed logins."),
    _k("l7r.auth.token.lifetime", 86400, "int", "Seconds an auth token stays valid."),
    _k("l7r.auth.plugin.default.salt", "", "str",
       "QVD's global salt, to accept legacy base64(sha256(salt+password)) hashes of migrated "
       "users (each is re-hashed with Argon2id at its first successful login)."),
    _k("l7r.loadbalancer.plugin", "default", "str", "Host placement plugin."),
    _k("l7r.loadbalancer.plugin.default.weight.ram", 1, "float", "Weight of free RAM."),
    _k("l7r.loadbalancer.plugin.default.weight.cpu", 1, "float", "Weight of free CPU."),
    _k("l7r.loadbalancer.plugin.default.weight.random", 1, "float", "Weight of chance."),
    _k("internal.l7r.timeout.vm_start", 270, "float", "Seconds a client waits for its VM."),
    _k("internal.l7r.timeout.vm_stop", 60, "float",
       "Seconds /qvd/stop_vm waits for the VM to be stopped before answering 408."),
    _k("internal.l7r.timeout.takeover", 30, "float",
       "Seconds to take a desktop over from another connection."),
    _k("internal.l7r.timeout.x_start", 10, "float",
       "Seconds to wait for the desktop session to listen."),
    _k("internal.l7r.short_session", 120, "int", "Sessions shorter than this count as short."),
    _k("auth.ldap.host", "", "str",
       "LDAP URI(s), space-separated, tried in turn: ldap://host:389 or ldaps://host:636 "
       "(a bare host name means ldap://)."),
    _k("auth.ldap.base", "", "str", "Search base."),
    _k("auth.ldap.scope", "sub", "enum:base|one|sub", "Search scope under auth.ldap.base."),
    _k("auth.ldap.filter", "(uid=%u)", "str", "Search filter; %u is the login."),
    _k("auth.ldap.binddn", "", "str", "DN for the search bind (empty: anonymous)."),
    _k("auth.ldap.bindpass", "", "str", "Password for the search bind."),
    _k("auth.ldap.dn_pattern", "", "str",
       "Bind directly as this DN, without a search; %u is the login."),
    _k("auth.ldap.starttls", 0, "bool", "Upgrade the LDAP connection with StartTLS."),
    _k("auth.ldap.cacert", "", "path",
       "CA certificate file that signed the LDAP server's certificate (ldaps:// and StartTLS); "
       "empty: the system's CAs."),
    _k("auth.ldap.timeout", 5, "float",
       "Seconds to wait for the LDAP server (connect and each operation)."),
    _k("auth.ldap.attr.uid", "uidNumber", "str", "LDAP attribute with the user's uid."),
    _k("auth.ldap.attr.gid", "gidNumber", "str", "LDAP attribute with the user's gid."),
    _k("auth.ldap.attr.home", "homeDirectory", "str", "LDAP attribute with the user's home."),
    _k("auth.ldap.autocreate", 0, "bool",
       "Create the user (without a password) in its tenant on first successful LDAP login."),
    _k("auth.ldap.autocreate.osf", "", "str",
       "OSF of the tenant that gets a VM for each user auto-created (empty: no VM)."),
    _k("auth.ldap.autocreate.max_per_hour", 100, "int",
       "Most users auto-created per tenant in any hour; past it first logins get 401."),
    _k("auth.ldap.attr.login", "uid", "str",
       "LDAP attribute whose value, read from the entry bound, is the user's login."),
    _k("auth.ldap.attr.groups", "memberOf", "str",
       "LDAP attribute of the user's entry naming their groups (DNs, as memberOf, or names): "
       "read at each password login, for pools given to groups (`pool members add_group=`); "
       "empty: not read."),
    _k("auth.ldap.group.filter", "", "str",
       "Search for the user's groups under auth.ldap.group.base (their cn is the name), as "
       "directories without memberOf need: %u is the login, %d the user's DN, e.g. "
       "(&(objectClass=posixGroup)(memberUid=%u)); empty: no search."),
    _k("auth.ldap.group.base", "", "str",
       "Base of the auth.ldap.group.filter search (empty: auth.ldap.base)."),
    _k("l7r.auth.login.case_insensitive", 1, "bool",
       "Logins differing only in case are one user (an exact match wins over a folded one)."),
    # --- desktop pools (db/ops/pools.py, hkd/pool_keeper.py, l7r/pools.py) ------------------
    _k("pool.max_preparing", 4, "int",
       "Most VMs of one pool being created or started at once (a login storm must not start "
       "a thousand VMs): the pool keepers and the L7Rs wait for starts to finish."),
    _k("pool.release_after", 300, "float",
       "Seconds a throw-away pool VM stays its user's after they leave; then it is stopped, "
       "its home and overlay discarded, and it goes back to the pool."),
    _k("pool.poll.interval", 10, "float",
       "Seconds between a node's pool-keeping passes when no change wakes it (notifications "
       "on qvd_pools wake it at once; this only covers lost ones)."),
    # --- VMs --------------------------------------------------------------------------------
    _k("vm.hypervisor", "lxc", "enum:lxc|kvm|process", "Backend that runs this node's VMs."),
    _k("vm.network.bridge", "qvdnet", "str", "Bridge the VMs are plugged into."),
    _k("vm.network.ip.start", "10.0.0.100", "ip", "First address given to VMs."),
    _k("vm.network.netmask", "255.255.0.0", "ip", "Netmask of the VM network."),
    _k("vm.network.gateway", "", "str",
       "The node's address on the VM bridge, the gateway given to its VMs, when its host has "
       "no vm_address (qvd-admin host edit vm_address=); empty: the network's first address."),
    _k("vm.network.uplink", "", "str",
       "An interface the node enslaves to its VM bridge, so that the VM networks of several "
       "nodes join through a switch (each node with its own host vm_address); VMs' frames "
       "leave by it only as answers to the nodes' connections. Empty: none (one node)."),
    _k("vm.network.use_dhcp", 0, "bool", "Give VMs their address with dnsmasq static leases."),
    _k("vm.network.firewall.protect_host", 1, "bool", "VMs may not open connections to nodes."),
    _k("vm.network.firewall.protect_vms", 1, "bool", "VMs may not reach each other."),
    _k("vm.network.firewall.nat", 0, "bool", "Masquerade VM traffic leaving the bridge."),
    _k("vm.network.allow", "", "str",
       "What VMs may reach beyond the VM network, comma-separated networks or addresses with "
       "an optional port (10.1.0.0/16, 10.2.0.5:443/tcp); empty: nothing."),
    _k("vm.overlay.persistent", 0, "bool", "Keep a VM's overlay across restarts."),
    _k("vm.lxc.home.per.user", 0, "bool", "One home volume per user instead of per VM."),
    _k("vm.lxc.init", "/usr/bin/qvd-vma", "str",
       "Container init: the agent, started with --address/--port/--x-port of the VM."),
    _k("vm.lxc.unionfs.bind.fstab", 0, "bool",
       "Use an extended DI's lxc/fstab (its entries are checked: storage paths only)."),
    _k("vm.lxc.cpu.shares", 1024, "int", "CPU weight of each container (cgroup cpu.shares)."),
    _k("vm.lxc.cpuset", "", "str", "CPUs containers may use, e.g. 2-7 (empty: all)."),
    _k("vm.lxc.config.extra", 0, "bool",
       "Append an extended DI's lxc/config-extra (allowed keys only: no hooks, no host mounts)."),
    _k("vm.lxc.image.max_size", 16384, "int",
       "MiB an unpacked DI may take at most; a larger image is refused."),
    _k("vm.lxc.privileged", 0, "bool",
       "Run containers without a user namespace (root in a VM is root on the node: never "
       "for untrusted users)."),
    _k("vm.lxc.idmap.base", 100000, "int",
       "First host uid/gid that containers' ids are mapped to (the node's subordinate range)."),
    _k("vm.lxc.idmap.size", 65536, "int", "How many uids/gids each container may use."),
    _k("vm.lxc.pids.max", 1024, "int", "Processes each container may have at once."),
    _k("vm.lxc.hooks.allow", 0, "bool",
       "Run an extended DI's hooks/<pre-start|mount|start|stop|post-stop> as LXC hooks "
       "(they run as root on the node: only for trusted images)."),
    _k("vm.kvm.accel", "auto", "enum:auto|kvm|tcg", "KVM acceleration or QEMU's TCG."),
    _k("vm.kvm.uri", "qemu:///system", "str", "libvirt connection URI."),
    _k("internal.vm.port.vma", 3030, "port", "Port of the VMA inside each VM."),
    _k("internal.vm.port.x", 4100, "port", "Port of the desktop session inside each VM."),
    # --- agent inside the VM ------------------------------------------------------------------
    _k("vma.session.type", "vnc", "enum:nx|vnc", "Desktop protocol of the session."),
    _k("vma.x_session", "", "str", "Command that runs the user's session; desktop: QVD's own "
       "(Openbox, lxpanel, PCManFM, LXTerminal); empty: that inside a VM, else an xterm."),
    _k("vma.timeout.listening", 10, "float", "A listening session without a client is killed."),
    _k("vma.timeout.suspending", 20, "float", "Seconds a session may take to suspend."),
    _k("vma.timeout.stopping", 20, "float", "Seconds a session may take to stop."),
    _k("qvd.vm.user.name", "qvd", "str", "Account the desktop runs as inside the VM."),
    _k("qvd.vm.user.uid", 1000, "int", "Its uid when LDAP gives none."),
    _k("qvd.vm.user.home", "/home", "path", "Parent of the users' home directories."),
    _k("qvd.vm.user.shell", "/bin/bash", "path", "The account's shell."),
]

# Keys under these prefixes are not listed above but are valid (admin hooks, custom values).
OPEN_PREFIXES = ("vma.on_action.", "vma.on_state.", "custom.")

BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
