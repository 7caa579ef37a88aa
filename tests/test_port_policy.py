"""Per-port network policy (firewall.register_port through bridge.port_up, the inet forward
allow-list through bridge.attach_vm) with real frames.

Everything runs inside network namespaces this test makes (names qvdp*, network
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
import ipaddress
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
from qvd.hkd.backends import bridge, firewall
from qvd.hkd.backends.base import BackendError
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


def _need(what: str, present: bool) -> None:
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


def _capture(link, link_name: str) -> list[bytes]:
    """Every frame the node receives on link_name (not the ones it sends) until stopped."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.bind((link_name, 0))
        sock.settimeout(0.05)
        link.ready()
        frames = []
        while not link.stopping():
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


def _udp_listen(link, address: str, port: int) -> list[tuple[bytes, str]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.settimeout(0.05)
        link.ready()
        got = []
        while not link.stopping():
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


def _udp_send(dst: str, port: int, data: bytes, times: int = 3) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(times):
            sock.sendto(data, (dst, port))
            time.sleep(0.05)


def _tcp_serve(link, address: str, ports: list[int]) -> int:
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


def _tcp_connects(dst: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((dst, port), timeout=timeout):
            return True
    except OSError:
        return False


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _tap_write(name: str, frames: list[bytes]) -> None:
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
        time.sleep(0.1)
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
    def frames_at_node(self, action, settle: float = 0.3) -> list[bytes]:
        capture = Running(self.node, _capture, BRIDGE)
        probe, (_, c_ip) = token(), VMS["c"]
        try:
            action()
            self.send_raw("c", udp_frame(self.bridge_mac, mac_for(c_ip), c_ip, NODE_IP, 5000,
                                         7001, probe))
            time.sleep(settle)
        finally:
            frames = capture.stop()
        assert holding(frames, probe), "the node did not see VM c's own frame"
        return [frame for frame in frames if probe not in frame]

    def udp_at_node(self, action, port: int = 7001, settle: float = 0.3):
        listener = Running(self.node, _udp_listen, NODE_IP, port)
        probe = token()
        try:
            action()
            self.send_udp("c", NODE_IP, probe, port)
            time.sleep(settle)
        finally:
            got = listener.stop()
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
        in_ns(self.vm[vm], _udp_send, dst, port, data)

    def node_do(self, fn, *args):
        return in_ns(self.node, fn, *args)


@pytest.fixture
def net(tmp_path):
    _need("ip (iproute2)", bool(shutil.which("ip")))
    _need("nft (nftables)", bool(shutil.which("nft")))
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


# --- the tests ------------------------------------------------------------------------------
@root_only
def test_each_vm_reaches_the_node_with_its_own_mac_and_ip(net):
    sent = {name: token() for name in VMS}

    def send():
        for name in VMS:
            net.send_udp(name, NODE_IP, sent[name])
    got = net.udp_at_node(send)
    for name, (_, address) in VMS.items():
        assert (sent[name], address) in got, f"VM {name} did not reach the node"
        assert net.neighbour(address) == mac_for(address)  # its ARP went through too
    ports = net.node_do(firewall.registered_ports, BRIDGE)
    assert sorted(ports) == sorted(port for port, _ in VMS.values())


def _take_ip(net, vm: str, address: str) -> None:
    """The VM's root changes its address (and knows the node's MAC without asking)."""
    ns = net.vm[vm]
    ip("-n", ns, "addr", "flush", "dev", VM_LINK)
    ip("-n", ns, "addr", "add", f"{address}/25", "dev", VM_LINK)
    ip("-n", ns, "neigh", "replace", NODE_IP, "lladdr", net.bridge_mac, "dev", VM_LINK,
       "nud", "permanent")


@root_only
def test_a_vm_that_takes_another_vms_ip_gets_nothing_through(net):
    victim_ip, attacker_mac = VMS["b"][1], mac_for(VMS["a"][1])
    net.send_udp("b", NODE_IP, token())  # the node knows the victim
    assert net.neighbour(victim_ip) == mac_for(victim_ip)
    _take_ip(net, "a", victim_ip)
    spoofed = token()
    assert not net.udp_at_node(lambda: net.send_udp("a", NODE_IP, spoofed))
    frames = net.frames_at_node(lambda: net.send_udp("a", NODE_IP, spoofed))
    assert not from_mac(frames, attacker_mac), "the node saw frames of the spoofing VM"
    assert net.neighbour(victim_ip) == mac_for(victim_ip)

    # the node's traffic to the victim's address goes to the victim only
    to_victim = token()
    victim = Running(net.vm["b"], _udp_listen, "0.0.0.0", 7002)
    attacker = Running(net.vm["a"], _udp_listen, "0.0.0.0", 7002)
    net.node_do(_udp_send, victim_ip, 7002, to_victim)
    time.sleep(0.3)
    assert (to_victim, NODE_IP) in victim.stop()
    assert attacker.stop() == []

    # the control: without its policy the same port's spoofed packets do reach the node
    net.node_do(bridge.port_down, net.cfg(), VMS["a"][0])
    again = token()
    got = net.udp_at_node(lambda: net.send_udp("a", NODE_IP, again))
    assert (again, victim_ip) in got
    # taking one port out left the others' entries alone
    assert sorted(net.node_do(firewall.registered_ports, BRIDGE)) == ["qvdp2", "qvdp3"]


@root_only
def test_a_gratuitous_arp_claiming_another_vms_ip_is_dropped(net):
    victim_ip, attacker_mac = VMS["b"][1], mac_for(VMS["a"][1])
    net.send_udp("b", NODE_IP, token())
    assert net.neighbour(victim_ip) == mac_for(victim_ip)
    lies = [arp_frame("ff:ff:ff:ff:ff:ff", attacker_mac, 1, attacker_mac, victim_ip,
                      "00:00:00:00:00:00", victim_ip),           # gratuitous request
            arp_frame("ff:ff:ff:ff:ff:ff", attacker_mac, 2, attacker_mac, victim_ip,
                      "ff:ff:ff:ff:ff:ff", victim_ip),           # gratuitous reply
            arp_frame(net.bridge_mac, attacker_mac, 2, attacker_mac, victim_ip,
                      net.bridge_mac, NODE_IP)]                  # unsolicited reply to the node
    frames = net.frames_at_node(lambda: net.send_raw("a", *lies))
    assert not arps_from(frames, attacker_mac, attacker_mac, victim_ip), \
        "the node saw the forged ARP"
    assert net.neighbour(victim_ip) == mac_for(victim_ip)
    # and a sender hardware address that is not the frame's own is no better
    other = arp_frame("ff:ff:ff:ff:ff:ff", attacker_mac, 1, mac_for(victim_ip), victim_ip,
                      "00:00:00:00:00:00", NODE_IP)
    assert not arps_from(net.frames_at_node(lambda: net.send_raw("a", other)),
                         attacker_mac, mac_for(victim_ip), victim_ip)

    # the control: once the port has no policy, the very same frames poison the node's table
    net.node_do(bridge.port_down, net.cfg(), VMS["a"][0])
    frames = net.frames_at_node(lambda: net.send_raw("a", *lies))
    assert arps_from(frames, attacker_mac, attacker_mac, victim_ip)
    assert net.neighbour(victim_ip) == attacker_mac


@root_only
def test_a_forged_source_mac_is_dropped_and_the_bridge_keeps_the_victims_port(net):
    own_ip, victim_ip = VMS["a"][1], VMS["b"][1]
    net.send_udp("b", NODE_IP, token())  # the bridge learns the victim's MAC on its port
    own, random_mac, stolen = token(), token(), token()
    frames = net.frames_at_node(lambda: net.send_raw(
        "a",
        udp_frame(net.bridge_mac, mac_for(own_ip), own_ip, NODE_IP, 5000, 7001, own),
        udp_frame(net.bridge_mac, "02:00:de:ad:be:ef", own_ip, NODE_IP, 5000, 7001,
                  random_mac),
        udp_frame(net.bridge_mac, mac_for(victim_ip), victim_ip, NODE_IP, 5000, 7001,
                  stolen)))
    assert holding(frames, own), "the VM's own frame did not reach the node"
    assert not holding(frames, random_mac) and not holding(frames, stolen)
    fdb = json.loads(subprocess.run(["bridge", "-n", net.node, "-j", "fdb", "show", "br",
                                     BRIDGE], capture_output=True, text=True).stdout)
    ports_of = {entry["mac"]: entry.get("ifname") for entry in fdb if "vlan" not in entry}
    assert ports_of.get(mac_for(victim_ip)) == VMS["b"][0]
    assert "02:00:de:ad:be:ef" not in ports_of


@root_only
def test_ipv6_and_other_ethertypes_from_a_vm_port_are_dropped(net):
    own_ip, own_mac = VMS["a"][1], mac_for(VMS["a"][1])
    six, tagged, fine = token(), token(), token()
    ipv6 = struct.pack("!IHBB16s16s", 6 << 28, len(six), 59, 64,
                       socket.inet_pton(socket.AF_INET6, "fe80::1"),
                       socket.inet_pton(socket.AF_INET6, "ff02::1")) + six
    inner = udp_frame(net.bridge_mac, own_mac, own_ip, NODE_IP, 5000, 7001, tagged)
    vlan = inner[:12] + struct.pack("!HH", 0x8100, 5) + inner[12:]
    frames = net.frames_at_node(lambda: net.send_raw(
        "a", ether("33:33:00:00:00:01", own_mac, ETH_P_IPV6, ipv6), vlan,
        udp_frame(net.bridge_mac, own_mac, own_ip, NODE_IP, 5000, 7001, fine)))
    assert holding(frames, fine)
    assert not holding(frames, six) and not holding(frames, tagged)


@root_only
def test_dhcp_from_0_0_0_0_only_with_use_dhcp_and_only_from_the_vms_own_mac(net):
    port, own_ip = VMS["a"]
    own_mac = mac_for(own_ip)

    def discover(mac: str, data: bytes, dport: int = 67) -> bytes:
        return udp_frame("ff:ff:ff:ff:ff:ff", mac, "0.0.0.0", "255.255.255.255", 68, dport,
                         data)
    early = token()
    frames = net.frames_at_node(lambda: net.send_raw("a", discover(own_mac, early)))
    assert not holding(frames, early)  # static addresses: nothing from 0.0.0.0

    # what attach_vm registers with use_dhcp (without starting the node's dnsmasq here)
    net.node_do(firewall.register_port, BRIDGE, port, own_mac, own_ip, True)
    ask, forged, other = token(), token(), token()
    frames = net.frames_at_node(lambda: net.send_raw(
        "a", discover(own_mac, ask), discover("02:00:0a:ef:00:63", forged),
        discover(own_mac, other, dport=53)))
    assert holding(frames, ask)
    assert not holding(frames, forged) and not holding(frames, other)


@root_only
def test_a_rewrite_of_the_tables_keeps_every_port_registered(net):
    before = sorted(net.node_do(firewall.registered_ports, BRIDGE))
    net.node_do(bridge.attach_vm, net.cfg({"vm.network.allow": "10.239.0.130"}), 2, VMS["b"][1],
                VMS["b"][0])
    assert sorted(net.node_do(firewall.registered_ports, BRIDGE)) == before
    _take_ip(net, "a", VMS["c"][1])
    spoofed = token()
    assert not net.udp_at_node(lambda: net.send_udp("a", NODE_IP, spoofed))


@root_only
def test_the_node_routes_vm_traffic_only_to_what_vm_network_allow_names(net):
    server = Running(net.out, _tcp_serve, OUT_IP, [443, 444])

    def reach(port: int) -> bool:
        return in_ns(net.vm["a"], _tcp_connects, OUT_IP, port)
    assert not reach(443) and not reach(444)  # vm.network.allow empty: nothing

    net.node_do(bridge.attach_vm, net.cfg({"vm.network.allow": "10.239.0.130:443/tcp"}), 1,
                *reversed(VMS["a"]))
    assert reach(443) and not reach(444)

    net.node_do(bridge.attach_vm, net.cfg({"vm.network.allow": " 10.1.0.0/16, 10.239.0.128/25"}),
                1, *reversed(VMS["a"]))
    assert reach(443) and reach(444)

    # answers to a connection opened from the other network flow whatever the list says
    net.node_do(bridge.attach_vm, net.cfg(), 1, *reversed(VMS["a"]))
    assert not reach(443)
    vm_server = Running(net.vm["a"], _tcp_serve, VMS["a"][1], [8000])
    assert in_ns(net.out, _tcp_connects, VMS["a"][1], 8000)
    assert vm_server.stop() == 1
    assert server.stop() == 3  # the outside server took exactly the allowed connections


@root_only
def test_a_kvm_tap_port_gets_the_same_policy(net):
    _need("/dev/net/tun", os.path.exists("/dev/net/tun"))
    tap, own_ip = "qvdpk9", "10.239.0.20"
    own_mac = mac_for(own_ip)
    net.node_do(bridge.attach_vm, net.cfg(), 9, own_ip, tap)
    ip("-n", net.node, "tuntap", "add", "dev", tap, "mode", "tap")
    ip("-n", net.node, "link", "set", tap, "master", BRIDGE, "up")
    net.node_do(bridge.port_up, net.cfg(), tap)
    own, spoofed, forged, lie = token(), token(), token(), token()
    frames = net.frames_at_node(lambda: net.node_do(_tap_write, tap, [
        udp_frame(net.bridge_mac, own_mac, own_ip, NODE_IP, 5000, 7001, own),
        udp_frame(net.bridge_mac, own_mac, VMS["b"][1], NODE_IP, 5000, 7001, spoofed),
        udp_frame(net.bridge_mac, "02:00:de:ad:be:ef", own_ip, NODE_IP, 5000, 7001, forged),
        arp_frame("ff:ff:ff:ff:ff:ff", own_mac, 2, own_mac, VMS["b"][1],
                  "ff:ff:ff:ff:ff:ff", VMS["b"][1]) + lie]))
    assert holding(frames, own)
    assert not holding(frames, spoofed) and not holding(frames, forged)
    assert not holding(frames, lie)
    net.node_do(bridge.detach_vm, net.cfg(), 9, tap)  # KVM's cleanup names its tap
    assert tap not in net.node_do(firewall.registered_ports, BRIDGE)


# --- without root: what vm.network.allow may say ----------------------------------------
def test_vm_network_allow_is_parsed_into_networks_ports_and_protocols():
    allowed = firewall.parse_allow(" 10.1.0.0/16, 10.2.0.5:443/tcp,10.3.0.1:53 ,, 10.4.0.9:5/UDP")
    assert allowed == [
        firewall.Allowed(ipaddress.IPv4Network("10.1.0.0/16")),
        firewall.Allowed(ipaddress.IPv4Network("10.2.0.5/32"), 443, "tcp"),
        firewall.Allowed(ipaddress.IPv4Network("10.3.0.1/32"), 53),
        firewall.Allowed(ipaddress.IPv4Network("10.4.0.9/32"), 5, "udp")]
    assert firewall.parse_allow("") == [] and firewall.parse_allow(None) == []
    text = firewall.ruleset(BRIDGE, "10.239.0.0/25", True, False, allow=allowed)
    forward = text[text.index("chain forward"):]
    forward = forward[:forward.index("  }")]
    assert f'iifname "{BRIDGE}" oifname != "{BRIDGE}" ip daddr 10.2.0.5 tcp dport 443 accept' \
        in forward
    assert "ip daddr 10.3.0.1 meta l4proto { tcp, udp } th dport 53 accept" in forward
    assert forward.rstrip().splitlines()[-1].strip() == f'iifname "{BRIDGE}" drop'


@pytest.mark.parametrize("value, says", [
    ("10.1.0.0/33", "bad prefix length"),
    ("10.1.0.5/16", r"host bits set \(did you mean 10\.1\.0\.0/16\?\)"),
    ("db.example", "not an IPv4 network"),
    ("fe80::/64", "is IPv6; VMs have IPv4 only"),
    ("10.2.0.5:80:81", "not a network or an address"),
    ("10.2.0.5:99999", "bad port '99999'"),
    ("10.2.0.5:https", "bad port 'https'"),
    ("10.2.0.5:443/sctp", "bad protocol 'sctp'"),
])
def test_a_bad_vm_network_allow_is_one_clear_sentence(value, says):
    with pytest.raises(BackendError, match=r"^vm\.network\.allow: .*" + says):
        firewall.parse_allow(f"10.9.0.0/16, {value}")


def test_a_bad_vm_network_allow_stops_the_vms_prepare_before_anything_is_made(tmp_path):
    cfg = Config(node={"path.run": str(tmp_path / "run"), "vm.network.bridge": BRIDGE,
                       "vm.network.allow": "10.2.0.5:443/icmp"})
    with pytest.raises(BackendError, match="bad protocol 'icmp'"):
        bridge.attach_vm(cfg, 1, "10.239.0.10", "qvdp1")
    assert not os.path.exists(tmp_path / "run") and not bridge.link_exists(BRIDGE)
