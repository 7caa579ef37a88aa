"""The VM network across nodes (issue 20, part 1): each node's own address on it
(hosts.vm_address), no address on two nodes (host add/edit, qvd-hkd's start), and the uplink's
bridge filtering, with real frames in network namespaces this file makes: two "node"
namespaces, each with the product's bridge and an uplink veth into a "switch" namespace, a VM
namespace behind each node, and an outside network routed by node 1. The host's own tables
and links are never touched."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from hkd_nodes import QVD_HKD, HkdNode
from netns_lab import (_clear_stale_namespaces, _write, in_ns, ip, need, root_only, Running,
                       tcp_connects, tcp_serve, VM_LINK)
from qvd.db.config import Config
from qvd.db.vm_network import pick_free
from qvd.hkd.backends import bridge, firewall
from qvd.hkd.backends.bridge import mac_for

BRIDGE, UPLINK, SWITCH = "qvdpbr", "qvdpup", "qvdpsw"
NODE_IPS = {1: "10.238.0.2", 2: "10.238.0.3"}     # the hosts' vm_address
VM_IPS = {1: "10.238.0.100", 2: "10.238.0.101"}   # a VM behind each node
ON_SWITCH = "10.238.0.250"      # anything else on the uplink's segment (a router, a laptop)
OUTSIDE_NODE, OUTSIDE = "10.238.1.1", "10.238.1.2"  # node 1's other network
VMA, X = 3030, 4100


def _cfg(run: str, node: int, settings: dict | None = None) -> Config:
    values = {"path.run": os.path.join(run, f"node{node}"),
              "path.log": os.path.join(run, f"node{node}", "log"),
              "vm.network.bridge": BRIDGE, "vm.network.ip.start": "10.238.0.100",
              "vm.network.netmask": "255.255.255.0", "vm.network.uplink": UPLINK,
              "vm.network.firewall.protect_host": "1", "vm.network.firewall.nat": "0",
              "vm.network.use_dhcp": "0", "vm.network.allow": "",
              "internal.vm.port.vma": str(VMA), "internal.vm.port.x": str(X)}
    values.update(settings or {})
    return Config(node=values, vm_address=NODE_IPS[node])


class Cluster:
    def __init__(self, tmp_path):
        tag = str(os.getpid())
        self.switch, self.outside = f"qvdps{tag}", f"qvdpy{tag}"
        self.node = {1: f"qvdpf{tag}", 2: f"qvdpg{tag}"}
        self.vm = {1: f"qvdpv{tag}", 2: f"qvdpw{tag}"}
        self.run = str(tmp_path / "run")
        self.made: list[str] = []

    def cfg(self, node: int, settings: dict | None = None) -> Config:
        return _cfg(self.run, node, settings)

    def up(self) -> None:
        for name in (self.switch, self.outside, *self.node.values(), *self.vm.values()):
            ip("netns", "add", name)
            self.made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        ip("-n", self.switch, "link", "add", SWITCH, "type", "bridge")
        ip("-n", self.switch, "addr", "add", f"{ON_SWITCH}/24", "dev", SWITCH)
        ip("-n", self.switch, "link", "set", SWITCH, "up")
        for number, ns in self.node.items():
            port = f"qvdpu{number}"
            ip("-n", ns, "link", "add", UPLINK, "type", "veth", "peer", "name", port,
               "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", SWITCH, "up")
            # what qvd-hkd does at its start with vm.network.uplink: bridge, uplink, tables
            in_ns(ns, bridge.setup_node, self.cfg(number))
            vm_port, address = f"qvdp{number}", VM_IPS[number]
            in_ns(ns, bridge.attach_vm, self.cfg(number), number, address, vm_port)
            ip("-n", ns, "link", "add", vm_port, "type", "veth", "peer", "name", VM_LINK,
               "netns", self.vm[number])
            ip("-n", ns, "link", "set", vm_port, "master", BRIDGE, "up")
            ip("-n", self.vm[number], "link", "set", VM_LINK, "address", mac_for(address), "up")
            ip("-n", self.vm[number], "addr", "add", f"{address}/24", "dev", VM_LINK)
            ip("-n", self.vm[number], "route", "add", "default", "via", NODE_IPS[number])
            in_ns(ns, bridge.port_up, self.cfg(number), vm_port)
        ip("-n", self.node[1], "link", "add", "qvdpo", "type", "veth", "peer", "name", VM_LINK,
           "netns", self.outside)
        ip("-n", self.node[1], "addr", "add", f"{OUTSIDE_NODE}/24", "dev", "qvdpo")
        ip("-n", self.node[1], "link", "set", "qvdpo", "up")
        ip("-n", self.outside, "addr", "add", f"{OUTSIDE}/24", "dev", VM_LINK)
        ip("-n", self.outside, "link", "set", VM_LINK, "up")
        ip("-n", self.outside, "route", "add", "10.238.0.0/24", "via", OUTSIDE_NODE)
        in_ns(self.node[1], _write, "/proc/sys/net/ipv4/ip_forward", "1")

    def down(self) -> None:
        for child in list(Running.children):
            child.end()
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def reach(self, ns: str, address: str, port: int) -> bool:
        return in_ns(ns, tcp_connects, address, port, 1.0)


@pytest.fixture
def cluster(tmp_path):
    need("ip (iproute2)", bool(shutil.which("ip")))
    need("nft (nftables)", bool(shutil.which("nft")))
    _clear_stale_namespaces()
    lab = Cluster(tmp_path)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
    assert not [name for name in lab.made if os.path.exists(f"/run/netns/{name}")]


@root_only
def test_nodes_reach_vms_across_the_uplink_and_vms_reach_no_node_vm_or_outside(cluster):
    c = cluster
    addresses = json.loads(ip("-n", c.node[2], "-j", "addr", "show", "dev", BRIDGE))[0]
    assert [a["local"] for a in addresses["addr_info"]
            if a["family"] == "inet"] == [NODE_IPS[2]]  # its own address
    assert json.loads(ip("-n", c.node[2], "-j", "link", "show", UPLINK))[0]["master"] == BRIDGE
    vm2 = Running(c.vm[2], tcp_serve, VM_IPS[2], [VMA, X, 22])
    node2 = Running(c.node[2], tcp_serve, NODE_IPS[2], [8443])
    lan = Running(c.switch, tcp_serve, ON_SWITCH, [80])
    out = Running(c.outside, tcp_serve, OUTSIDE, [80])

    # node 1 (its L7R, its HKD) reaches node 2's VM at its VM address: the agent, the desktop
    assert c.reach(c.node[1], VM_IPS[2], VMA) and c.reach(c.node[1], VM_IPS[2], X)
    assert not c.reach(c.node[1], VM_IPS[2], 22)  # nothing else of it
    # node 1's VM: not node 2, not node 2's VM, not the uplink's segment, not the outside
    assert not c.reach(c.vm[1], NODE_IPS[2], 8443)
    assert not c.reach(c.vm[1], VM_IPS[2], VMA) and not c.reach(c.vm[1], VM_IPS[2], X)
    assert not c.reach(c.vm[1], ON_SWITCH, 80)
    assert not c.reach(c.vm[1], OUTSIDE, 80)
    # ... unless vm.network.allow names it (routed by node 1, not bridged to the switch)
    in_ns(c.node[1], bridge.attach_vm, c.cfg(1, {"vm.network.allow": OUTSIDE}), 1, VM_IPS[1],
          "qvdp1")
    assert c.reach(c.vm[1], OUTSIDE, 80) and not c.reach(c.vm[1], ON_SWITCH, 80)

    # node 2 without protect_host: node 1's uplink filter alone keeps its VM out
    in_ns(c.node[2], bridge.setup_node, c.cfg(2, {"vm.network.firewall.protect_host": "0"}))
    assert not c.reach(c.vm[1], NODE_IPS[2], 8443)
    # the controls: without node 1's tables the same attempts cross the switch, and node 2's
    # own uplink filter still keeps node 1's VM (its 02:00 MAC) away from node 2's VM
    in_ns(c.node[1], firewall.remove, BRIDGE)
    assert c.reach(c.vm[1], NODE_IPS[2], 8443) and c.reach(c.vm[1], ON_SWITCH, 80)
    assert not c.reach(c.vm[1], VM_IPS[2], VMA)
    assert vm2.stop() == 2 and node2.stop() == 1 and lan.stop() == 1 and out.stop() == 1


# --- without root -------------------------------------------------------------------------
def test_the_node_address_is_its_hosts_vm_address_else_the_first_one():
    cfg = Config(node={"vm.network.ip.start": "10.238.0.100",
                       "vm.network.netmask": "255.255.255.0"})
    assert bridge.plan(cfg) == ("qvdnet", 24, "10.238.0.1")  # one node: as before
    cfg.vm_address = "10.238.0.3"
    assert bridge.plan(cfg) == ("qvdnet", 24, "10.238.0.3")
    # VM addresses skip every node's vm_address
    used = [{"address": "10.238.0.100"}, {"address": "10.238.0.101"}, {"address": None}]
    assert pick_free(used, "10.238.0.100", "255.255.255.0", 2) == ["10.238.0.102",
                                                                    "10.238.0.103"]


def _hosts(demo):
    return demo.sql("SELECT name, host(vm_address) FROM hosts ORDER BY name")


def test_a_vm_address_on_two_nodes_is_refused_by_host_add_and_edit(demo):
    demo.ok("host", "add", "name=node2", "address=127.0.0.3", "vm_address=10.0.0.3")
    before = _hosts(demo)
    assert before == [("node1", None), ("node2", "10.0.0.3")]
    refused = demo.cli("host", "add", "name=node3", "address=127.0.0.4", "vm_address=10.0.0.3")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "already the address of node 'node2'" in refused.stderr and "Traceback" not in refused.stderr
    refused = demo.cli("host", "edit", "-f", "name=node1", "vm_address=10.0.0.3")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "already the address of node 'node2'" in refused.stderr
    assert _hosts(demo) == before
    # nor a VM's address, nor one outside the VM network; VMs are not given a node's
    (desk_ip,), = demo.sql("SELECT host(ip) FROM vms WHERE name = 'desk'")
    assert demo.cli("host", "edit", "-f", "name=node1", f"vm_address={desk_ip}").returncode == 1
    outside = demo.cli("host", "edit", "-f", "name=node1", "vm_address=192.168.9.9")
    assert outside.returncode == 1 and "not a node address of the VM network" in outside.stderr
    assert _hosts(demo) == before
    demo.ok("host", "edit", "-f", "name=node1", "vm_address=10.0.0.102")
    refused = demo.cli("vm", "add", "-t", "acme", "name=x", "user=alice", "osf=desktop",
                       "ip=10.0.0.102")
    assert refused.returncode == 1 and "the address of node 'node1'" in refused.stderr
    for name in ("a", "b", "c"):
        demo.ok("vm", "add", "-t", "acme", f"name={name}", "user=alice", "osf=desktop")
    ips = {ip for (ip,) in demo.sql("SELECT host(ip) FROM vms")}
    assert "10.0.0.102" not in ips and len(ips) == 4
    # the database refuses it too, whoever writes
    refused = demo.cli("host", "edit", "-f", "name=node1", "vm_address=none")
    assert refused.returncode == 0 and _hosts(demo)[0] == ("node1", None)
    with pytest.raises(Exception, match="uq_hosts_vm_address"):
        demo.sql("UPDATE hosts SET vm_address = '10.0.0.3' WHERE name = 'node1'")


def test_qvd_hkd_refuses_an_address_another_node_holds_and_says_so_on_its_row(demo):
    demo.ok("host", "add", "name=node2", "address=127.0.0.3", "vm_address=10.0.0.1")
    node = HkdNode(demo, "node1", "vm.hypervisor = lxc\n")  # no vm_address: 10.0.0.1
    result = subprocess.run([QVD_HKD], env=dict(os.environ, QVD_CONFIG=node.conf),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert "10.0.0.1, is also the address of node node2" in result.stderr
    (error,), = demo.sql("SELECT r.last_error FROM host_runtimes r JOIN hosts h "
                         "ON h.id = r.host_id WHERE h.name = 'node1'")
    assert error.startswith("not started: the node's address on the VM network, 10.0.0.1")
