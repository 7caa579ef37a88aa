"""The network lab of tests/test_port_policy.py: a node and its VMs as network namespaces, the
frames a VM sends built by hand, and what reaches the node read back.

Everything runs inside network namespaces the lab makes (names qvdp*, network
10.239.0.0/24, no route out): a "node" namespace holding the bridge the product makes, three
"VM" namespaces plugged into it by veth pairs (and a tap, as KVM's), and an "outside"
namespace the node routes to, standing for the node's other networks (the database, LDAP,
other nodes). The product's functions run in a forked child that entered the node's
namespace (setns), so their `nft` and netlink calls touch only that namespace; the host's
tables and links are never touched. What reaches the node is read with an AF_PACKET socket on
the bridge (the frames the node receives) and with plain sockets."""
from __future__ import annotations

import ctypes
import fcntl
import json
import multiprocessing
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid

import pytest

from qvd.db.config import Config
from qvd.hkd.backends import bridge
from qvd.hkd.backends.bridge import mac_for

BRIDGE = "qvdpbr"
NODE_IP = "10.239.0.1"             # the node's address on the VM network 10.239.0.0/25
OUT_NODE, OUT_IP = "10.239.0.129", "10.239.0.130"   # "another network" of the node
VMS = {"a": ("qvdp1", "10.239.0.10"), "b": ("qvdp2", "10.239.0.11"),
       "c": ("qvdp3", "10.239.0.12")}
VM_LINK = "qvdpeth"                 # the VM's side of its veth, inside its namespace
ETH_P_ALL, ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0003, 0x0800, 0x0806, 0x86DD
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def need(what: str, present: bool) -> None:
    """A missing tool skips; under CI it is a failure (the suite must really run there)."""
    if not present:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the port policy tests need {what}")
        pytest.skip(f"the port policy tests need {what}")


# --- running code inside a namespace ------------------------------------------------------
def _enter(ns: str) -> None:
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {ns}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class _Link:
    """What a background child sees of its parent."""

    def __init__(self, conn):
        self.conn = conn

    def ready(self) -> None:
        self.conn.send(("ready", None))

    def stopping(self) -> bool:
        return self.conn.poll()


def _child(conn, ns, fn, args, background):
    try:
        _enter(ns)
        result = ("ok", fn(_Link(conn), *args) if background else fn(*args))
    except BaseException as exc:  # handed to the parent, which raises it
        result = ("error", exc)
    try:
        conn.send(result)
    except Exception:
        conn.send(("error", RuntimeError(repr(result[1]))))
    conn.close()


class Running:
    """fn(link, *args) in a forked child inside namespace ns; it calls link.ready() once it
    listens and returns (its result goes to stop()) once link.stopping()."""
    children: list["Running"] = []

    def __init__(self, ns: str, fn, *args, background: bool = True):
        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=_child, args=(child, ns, fn, args, background),
                                    daemon=True)
        self.proc.start()
        child.close()
        Running.children.append(self)
        if background:
            self._expect("ready", 10)

    def _expect(self, wanted: str, timeout: float):
        if not self.conn.poll(timeout):
            self.end()
            raise TimeoutError(f"a child in a namespace did not answer within {timeout} s")
        status, value = self.conn.recv()
        if status == "error":
            self.end()
            raise value
        assert status == wanted, status
        return value

    def stop(self, timeout: float = 10):
        self.conn.send("stop")
        return self.result(timeout)

    def stop_when_done(self, timeout: float = 5):
        """The result once fn returned by itself (it saw what it waited for); after
        `timeout` without that, what it has by then."""
        if not self.conn.poll(timeout):
            self.conn.send("stop")
        return self.result()

    def result(self, timeout: float = 30):
        try:
            return self._expect("ok", timeout)
        finally:
            self.end()

    def end(self) -> None:
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        if self in Running.children:
            Running.children.remove(self)


def in_ns(ns: str, fn, *args, timeout: float = 30):
    """fn(*args) in a forked child inside namespace ns; its result or its exception."""
    return Running(ns, fn, *args, background=False).result(timeout)


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"
    return done.stdout


