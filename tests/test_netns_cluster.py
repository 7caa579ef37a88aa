"""Two LXC nodes as two machines (issue 20, "How it is tested"): each qvd-hkd in its own
network namespace (tests/netns_cluster.py), the database reached over the switch, each L7R on
its node's LAN address, the VM networks of the two joined by their uplinks. A desktop placed
on one node is opened through the other node's L7R: its L7R reaches the container at its VM
address across the VM switch."""
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys

import pytest

from hkd_nodes import wait_for
from qvd.client.png import read_png
from netns_cluster import (BRIDGE, LAN_LINK, ROOT_ADDRESS, UPLINK, VM_NETWORK, NetnsCluster,
                           in_node, on_node)
from netns_lab import ip, need, root_only
from qvd.hkd.backends import host_di
from qvd.hkd.backends.bridge import veth_name
from qvd.l7r.client import QvdConnection, accepting, tls_context
from test_lxc import open_way
from test_l7r import UPGRADE
from tests_tls import write_pair

LXC_CONF = (f"vm.hypervisor = lxc\nvm.lxc.init = {host_di.AGENT}\nvm.lxc.unionfs.bind.fstab = 1\n"
            "internal.hkd.timeout.vm.state.stopping_shutdown = 10\n")


@pytest.fixture
def lxc_cluster(demo, tmp_path):
    need("ip (iproute2)", bool(shutil.which("ip")))
    need("nft (nftables)", bool(shutil.which("nft")))
    need("lxc", bool(shutil.which("lxc-start")))
    open_way(os.path.join(demo.storage, "lxc"))
    image = str(tmp_path / "host-di.tar")
    host_di.build(image)
    demo.ok("osf", "add", "-t", "acme", "name=lxc", "memory=256")
    demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=lxc", "version=host", "trusted=1")
    demo.ok("config", "set", *(f"{key}={value}" for key, value in VM_NETWORK.items()))
    demo.ok("vm", "del", "-f", "name=desk")
    demo.ok("vm", "add", "-t", "acme", "name=box", "user=alice", "osf=lxc")
    cert, key, _ = write_pair(tmp_path)
    demo.ok("config", "ssl", "--cert", cert, "--key", key)
    cluster = NetnsCluster(demo, 2)
    cluster.cert = cert
    try:
        cluster.up()
        for number in (1, 2):
            node = cluster.node(f"node{number}", number, LXC_CONF)
            node.start()
            wait_for(lambda: accepting(node.address, node.port), 20, f"{node.name}'s L7R")
        yield cluster
    finally:
        cluster.down()
    assert not cluster.gone()


def open_desktop(cluster, node, vm_id: int):
    """qvd-client's connect through this node's L7R, at its LAN address: (connection,
    reply, the desktop's first bytes)."""
    conn = QvdConnection(node.address, node.port, tls_context(cafile=cluster.cert, verify=False))
    conn.login("alice@acme", "secret")
    reply = conn.request("/qvd/connect_to_vm", {"id": vm_id, "qvd.client.geometry": "800x600",
                                                "qvd.client.fullscreen": ""}, UPGRADE)
    banner = conn.buffer
    while reply.status == 101 and len(banner) < 12:
        banner += conn.sock.recv(64)
    conn.buffer = b""
    return conn, reply, banner


def where(demo):
    return demo.sql("SELECT h.name, r.vm_state, host(v.ip) FROM vm_runtimes r JOIN vms v "
                    "ON v.id = r.vm_id LEFT JOIN hosts h ON h.id = r.host_id")


def through(cluster, demo, entry, host, vm_id):
    """Every node but `host` a front end only (backend=0: no VM is placed there; blocked, its
    L7R would turn clients away), the desktop opened through `entry`'s L7R: the VM starts on
    `host`, the desktop's bytes cross from `host`'s container to `entry`'s L7R."""
    for node in cluster.nodes:
        demo.ok("host", "edit", "-f", f"name={node.name}", f"backend={int(node is host)}")
    conn, reply, banner = open_desktop(cluster, entry, vm_id)
    with conn:
        assert reply.status == 101, (reply.status, reply.body)
        assert banner == b"RFB 003.008\n"  # Xvnc in host's container, through entry's L7R
        (row,) = where(demo)
        assert tuple(row[:2]) == (host.name, "running") and row[2].startswith("10.236.0.")
        # the container's port is on `host`'s bridge, in its namespace only
        port = veth_name(vm_id)
        assert f"master {BRIDGE}" in ip("-n", host.ns, "link", "show", port)
        assert port not in ip("-n", entry.ns, "link", "show")
        conn.send_raw(b"RFB 003.008\n")  # and the other way: Xvnc answers its security types
        assert conn.sock.recv(64)[:1] >= b"\x01"
    wait_for(lambda: demo.sql("SELECT count(*) FROM sessions WHERE ended_at IS NULL") == [(0,)],
             20, "the session to end")
    last = demo.sql("SELECT host_name, host(client_address) FROM sessions ORDER BY id DESC "
                    "LIMIT 1")
    # the session is the L7R's (its node carried it), the client the tests' side of the switch
    assert [tuple(r) for r in last] == [(entry.name, ROOT_ADDRESS)]


