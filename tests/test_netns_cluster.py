"""Two LXC nodes as two machines (issue 20, "How it is tested"): each qvd-hkd in its own
network namespace (tests/netns_cluster.py), the database reached over the switch, each L7R on
its node's LAN address, the VM networks of the two joined by their uplinks. A desktop placed
on one node is opened through the other node's L7R: its L7R reaches the container at its VM
address across the VM switch."""
import hashlib
import os
import shutil
import ssl
import subprocess
import sys

import pytest

from hkd_nodes import wait_for
from qvd.client.png import read_png
from netns_cluster import BRIDGE, ROOT_ADDRESS, VM_NETWORK, NetnsCluster
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