# --- frames -------------------------------------------------------------------------------
def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ether(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return _mac(dst) + _mac(src) + struct.pack("!H", ethertype) + payload


def udp_frame(dst_mac: str, src_mac: str, src_ip: str, dst_ip: str, sport: int, dport: int,
              data: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data  # no UDP checksum
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return ether(dst_mac, src_mac, ETH_P_IP, header + udp)


def arp_frame(dst_mac: str, src_mac: str, op: int, sha: str, spa: str, tha: str,
              tpa: str) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, _mac(sha),
                      socket.inet_aton(spa), _mac(tha), socket.inet_aton(tpa))
    return ether(dst_mac, src_mac, ETH_P_ARP, arp)


def _send_frames(link_name: str, frames: list[bytes]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((link_name, 0))
        for frame in frames:
            sock.send(frame)


def _capture(link, link_name: str, until: bytes | None = None) -> list[bytes]:
    """Every frame the node receives on link_name (not the ones it sends) until stopped, or
    until one holds the bytes `until`."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.bind((link_name, 0))
        sock.settimeout(0.05)
        link.ready()
        frames = []
        while not link.stopping() and not (until and frames and until in frames[-1]):
            try:
                data, address = sock.recvfrom(65535)
            except socket.timeout:
                continue
            if address[2] != socket.PACKET_OUTGOING:
                frames.append(data)
        sock.setblocking(False)
        while True:  # what came while the parent asked to stop
            try:
                data, address = sock.recvfrom(65535)
            except BlockingIOError:
                return frames
            if address[2] != socket.PACKET_OUTGOING:
                frames.append(data)


def udp_listen(link, address: str, port: int,
               until: bytes | None = None) -> list[tuple[bytes, str]]:
    """(data, sender) of every datagram until stopped, or until one is `until`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.settimeout(0.05)
        link.ready()
        got = []
        while not link.stopping() and not (until and got and got[-1][0] == until):
            try:
                data, sender = sock.recvfrom(2048)
            except socket.timeout:
                continue
            got.append((data, sender[0]))
        sock.setblocking(False)
        while True:  # what came while the parent asked to stop
            try:
                data, sender = sock.recvfrom(2048)
            except BlockingIOError:
                return got
            got.append((data, sender[0]))


def udp_send(dst: str, port: int, data: bytes, times: int = 3) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(times):
            sock.sendto(data, (dst, port))
            time.sleep(0.05)


def tcp_serve(link, address: str, ports: list[int]) -> int:
    """Accepts (and closes) connections on each port until stopped; how many it took."""
    servers = []
    for port in ports:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((address, port))
        server.listen(8)
        server.settimeout(0.05)
        servers.append(server)
    link.ready()
    taken = 0
    while not link.stopping():
        for server in servers:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            conn.close()
            taken += 1
    for server in servers:
        server.close()
    return taken


def tcp_connects(dst: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((dst, port), timeout=timeout):
            return True
    except OSError:
        return False


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def tap_write(name: str, frames: list[bytes]) -> None:
    """Frames the tap's guest sends (what QEMU writes into libvirt's tap)."""
    tunsetiff, iff_tap, iff_no_pi = 0x400454CA, 0x0002, 0x1000
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, tunsetiff, struct.pack("16sH", name.encode(), iff_tap | iff_no_pi))
        deadline = time.monotonic() + 5  # the carrier comes up and the port forwards
        while time.monotonic() < deadline:
            shown = subprocess.run(["bridge", "-j", "link", "show", "dev", name],
                                   capture_output=True, text=True).stdout
            if '"state":"forwarding"' in shown.replace(" ", ""):
                break
            time.sleep(0.05)
        for frame in frames:
            os.write(fd, frame)
        time.sleep(0.1)  # the tap goes with its fd; no event says the bridge took the frames
    finally:
        os.close(fd)


# --- the test network -----------------------------------------------------------------------
def _clear_stale_namespaces() -> None:
    """Namespaces left by an interrupted run of this file (their pid suffix is dead)."""
    listed = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True)
    for entry in json.loads(listed.stdout or "[]"):
        name = entry["name"]
        suffix = name[5:]
        dead = not os.path.exists(f"/proc/{suffix}") or suffix == str(os.getpid())  # reused
        if name.startswith("qvdp") and suffix.isdigit() and dead:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Net:
    def __init__(self, tmp_path):
        self.tag = str(os.getpid())
        self.node = f"qvdpn{self.tag}"
        self.out = f"qvdpx{self.tag}"
        self.vm = {name: f"qvdp{name}{self.tag}" for name in VMS}
        self.made: list[str] = []
        self.run = str(tmp_path / "run")

    def cfg(self, settings: dict | None = None) -> Config:
        node = {"path.run": self.run, "path.log": os.path.join(self.run, "log"),
                "vm.network.bridge": BRIDGE, "vm.network.ip.start": "10.239.0.10",
                "vm.network.netmask": "255.255.255.128",
                "vm.network.firewall.protect_host": "0", "vm.network.firewall.nat": "0",
                "vm.network.use_dhcp": "0", "vm.network.allow": ""}
        return Config(node={**node, **(settings or {})})

    def add_ns(self, name: str) -> None:
        ip("netns", "add", name)
        self.made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def up(self) -> None:
        for name in (self.node, self.out, *self.vm.values()):
            self.add_ns(name)
        for number, (name, (port, address)) in enumerate(VMS.items(), 1):
            # the port's policy first (by name), then the port: as the backends do
            in_ns(self.node, bridge.attach_vm, self.cfg(), number, address, port)
            ns = self.vm[name]
            ip("-n", self.node, "link", "add", port, "type", "veth", "peer", "name", VM_LINK,
               "netns", ns)
            ip("-n", self.node, "link", "set", port, "master", BRIDGE, "up")
            ip("-n", ns, "link", "set", VM_LINK, "address", mac_for(address), "up")
            ip("-n", ns, "addr", "add", f"{address}/25", "dev", VM_LINK)
            ip("-n", ns, "route", "add", "default", "via", NODE_IP)
            in_ns(self.node, bridge.port_up, self.cfg(), port)
        ip("-n", self.node, "link", "add", "qvdpo", "type", "veth", "peer", "name", VM_LINK,
           "netns", self.out)
        ip("-n", self.node, "addr", "add", f"{OUT_NODE}/25", "dev", "qvdpo")
        ip("-n", self.node, "link", "set", "qvdpo", "up")
        ip("-n", self.out, "addr", "add", f"{OUT_IP}/25", "dev", VM_LINK)
        ip("-n", self.out, "link", "set", VM_LINK, "up")
        ip("-n", self.out, "route", "add", "10.239.0.0/25", "via", OUT_NODE)
        in_ns(self.node, _write, "/proc/sys/net/ipv4/ip_forward", "1")
        # so that a forged ARP, were it let through, would surely be believed (the control)
        in_ns(self.node, _write, f"/proc/sys/net/ipv4/neigh/{BRIDGE}/locktime", "0")
        in_ns(self.node, _write, f"/proc/sys/net/ipv4/conf/{BRIDGE}/arp_accept", "1")
        self.bridge_mac = json.loads(ip("-n", self.node, "-j", "link", "show", BRIDGE))[0][
            "address"]

    def down(self) -> None:
        for child in list(Running.children):
            child.end()
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    # what the node sees; VM c's own packet, sent after the action, proves that the window
    # covered it (an empty capture would otherwise pass any "nothing got through")
    # (the capture ends once the probe is in: what the action sent came before it)
    def frames_at_node(self, action) -> list[bytes]:
        probe, (_, c_ip) = token(), VMS["c"]
        capture = Running(self.node, _capture, BRIDGE, probe)
        try:
            action()
            self.send_raw("c", udp_frame(self.bridge_mac, mac_for(c_ip), c_ip, NODE_IP, 5000,
                                         7001, probe))
        finally:
            frames = capture.stop_when_done()
        assert holding(frames, probe), "the node did not see VM c's own frame"
        return [frame for frame in frames if probe not in frame]

    def udp_at_node(self, action, port: int = 7001):
        probe = token()
        listener = Running(self.node, udp_listen, NODE_IP, port, probe)
        try:
            action()
            self.send_udp("c", NODE_IP, probe, port)
        finally:
            got = listener.stop_when_done()
        assert (probe, VMS["c"][1]) in got, "the node did not get VM c's own packet"
        return [entry for entry in got if entry[0] != probe]

    def neighbour(self, address: str) -> str | None:
        entries = json.loads(ip("-n", self.node, "-j", "neigh", "show", "dev", BRIDGE))
        for entry in entries:
            if entry.get("dst") == address:
                return entry.get("lladdr")
        return None

    def send_raw(self, vm: str, *frames: bytes) -> None:
        in_ns(self.vm[vm], _send_frames, VM_LINK, list(frames))

    def send_udp(self, vm: str, dst: str, data: bytes, port: int = 7001) -> None:
        in_ns(self.vm[vm], udp_send, dst, port, data)

    def node_do(self, fn, *args):
        return in_ns(self.node, fn, *args)


@pytest.fixture
def net(tmp_path):
    need("ip (iproute2)", bool(shutil.which("ip")))
    need("nft (nftables)", bool(shutil.which("nft")))
    _clear_stale_namespaces()
    network = Net(tmp_path)
    try:
        network.up()
        yield network
    finally:
        network.down()
    assert not [name for name in network.made
                if os.path.exists(f"/run/netns/{name}")], "a test namespace was left"


def token() -> bytes:
    return uuid.uuid4().hex.encode()


def holding(frames: list[bytes], data: bytes) -> list[bytes]:
    return [frame for frame in frames if data in frame]


def arps_from(frames: list[bytes], src: str, sha: str, spa: str) -> list[bytes]:
    """ARP frames sent from MAC src that say spa is at sha."""
    wanted = _mac(sha) + socket.inet_aton(spa)
    return [f for f in frames
            if f[6:12] == _mac(src) and f[12:14] == b"\x08\x06" and f[22:32] == wanted]


def from_mac(frames: list[bytes], mac: str) -> list[bytes]:
    return [frame for frame in frames if frame[6:12] == _mac(mac)]