@root_only
def test_a_desktop_on_one_node_opened_through_the_other_nodes_l7r(lxc_cluster, demo):
    node1, node2 = lxc_cluster.nodes
    (vm_id,), = demo.sql("SELECT id FROM vms WHERE name = 'box'")
    through(lxc_cluster, demo, node1, node2, vm_id)
    # qvd-client, on the tests' side of the switch, takes a screenshot through node 1
    with open(lxc_cluster.cert, encoding="ascii") as handle:
        fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(handle.read())).hexdigest()
    shot = os.path.join(demo.home, "through-node1.png")

    def painted() -> bool:  # a fresh desktop may show its first frame black: again then
        done = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "qvd-client"), "connect", "--host",
             node1.address, "--port", str(node1.port), "--fingerprint", f"sha256:{fingerprint}",
             "--login", "alice@acme", "--screenshot", shot, "--geometry", "800x600",
             "--settle", "1"], env=dict(os.environ, QVD_PASSWORD="secret"),
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        width, height, rgb = read_png(shot)
        assert (width, height) == (800, 600)
        return len({rgb[i:i + 3] for i in range(0, len(rgb), 291)}) > 1
    wait_for(painted, 60, "a painted desktop through node 1")
    assert [tuple(r[:2]) for r in where(demo)] == [("node2", "running")]
    # the other way round: stopped, then placed on node 1 and opened through node 2. Node 1's
    # bridge learned the VM's MAC on its uplink (its L7R reached the VM on node 2): unless it
    # forgets that when the VM's port comes up (bridge.forget_elsewhere), node 1 sends its own
    # VM's frames to the switch and the start times out
    demo.ok("vm", "stop", "-f", "name=box")
    wait_for(lambda: [tuple(r[:2]) for r in where(demo)] == [(None, "stopped")], 60,
             "the container to stop")
    through(lxc_cluster, demo, node2, node1, vm_id)


RFB = b"RFB 003.008\n"


def vm_host(demo) -> list[tuple]:
    return [tuple(r[:2]) for r in where(demo)]


def container_state(demo, node, vm_id: int) -> str | None:
    """RUNNING, STOPPED... as LXC on that node says (None: no such container there)."""
    shown = in_node(node, "lxc-info", "-n", f"qvd-{vm_id}", "-P",
                    os.path.join(demo.storage, "lxc"), "-s")
    return shown.stdout.split()[-1] if shown.returncode == 0 and shown.stdout.split() else None


@root_only
@pytest.mark.parametrize("cut", [(LAN_LINK, UPLINK), (LAN_LINK,)],
                         ids=["every-link", "the-database-link"])
