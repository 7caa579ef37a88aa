"""A cluster on one machine that behaves like several (issue 20, part 2): real qvd-hkd nodes,
each in a network namespace of its own, as separate machines would be.

    root namespace (the tests)            switch namespace                node namespace n
    qvdcr<tag> 10.235.0.254  ---veth---  qvdch -+ lan bridge +- qvdcl<n> ---veth--- eth0 10.235.0.1<n>
      the database's forwarder                  |            |                      (L7R, DB)
      and the clients of the L7Rs              vmnet bridge +- qvdcv<n> ---veth--- vmup (uplink)
                                                                                qvdcbr 10.236.0.<n+1>
                                                                                  (the VM bridge)

Each node has two links, as a machine with a dedicated VM network has two interfaces: its
"LAN" address (the host's address, its L7R listens there, it reaches the database there), and
`vmup`, the uplink qvd-hkd enslaves to its VM bridge (vm.network.uplink), on which it carries
its own vm_address (10.236.0.2, .3, ...); the VMs take addresses from 10.236.0.100. The two
switches are bridges of a namespace of their own. Nothing has a route out: every namespace
only knows its connected networks, and the root namespace only learns 10.235.0.0/24.

The test PostgreSQL listens on 127.0.0.1 of the root namespace only: a forwarder (threads of
the test process) listens on 10.235.0.254 and carries each connection to it. qvd-hkd is started
inside its node's namespace by tests/netns_machine.py: its network namespace, and a mount
namespace of its own whose /sys is that network namespace's (LXC finds the bridge by
/sys/class/net) with the cgroup hierarchies bound in again; the mounts the node makes (the
containers' roots) are its own, as on a machine, and go with its last process. Its L7R,
watchdog and containers inherit both. LXC's command sockets are abstract, so per network
namespace: lxc-stop and lxc-info for a node's containers run on that node (`in_node`)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

from hkd_nodes import QVD_HKD, HkdNode, wait_for
from netns_lab import ip
from qvd.hkd.backends.process import free_port

LAN_PREFIX, VM_PREFIX = "10.235.0.", "10.236.0."
ROOT_ADDRESS = LAN_PREFIX + "254"          # the tests' side of the switch: forwarder, clients
VM_NETWORK = {"vm.network.ip.start": VM_PREFIX + "100", "vm.network.netmask": "255.255.255.0"}
BRIDGE, UPLINK, LAN_LINK = "qvdcbr", "vmup", "eth0"
PREFIX = "qvdc"                            # every namespace and root link this file makes
MACHINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns_machine.py")


def on_node(ns: str, staging: str, command: list[str]) -> list[str]:
    """command run as on the machine namespace ns stands for (tests/netns_machine.py; its
    bind mounts pass through the empty directory staging)."""
    return [sys.executable, MACHINE, ns, staging, *command]


def lan_address(number: int) -> str:
    return f"{LAN_PREFIX}{10 + number}"


def vm_address(number: int) -> str:
    return f"{VM_PREFIX}{1 + number}"


class Forwarder:
    """TCP from (address, free port) to target, by threads of this process; stop() closes
    the listener and every connection it carries."""

    def __init__(self, address: str, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server((address, 0))
        self.address = (address, self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stop() shut the listener down
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.stopped:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            sockets, self.sockets = self.sockets, []
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.listener.close()
        self.thread.join(10)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class NsNode(HkdNode):
    """An HkdNode whose qvd-hkd runs in network namespace `ns`, its database through the
    forwarder, its L7R on its LAN address."""

    def __init__(self, env, name: str, ns: str, staging: str, number: int,
                 database: tuple[str, int], extra_conf: str = ""):
        self.ns, self.staging, self.number = ns, staging, number
        self.address, self.vm_address = lan_address(number), vm_address(number)
        self.port = free_port()
        super().__init__(env, name, (
            f"database.host = {database[0]}\ndatabase.port = {database[1]}\n"
            f"l7r.address = {self.address}\nl7r.port = {self.port}\n"
            f"vm.network.bridge = {BRIDGE}\nvm.network.uplink = {UPLINK}\n{extra_conf}"))

    def start(self) -> None:
        env = dict(os.environ, QVD_CONFIG=self.conf)
        env.pop("QVD_HOME", None)
        with open(os.path.join(self.home, "hkd.log"), "ab") as log:
            self.proc = subprocess.Popen(on_node(self.ns, self.staging, [QVD_HKD]), env=env, stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.state() == ("running", self.proc.pid) or self.proc.poll() is not None,
                 30, f"{self.name} to run")
        assert self.proc.poll() is None, self.log()


def in_node(node: "NsNode", *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A command on a node (its namespaces, as its qvd-hkd runs)."""
    return subprocess.run(on_node(node.ns, node.staging, list(command)), capture_output=True,
                          text=True, timeout=timeout)


