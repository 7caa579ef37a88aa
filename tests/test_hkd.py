"""qvd-hkd with real processes: nodes, leases, fencing, adoption, process backend, real VMAs.
The poll interval is 600 s in these tests: everything here happens through notifications."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from vma_agent import call_as_node
from hkd_nodes import QVD_HKD, DuplicateWatch, HkdNode, vma_processes, wait_for


@pytest.fixture
def nodes(demo):
    started = []

    def make(name, address=None):
        if name != "node1":
            demo.ok("host", "add", f"name={name}", f"address={address}")
        node = HkdNode(demo, name)
        node.start()
        started.append(node)
        return node
    yield make
    for node in started:
        node.cleanup()


def vm(demo):
    (row,) = json.loads(demo.ok("vm", "list", "--json", "-f", "name=desk"))
    return row


def vma_answers(demo, row) -> bool:
    try:
        return call_as_node(demo, vm_id=row["id"])[1]["status"] == "ok"
    except (OSError, ValueError):
        return False


def state_is(demo, state):
    return lambda: vm(demo)["state"] == state and vm(demo)


def test_start_and_stop_through_the_cli(demo, nodes):
    node = nodes("node1")
    demo.ok("vm", "start", "-f", "name=desk")
    row = wait_for(state_is(demo, "running"), 15, "running")
    assert row["host"] == "node1" and row["pid"] in vma_processes(demo, 1)
    assert row["address"] == "127.0.0.1" and vma_answers(demo, row)
    node.await_renewals()
    host = json.loads(demo.ok("host", "list", "--json"))[0]
    # the lease it shows is one the node would not fence on (hkd.lease.fence_timeout = 3)
    assert host["state"] == "running" and host["pid"] and 0 <= host["lease_age"] < 3
    demo.ok("vm", "stop", "-f", "name=desk")
    row = wait_for(state_is(demo, "stopped"), 15, "stopped")
    assert row["host"] is None and vma_processes(demo, 1) == []


def test_killed_vma_ends_stopped_with_a_reason(demo, nodes):
    nodes("node1")
    demo.ok("vm", "start", "-f", "name=desk")
    row = wait_for(state_is(demo, "running"), 15, "running")
    os.kill(row["pid"], signal.SIGKILL)
    row = wait_for(state_is(demo, "stopped"), 15, "stopped")
    assert "stopped on its own" in row["last_error"]


def test_repeated_failed_starts_block_the_vm(demo, nodes):
    nodes("node1")
    images = os.path.join(demo.storage, "images")
    for name in os.listdir(images):
        os.unlink(os.path.join(images, name))
    for attempt in (1, 2):
        demo.ok("vm", "start", "-f", "name=desk")
        row = wait_for(lambda: vm(demo)["state"] == "stopped" and vm(demo)["last_error"]
                       and vm(demo), 15, f"failed start {attempt}")
        assert "not found on this node" in row["last_error"]
    assert row["blocked"] is True and "blocked after 2 failed starts" in row["last_error"]
    assert "is blocked" in demo.cli("vm", "start", "-f", "name=desk").stderr


def test_killed_hkd_restarted_in_time_keeps_the_desktop(demo, nodes):
    node = nodes("node1")
    demo.ok("vm", "start", "-f", "name=desk")
    row = wait_for(state_is(demo, "running"), 15, "running")
    node.signal(signal.SIGKILL)
    node.proc.wait()
    killed = time.monotonic()
    node.start()  # well within the 3 s fence timeout
    # The passage of time is what is tested here: once the fence timeout (3 s) has passed
    # since the kill, the watchdog (which outlived the daemon) must not have fired.
    time.sleep(max(0.0, killed + 4 - time.monotonic()))
    again = vm(demo)
    assert again["state"] == "running" and again["pid"] == row["pid"]
    assert vma_processes(demo, 1) == [row["pid"]] and vma_answers(demo, again)
    assert "adopted (running)" in node.log()


def test_vm_gone_while_hkd_was_down_is_cleaned_up(demo, nodes):
    node = nodes("node1")
    demo.ok("vm", "start", "-f", "name=desk")
    row = wait_for(state_is(demo, "running"), 15, "running")
    node.signal(signal.SIGKILL)
    node.proc.wait()
    os.kill(row["pid"], signal.SIGKILL)
    node.start()
    row = wait_for(state_is(demo, "stopped"), 15, "stopped")
    assert "not running when the node daemon started" in row["last_error"]


def start_on_node1(demo) -> dict:
    """The VM started on node1 while node2 is blocked (placement has one choice)."""
    demo.ok("host", "block", "-f", "name=node2")
    demo.ok("vm", "start", "-f", "name=desk")
    first = wait_for(state_is(demo, "running"), 15, "running on node1")
    demo.ok("host", "unblock", "-f", "name=node2")
    assert first["host"] == "node1"
    return first


def killed_then_lost(node, pid: int, broken: list):
    """A wait_for check: True once the VM's process is gone and `node` was declared lost.
    A VM still alive after the node was seen lost is recorded in `broken` (sound despite
    polling: the node's state is read first, then the processes)."""
    def check():
        if node.state()[0] == "lost" and pid in vma_processes(node.env, 1):
            broken.append(pid)
        return vma_processes(node.env, 1) == [] and node.state()[0] == "lost"
    return check


def test_frozen_node_is_fenced_and_its_vm_starts_elsewhere(demo, nodes):
    node1 = nodes("node1")
    node2 = nodes("node2", "127.0.0.3")
    first = start_on_node1(demo)
    alive_after_lost = []
    with DuplicateWatch(demo, 1) as watch:
        node1.signal(signal.SIGSTOP)
        wait_for(killed_then_lost(node1, first["pid"], alive_after_lost), 15,
                 "the watchdog's kill, then node1 declared lost")
        assert alive_after_lost == [], "node1 was declared lost while its VM still ran"
        row = wait_for(lambda: vm(demo)["state"] == "stopped" and vm(demo), 10, "release")
        assert "released: node node1 was lost" in row["last_error"]
        assert node1.state()[0] == "lost"
        demo.ok("vm", "start", "-f", "name=desk")
        moved = wait_for(state_is(demo, "running"), 15, "running on node2")
        assert moved["host"] == "node2"
        node1.signal(signal.SIGCONT)
        wait_for(lambda: node1.state()[0] == "running", 10, "node1 to rejoin")
        node1.await_renewals()  # its loops ran after the rejoin: the VM stayed on node2
        assert vm(demo)["host"] == "node2" and vma_answers(demo, vm(demo))
    assert watch.most == 1, "the VM ran on two nodes at once"
    assert json.loads(demo.ok("host", "list", "--json", "-f", "name=node1"))[0]["epoch"] == 1
    assert node2.state()[0] == "running"


def test_a_node_cut_off_from_a_live_database_fences_before_its_vm_runs_elsewhere(demo, nodes):
    """A partition, not a freeze: node1's daemon and watchdog run on, but its database traffic
    goes through a TCP forwarder that the test stops (SIGSTOP: nothing fails, nothing
    answers). node2 still reaches the database. node1 must kill its VM before node2 may
    declare it lost; the VM then runs on node2, and never on both."""
    proxy = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__),
                                                           "tcp_proxy.py"),
                              "127.0.0.1", str(demo.params["port"])], stdout=subprocess.PIPE,
                             text=True)
    node1 = None
    try:
        port = int(proxy.stdout.readline())
        node1 = HkdNode(demo, "node1", f"database.host = 127.0.0.1\ndatabase.port = {port}\n")
        node1.start()
        node2 = nodes("node2", "127.0.0.3")
        first = start_on_node1(demo)
        alive_after_lost = []
        with DuplicateWatch(demo, 1) as watch:
            proxy.send_signal(signal.SIGSTOP)  # the partition
            wait_for(killed_then_lost(node1, first["pid"], alive_after_lost), 20,
                     "node1's fence, then node1 declared lost")
            assert alive_after_lost == [], "node1 was declared lost while its VM still ran"
            demo.ok("vm", "start", "-f", "name=desk")
            moved = wait_for(state_is(demo, "running"), 15, "running on node2")
            assert moved["host"] == "node2"
            proxy.send_signal(signal.SIGCONT)  # the partition heals: node1 rejoins
            wait_for(lambda: node1.state()[0] == "running", 30, "node1 to rejoin")
            assert vm(demo)["host"] == "node2" and vma_answers(demo, vm(demo))
        assert watch.most == 1, "the VM ran on two nodes at once"
        assert "fencing node node1: could not renew the lease" in node1.log()
        assert node2.state()[0] == "running"
    finally:
        proxy.send_signal(signal.SIGCONT)
        if node1 is not None:
            node1.cleanup()
        proxy.kill()
        proxy.wait()


