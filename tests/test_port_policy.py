"""Per-port network policy (firewall.port_rules through bridge.attach_vm, the inet forward
allow-list through bridge.attach_vm) with real frames, in the network namespaces of
tests/netns_lab.py: the host's own tables and links are never touched."""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess

import pytest

from netns_lab import (  # noqa: F401 - net is the fixture
    arp_frame, arps_from, BRIDGE, ETH_P_IPV6, ether, from_mac, holding, in_ns, ip, need, net,
    NODE_IP, OUT_IP, root_only, Running, tap_write, tcp_connects, tcp_serve, token, udp_frame,
    udp_listen, udp_send, VM_LINK, VMS)
from qvd.db.config import Config
from qvd.hkd.backends import bridge, firewall
from qvd.hkd.backends.base import BackendError
from qvd.hkd.backends.bridge import mac_for


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
    victim = Running(net.vm["b"], udp_listen, "0.0.0.0", 7002, to_victim)
    attacker = Running(net.vm["a"], udp_listen, "0.0.0.0", 7002)
    net.node_do(udp_send, victim_ip, 7002, to_victim)
    assert (to_victim, NODE_IP) in victim.stop_when_done()
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
    net.node_do(firewall.apply, firewall.port_rules(BRIDGE, port, own_mac, own_ip, True))
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
    server = Running(net.out, tcp_serve, OUT_IP, [443, 444])

    def reach(port: int) -> bool:
        return in_ns(net.vm["a"], tcp_connects, OUT_IP, port)
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
    vm_server = Running(net.vm["a"], tcp_serve, VMS["a"][1], [8000])
    assert in_ns(net.out, tcp_connects, VMS["a"][1], 8000)
    assert vm_server.stop() == 1
    assert server.stop() == 3  # the outside server took exactly the allowed connections


@root_only
def test_a_kvm_tap_port_gets_the_same_policy(net):
    need("/dev/net/tun", os.path.exists("/dev/net/tun"))
    tap, own_ip = "qvdpk9", "10.239.0.20"
    own_mac = mac_for(own_ip)
    net.node_do(bridge.attach_vm, net.cfg(), 9, own_ip, tap)
    ip("-n", net.node, "tuntap", "add", "dev", tap, "mode", "tap")
    ip("-n", net.node, "link", "set", tap, "master", BRIDGE, "up")
    net.node_do(bridge.port_up, net.cfg(), tap)
    own, spoofed, forged, lie = token(), token(), token(), token()
    frames = net.frames_at_node(lambda: net.node_do(tap_write, tap, [
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