def clear_stale() -> None:
    """Namespaces and root links left by an interrupted run (their pid suffix is dead)."""
    def dead(suffix: str) -> bool:
        return suffix.isdigit() and (not os.path.exists(f"/proc/{suffix}")
                                     or suffix == str(os.getpid()))
    listed = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True)
    for entry in json.loads(listed.stdout or "[]"):
        name = entry["name"]
        if name.startswith(PREFIX) and dead(name[len(PREFIX) + 1:]):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    links = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True)
    for entry in json.loads(links.stdout or "[]"):
        name = entry["ifname"]
        if name.startswith(PREFIX + "r") and dead(name[len(PREFIX) + 1:]):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


class NetnsCluster:
    """The namespaces, the switch and the forwarder; nodes added by node()."""

    def __init__(self, env, count: int):
        tag = str(os.getpid())
        self.env, self.count = env, count
        self.switch = f"{PREFIX}s{tag}"
        self.ns = {n: f"{PREFIX}{n}{tag}" for n in range(1, count + 1)}
        self.root_link = f"{PREFIX}r{tag}"
        self.made: list[str] = []
        self.nodes: list[NsNode] = []
        self.forwarder: Forwarder | None = None
        self.staging = os.path.join(env.home, "netns-sys")
        os.makedirs(self.staging, exist_ok=True)

    def up(self) -> None:
        clear_stale()
        for name in (self.switch, *self.ns.values()):
            ip("netns", "add", name)
            self.made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        for switch in ("lan", "vmnet"):
            ip("-n", self.switch, "link", "add", switch, "type", "bridge")
            ip("-n", self.switch, "link", "set", switch, "up")
        ip("link", "add", self.root_link, "type", "veth", "peer", "name", "qvdch",
           "netns", self.switch)
        ip("-n", self.switch, "link", "set", "qvdch", "master", "lan", "up")
        ip("addr", "add", f"{ROOT_ADDRESS}/24", "dev", self.root_link)
        ip("link", "set", self.root_link, "up")
        for number, ns in self.ns.items():
            for link, port, switch in ((LAN_LINK, f"qvdcl{number}", "lan"),
                                       (UPLINK, f"qvdcv{number}", "vmnet")):
                ip("-n", ns, "link", "add", link, "type", "veth", "peer", "name", port,
                   "netns", self.switch)
                ip("-n", self.switch, "link", "set", port, "master", switch, "up")
                ip("-n", ns, "link", "set", link, "up")
            ip("-n", ns, "addr", "add", f"{lan_address(number)}/24", "dev", LAN_LINK)
        pg = self.env.server.params
        self.forwarder = Forwarder(ROOT_ADDRESS, ("127.0.0.1", int(pg["port"])))

    def node(self, name: str, number: int, extra_conf: str = "") -> NsNode:
        """A node's host row (its LAN address, its vm_address) and its node.conf; start()
        it."""
        exists = self.env.sql("SELECT 1 FROM hosts WHERE name = :n", n=name)
        if exists:
            self.env.ok("host", "del", "-f", f"name={name}")
        self.env.ok("host", "add", f"name={name}", f"address={lan_address(number)}",
                    f"vm_address={vm_address(number)}")
        node = NsNode(self.env, name, self.ns[number], self.staging, number,
                      self.forwarder.address, extra_conf)
        self.nodes.append(node)
        return node

    def down(self) -> None:
        lxcpath = os.path.join(self.env.storage, "lxc")
        for node in self.nodes:
            node.cleanup()
        for node in self.nodes:  # containers left running: stopped on their node
            if os.path.isdir(lxcpath) and os.path.exists(f"/run/netns/{node.ns}"):
                for name in os.listdir(lxcpath):
                    in_node(node, "lxc-stop", "-n", name, "-P", lxcpath, "-k")
        from qvd.hkd.backends import dhcp
        from qvd.hkd.backends.lxc_storage import mounts_under
        for point in sorted(mounts_under(self.env.storage), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for node in self.nodes:
            dhcp.stop_server(node.run_dir, BRIDGE)
        if self.forwarder is not None:
            self.forwarder.stop()
        subprocess.run(["ip", "link", "del", self.root_link], capture_output=True)
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def gone(self) -> list[str]:
        """What of this cluster is still there (nothing once down() ran)."""
        left = [name for name in self.made if os.path.exists(f"/run/netns/{name}")]
        shown = subprocess.run(["ip", "link", "show", self.root_link], capture_output=True)
        return left + ([self.root_link] if shown.returncode == 0 else [])