def test_postgres_restart_under_a_running_node(demo, nodes, pg_server):
    node = nodes("node1")
    demo.ok("vm", "start", "-f", "name=desk")
    row = wait_for(state_is(demo, "running"), 15, "running")
    pg_server.cluster.stop()
    pg_server.cluster.start()
    wait_for(lambda: node.state() == ("running", node.proc.pid), 10, "node after restart")
    node.await_renewals(2)  # on the new server
    assert vm(demo)["pid"] == row["pid"] and vma_processes(demo, 1) == [row["pid"]]
    demo.ok("vm", "stop", "-f", "name=desk")  # the listener reconnected: this wakes the node
    wait_for(state_is(demo, "stopped"), 15, "stopped after the restart")


def test_two_admins_racing_to_start_never_start_twice(demo, nodes):
    nodes("node1")
    nodes("node2", "127.0.0.3")
    with DuplicateWatch(demo, 1) as watch:
        for _ in range(5):  # each round a fresh race; the duplicate watch runs throughout
            racers = [subprocess.Popen([*demo.cli_command(), "vm", "start", "-f", "name=desk"],
                                       env=demo.env(), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True) for _ in range(2)]
            codes = sorted(r.wait() for r in racers)
            assert codes == [0, 1]
            wait_for(state_is(demo, "running"), 15, "running")
            demo.ok("vm", "stop", "-f", "name=desk")
            wait_for(state_is(demo, "stopped"), 15, "stopped")
    assert watch.most == 1