def test_a_node_cut_off_fences_before_its_desktop_runs_elsewhere_then_rejoins(lxc_cluster,
                                                                                demo, cut):
    """Node 2 holds the desktop, opened through its own L7R and taken over through node 1's.
    Node 2's links go down (all of them, or only its LAN, the database's way, while the VM
    network stays up): its container stops (it fences) before node 1 declares it lost and
    releases the VM, so the VM never runs twice with its one address; the user's next connect
    starts it on node 1; node 2, back, rejoins and runs nothing."""
    node1, node2 = lxc_cluster.nodes
    (vm_id,), = demo.sql("SELECT id FROM vms WHERE name = 'box'")
    demo.ok("host", "edit", "-f", "name=node1", "backend=0")
    first, reply, banner = open_desktop(lxc_cluster, node2, vm_id)
    with first:
        assert (reply.status, banner) == (101, RFB), (reply.status, reply.body)
        second, reply, banner = open_desktop(lxc_cluster, node1, vm_id)  # a takeover
        with second:
            assert (reply.status, banner) == (101, RFB), (reply.status, reply.body)
            first.sock.settimeout(10)
            while first.sock.recv(4096):  # node 2's L7R ends the first client's stream
                pass
            wait_for(lambda: demo.sql("SELECT host_name FROM sessions WHERE ended_at IS NULL")
                     == [("node1",)], 20, "only node 1's session left")
            assert vm_host(demo) == [("node2", "running")]
            demo.ok("host", "edit", "-f", "name=node1", "backend=1")
            for link in cut:
                ip("-n", node2.ns, "link", "set", link, "down")
            wait_for(lambda: vm_host(demo) == [(None, "stopped")], 60,
                     "node 1 to release the lost node's VM")
            assert container_state(demo, node2, vm_id) == "STOPPED"  # fenced before
            assert node2.state()[0] == "lost"
    third, reply, banner = open_desktop(lxc_cluster, node1, vm_id)
    with third:
        assert (reply.status, banner) == (101, RFB), (reply.status, reply.body)
        assert vm_host(demo) == [("node1", "running")]
    for link in cut:
        ip("-n", node2.ns, "link", "set", link, "up")
    wait_for(lambda: node2.state()[0] == "running", 60, "node 2 to rejoin")
    (row,) = [h for h in json.loads(demo.ok("host", "list", "--json")) if h["name"] == "node2"]
    assert "fenced itself" in row["last_error"], row
    assert vm_host(demo) == [("node1", "running")]
    assert container_state(demo, node2, vm_id) == "STOPPED"


PROBE = """
import socket, sys
from concurrent.futures import ThreadPoolExecutor
def reach(target):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return "open"
    except ConnectionRefusedError:
        return "answered"
    except OSError:
        return "blocked"
with ThreadPoolExecutor(8) as pool:
    print(" ".join(pool.map(reach, sys.argv[1:])))
"""


def reaches(command: list[str], *targets: str) -> list[str]:
    """What each host:port gives a TCP connect from where command runs python3."""
    done = subprocess.run([*command, "python3", "-c", PROBE, *targets], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@root_only
def test_a_vm_reaches_no_node_no_other_nodes_vm_and_not_the_database(lxc_cluster, demo):
    """A container on node 1, with node 1 routing as a machine may (ip_forward on): nothing
    of node 2 (its L7R, its address on the VM network, its container's agent), nor its own
    node's L7R, nor the database. Node 1 itself reaches node 2's container (what its L7R
    does): the VM network is up, the firewall is what stops the VM."""
    node1, node2 = lxc_cluster.nodes
    demo.ok("vm", "add", "-t", "acme", "name=box2", "user=alice", "osf=lxc")
    ids = {}
    for name, host in (("box", node1), ("box2", node2)):
        for node in lxc_cluster.nodes:
            demo.ok("host", "edit", "-f", f"name={node.name}", f"backend={int(node is host)}")
        demo.ok("vm", "start", "-f", f"name={name}")
        (ids[name],), = demo.sql("SELECT id FROM vms WHERE name = :n", n=name)
        wait_for(lambda: demo.sql("SELECT h.name, r.vm_state FROM vm_runtimes r JOIN hosts h "
                                  "ON h.id = r.host_id WHERE r.vm_id = :v", v=ids[name])
                 == [(host.name, "running")], 60, f"{name} running on {host.name}")
    (other_vm,), = demo.sql("SELECT host(ip) FROM vms WHERE name = 'box2'")
    vma_port = demo.sql("SELECT vm_vma_port FROM vm_runtimes WHERE vm_id = :v",
                        v=ids["box2"])[0][0]
    in_node(node1, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    database = "%s:%d" % lxc_cluster.forwarder.address
    targets = [f"{node2.address}:{node2.port}", f"{node2.vm_address}:{node2.port}",
               f"{other_vm}:{vma_port}", f"{node1.address}:{node1.port}",
               f"{node1.vm_address}:{node1.port}", database]
    attach = ["lxc-attach", "-n", f"qvd-{ids['box']}", "-P", os.path.join(demo.storage, "lxc"),
              "--clear-env", "--"]
    assert reaches(on_node(node1.ns, node1.staging, attach), *targets) == ["blocked"] * 6
    assert reaches(on_node(node1.ns, node1.staging, []), f"{other_vm}:{vma_port}") == ["open"]
