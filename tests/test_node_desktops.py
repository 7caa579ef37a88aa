"""Desktops on real qvd-hkd nodes (process backend), end to end through their L7Rs: a desktop
taken over through another node, a hard expiration, a blocked DI."""
import json
from datetime import datetime, timedelta

import pytest

from hkd_nodes import DuplicateWatch, l7r_node, vma_processes, wait_for
from test_l7r import _infos, open_desktop
from vma_agent import call_as_node

BLOCKED_DI = b"the DI tagged 'default' of OSF 'desktop' is blocked"


@pytest.fixture
def node(demo, tmp_path):
    hkd = l7r_node(demo, tmp_path)
    yield hkd
    hkd.cleanup()


@pytest.fixture
def syncing_node(demo, tmp_path):
    """A node that reads expirations every 2 s (they come with the liveness sync, every
    min(10 s, hkd.poll.interval)), not every 10 s: a quicker test, the same path."""
    hkd = l7r_node(demo, tmp_path, extra_conf="hkd.poll.interval = 2\n")
    yield hkd
    hkd.cleanup()


def desk(demo) -> dict:
    (row,) = json.loads(demo.ok("vm", "list", "--json", "-f", "name=desk"))
    return row


def sessions(demo) -> list[tuple]:
    return [tuple(row) for row in demo.sql("SELECT host_name, end_reason, ended_at IS NOT NULL "
                                           "FROM sessions ORDER BY id")]


def ended(conn) -> bool:
    """Read the stream until the L7R closes it: True once it has."""
    conn.sock.settimeout(30)  # a broken build must not hang the run
    while conn.sock.recv(4096):
        pass
    return True


def test_a_desktop_taken_over_through_another_node(demo, tmp_path, node):
    """Connected through node1's L7R, then through node2's: node2's L7R asks for the abort,
    node1's node ends its connection, and node2's gets the same desktop of the same VM."""
    demo.ok("host", "add", "name=node2", "address=127.0.0.3")
    node2 = l7r_node(demo, tmp_path, "node2")
    try:
        first, reply, _ = open_desktop((node.port, node.cert))
        assert reply.status == 101
        with first:
            (pid,), = demo.sql("SELECT vm_pid FROM vm_runtimes")
            display = call_as_node(demo, "x_state")[1]["display"]
            second, reply, banner = open_desktop((node2.port, node.cert))
            with second:
                assert reply.status == 101 and banner == b"RFB 003.008\n"
                assert "Aborting previous connection" in _infos(reply)
                assert ended(first)  # node1's connection was cut
                assert demo.sql("SELECT r.vm_state, r.vm_pid, r.user_state, h.name FROM "
                                "vm_runtimes r JOIN hosts h ON h.id = r.l7r_host_id") == [
                    ("running", pid, "connected", "node2")]
                assert vma_processes(demo, 1) == [pid]  # the same VM ...
                assert call_as_node(demo, "x_state")[1]["display"] == display  # ... and desktop
                wait_for(lambda: sessions(demo) == [("node1", "aborted", True),
                                                    ("node2", None, False)],
                         15, "the first session's end, the second open")
    finally:
        node2.cleanup()


def test_a_hard_expiration_stops_the_desktop_and_the_next_run_starts_without_it(demo,
                                                                                 syncing_node):
    node = syncing_node
    conn, reply, _ = open_desktop((node.port, node.cert))
    assert reply.status == 101
    with conn:
        (pid,), = demo.sql("SELECT vm_pid FROM vm_runtimes")
        a_moment_ago = (datetime.now() - timedelta(seconds=1)).isoformat(timespec="seconds")
        demo.ok("vm", "edit", "-f", "name=desk", f"expiration_hard={a_moment_ago}")
        assert ended(conn)  # the node stopped the VM under the user: the stream ends
    row = wait_for(lambda: desk(demo)["state"] == "stopped" and desk(demo), 30, "stopped")
    assert row["last_error"] == "hard expiration time reached"  # what vm list shows
    assert vma_processes(demo, 1) == []
    wait_for(lambda: sessions(demo) == [("node1", "desktop closed", True)], 15, "session end")
    # The user connects again: a new run, which the passed expiration no longer stops.
    again, reply, banner = open_desktop((node.port, node.cert))
    with again:
        assert reply.status == 101 and banner == b"RFB 003.008\n"
        (new_pid, soft, hard), = demo.sql("SELECT vm_pid, expiration_soft, expiration_hard "
                                          "FROM vm_runtimes")
        assert new_pid != pid and (soft, hard) == (None, None)


def test_a_blocked_di_keeps_its_vms_from_starting_and_says_why(demo, node):
    demo.ok("di", "block", "-f", "version=v1")
    with DuplicateWatch(demo, 1) as watch:
        for _ in range(3):  # more than hkd.vm.max_failed_starts (2): a refusal is no failure
            conn, reply, _ = open_desktop((node.port, node.cert))
            with conn:
                assert reply.status == 503 and BLOCKED_DI in reply.body
    assert watch.most == 0  # no agent ever ran
    row = desk(demo)
    assert (row["state"], row["blocked"]) == ("stopped", False)
    assert BLOCKED_DI.decode() in row["last_error"]
    demo.ok("di", "unblock", "-f", "version=v1")
    conn, reply, banner = open_desktop((node.port, node.cert))
    with conn:
        assert reply.status == 101 and banner == b"RFB 003.008\n"