def test_second_hkd_for_the_same_node_is_refused(demo, nodes):
    node = nodes("node1")
    second = subprocess.run([QVD_HKD], env=dict(os.environ, QVD_CONFIG=node.conf),
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert "another qvd-hkd runs node 'node1'" in second.stderr
    assert node.state() == ("running", node.proc.pid)


def test_host_stop_command_stops_vms_and_the_daemon(demo, nodes):
    node = nodes("node1")
    demo.ok("vm", "start", "-f", "name=desk")
    row = wait_for(state_is(demo, "running"), 15, "running")
    demo.ok("host", "stop", "-f", "name=node1")
    assert node.proc.wait(30) == 0
    assert vm(demo)["state"] == "stopped" and vma_processes(demo, 1) == []
    assert node.state() == ("stopped", None)
    assert not os.path.exists(f"/proc/{row['pid']}/environ") or vma_processes(demo, 1) == []


def test_orphan_vm_unknown_to_the_database_is_killed(demo, nodes):
    node = nodes("node1")
    demo.ok("vm", "start", "-f", "name=desk")
    wait_for(state_is(demo, "running"), 15, "running")
    node.signal(signal.SIGKILL)
    node.proc.wait()
    # Meanwhile the database gave the VM up (as the cluster monitor would).
    demo.sql("UPDATE vm_runtimes SET vm_state = 'stopped', host_id = NULL, vm_pid = NULL")
    node.start()
    wait_for(lambda: vma_processes(demo, 1) == [], 10, "the orphan to be killed")
    assert "runs here but the database does not place it here" in node.log()
    assert vm(demo)["state"] == "stopped"


def test_node_without_database_fences_itself_then_rejoins(demo, nodes, pg_server):
    node = nodes("node1")
    demo.ok("vm", "start", "-f", "name=desk")
    row = wait_for(state_is(demo, "running"), 15, "running")
    pg_server.cluster.stop()
    try:
        wait_for(lambda: vma_processes(demo, 1) == [], 8, "the fenced node to kill its VM")
    finally:
        pg_server.cluster.start()
    row = wait_for(state_is(demo, "stopped"), 20, "the VM to be released")
    assert "fenced itself" in row["last_error"]
    wait_for(lambda: node.state() == ("running", node.proc.pid), 10, "node to rejoin")
    (host,) = json.loads(demo.ok("host", "list", "--json"))
    assert "fenced itself" in host["last_error"] and "could not renew" in host["last_error"]
    demo.ok("vm", "start", "-f", "name=desk")
    wait_for(state_is(demo, "running"), 15, "running again")


def test_database_configuration_applies_while_running(demo, nodes):
    node = nodes("node1")  # its node file says hkd.vm.max_failed_starts = 2
    demo.ok("config", "set", "hkd.vm.max_failed_starts=1")  # the database layer wins, live
    wait_for(lambda: "configuration reloaded" in node.log(), 10, "the reload")
    images = os.path.join(demo.storage, "images")
    for name in os.listdir(images):
        os.unlink(os.path.join(images, name))
    demo.ok("vm", "start", "-f", "name=desk")
    row = wait_for(lambda: vm(demo)["blocked"] and vm(demo), 15, "blocked after one failure")
    assert "blocked after 1 failed starts" in row["last_error"]


def test_a_change_made_while_the_listener_reconnects_still_applies(demo, nodes):
    """The notification of a change made while the node is not listening reaches nobody:
    the node reads the configuration again each time it starts listening."""
    node = nodes("node1")
    wait_for(lambda: demo.sql("SELECT count(*) FROM pg_stat_activity "
                              "WHERE application_name = 'qvd-hkd node1 listener'") == [(1,)],
             10, "the node to listen")
    demo.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE application_name = 'qvd-hkd node1 listener'")
    demo.ok("config", "set", "hkd.vm.max_failed_starts=1")  # before the listener is back
    wait_for(lambda: "configuration reloaded (hkd.vm.max_failed_starts changed)" in node.log(),
             15, "the change read on reconnecting")


def test_hkd_refuses_an_old_schema(demo):
    demo.sql("UPDATE alembic_version SET version_num = '0001'")
    node = HkdNode(demo, "node1")
    result = subprocess.run([QVD_HKD], env=dict(os.environ, QVD_CONFIG=node.conf),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "schema is at revision 0001" in result.stderr and "qvd-admin db upgrade" in result.stderr


def test_disconnect_ends_the_connection_process_and_resets_the_row(demo, nodes):
    nodes("node1")
    (host_id,), = demo.sql("SELECT id FROM hosts WHERE name = 'node1'")
    # A connection process that ignores SIGTERM, as a stuck one would, named as L7R children
    # are (the node signals only a pid that is still an L7R's).
    stuck = subprocess.Popen([sys.executable, "-c", "import setproctitle, signal, sys, time; "
                              "setproctitle.setproctitle('qvd-l7r alice@acme vm=1'); "
                              "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); "
                              "time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        stuck.stdout.readline()  # named and ignoring SIGTERM from here on
        demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'running', l7r_host_id = :h, "
                 "user_state_ts = now(), "  # when the L7R took it, as TAKE writes it
                 "l7r_pid = :pid, user_state = 'connected'", h=host_id, pid=stuck.pid)
        demo.ok("vm", "disconnect", "-f", "name=desk")
        assert stuck.wait(10) == -signal.SIGKILL  # TERM ignored, then KILL
        wait_for(lambda: demo.sql("SELECT user_state, user_cmd, l7r_pid FROM vm_runtimes")
                 == [("disconnected", None, None)], 10, "the row to be reset")
    finally:
        stuck.kill()
        stuck.wait()
