"""The cluster rides out its database (issue 13): with the default fence and node timeouts,
PostgreSQL stopped for 30 s (three times the old fence timeout) under two nodes with a
connected desktop each loses nothing: no VM killed, no node declared lost, both desktops keep
streaming through the outage, and commands issued once it is back are served."""
import time

from hkd_nodes import HkdNode, free_port, l7r_node, vma_processes, wait_for
from qvd.client.rfb import screenshot
from qvd.l7r.client import accepting
from test_l7r import open_desktop

DEFAULTS = "hkd.lease.fence_timeout = 70\nhkd.cluster.node_timeout = 90\n"  # over FAST's
OUTAGE = 30.0


def _start_on(demo, vm: str, node: str, other: str) -> None:
    """Start `vm` on `node`: the other node is blocked meanwhile, so placement has one choice."""
    demo.ok("host", "block", "-f", f"name={other}")
    demo.ok("vm", "start", "-f", f"name={vm}")
    wait_for(lambda: demo.sql("SELECT r.vm_state, h.name FROM vm_runtimes r JOIN vms v ON "
                              "v.id = r.vm_id JOIN hosts h ON h.id = r.host_id WHERE v.name = :n",
                              n=vm) == [("running", node)], 20, f"{vm} running on {node}")
    demo.ok("host", "unblock", "-f", f"name={other}")


def test_a_30s_database_outage_loses_no_desktop_and_no_node(demo, tmp_path, pg_server):
    demo.ok("user", "add", "-t", "acme", "login=bob", "password=secret2")
    demo.ok("vm", "add", "-t", "acme", "name=desk2", "user=bob", "osf=desktop")
    demo.ok("host", "add", "name=node2", "address=127.0.0.3")
    node1 = l7r_node(demo, tmp_path, "node1", extra_conf=DEFAULTS)
    port2 = free_port()
    node2 = HkdNode(demo, "node2", f"l7r.address = 127.0.0.1\nl7r.port = {port2}\n{DEFAULTS}")
    try:
        node2.start()
        wait_for(lambda: accepting("127.0.0.1", port2), 15, "node2's L7R")
        _start_on(demo, "desk", "node1", "node2")
        _start_on(demo, "desk2", "node2", "node1")
        vmas = {1: vma_processes(demo, 1), 2: vma_processes(demo, 2)}
        # alice through node2's L7R to her VM on node1; bob through node1's to his on node2
        alice, reply_a, banner_a = open_desktop((port2, node1.cert))
        bob, reply_b, banner_b = open_desktop((node1.port, node1.cert), "bob@acme", "secret2",
                                             vm_id=2)
        assert (reply_a.status, reply_b.status) == (101, 101)
        with alice, bob:
            pg_server.cluster.stop()
            try:
                ends = time.monotonic() + OUTAGE
                while time.monotonic() < ends:  # watched all along: nothing is killed
                    assert {1: vma_processes(demo, 1), 2: vma_processes(demo, 2)} == vmas
                    time.sleep(0.5)
                for conn, banner in ((alice, banner_a), (bob, banner_b)):
                    width, height, _ = screenshot(conn.sock, banner, settle=0.2)
                    assert (width, height) == (800, 600)  # the desktop, through the outage
            finally:
                pg_server.cluster.start()
            wait_for(lambda: demo.sql("SELECT h.name, r.state, r.epoch FROM host_runtimes r "
                                      "JOIN hosts h ON h.id = r.host_id ORDER BY h.name")
                     == [("node1", "running", 0), ("node2", "running", 0)]
                     and demo.sql("SELECT extract(epoch FROM now() - min(ok_ts)) < 5 FROM "
                                  "host_runtimes") == [(True,)], 30, "both leases renewed")
            assert demo.sql("SELECT v.name, r.vm_state, r.user_state FROM vm_runtimes r JOIN "
                            "vms v ON v.id = r.vm_id ORDER BY v.name") == [
                ("desk", "running", "connected"), ("desk2", "running", "connected")]
            assert {1: vma_processes(demo, 1), 2: vma_processes(demo, 2)} == vmas
            demo.ok("vm", "stop", "-f", "name=desk2")  # served once the database is back
            wait_for(lambda: vma_processes(demo, 2) == [], 30, "desk2 to stop")
        assert "fencing" not in node1.log() + node2.log()
    finally:
        node2.cleanup()
        node1.cleanup()
