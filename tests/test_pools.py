"""Desktop pools (issue 17): the pool object through qvd-admin; pool keeping on real
process-backend nodes; handing out through the L7R to many users at once."""
from __future__ import annotations

import json
import os
import signal
import threading

from hkd_nodes import HkdNode, PeakWatch, l7r_node, wait_for
from qvd.client import rfb
from qvd.db.passwords import hash_password
from qvd.l7r.client import accepting
from test_l7r import connect, open_desktop
from vma_agent import call_as_node

POOL_ADD = ["pool", "add", "-t", "acme", "name=lab", "osf=desktop"]


def test_pool_cli_add_members_list_edit_block_del_and_bad_input(demo):
    out = demo.ok(*POOL_ADD, "min=2", "spare=1", "max=3")
    assert "pool 1 'lab' added (min 2, spare 1, max 3, persistent)" in out
    demo.ok("user", "add", "-t", "acme", "login=bob", "password=pw")
    demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "add=alice,bob")
    demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "del=bob")
    members = json.loads(demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "--json"))
    assert [(m["login"], m["vm"]) for m in members] == [("alice", None)]
    demo.ok("pool", "edit", "-t", "acme", "-f", "name=lab", "spare=2", "max=4")
    demo.ok("pool", "block", "-t", "acme", "-f", "name=lab")
    pool, = json.loads(demo.ok("pool", "list", "-t", "acme", "--json"))
    assert (pool["min"], pool["spare"], pool["max"], pool["members"], pool["vms"],
            pool["blocked"], pool["last_vm_error"]) == (2, 2, 4, 1, 0, True, None)

    # Each mistake: one line on stderr, the exit status of its kind, nothing changed.
    before = demo.snapshot()
    for args, status, words in [
            (POOL_ADD + ["max=2", "min=3"], 2, "min (3) must not exceed max (2)"),
            (POOL_ADD + ["max=two"], 2, "max must be a whole number"),
            (POOL_ADD + ["max=2", "assignment=forever"], 2, "assignment must be persistent"),
            (POOL_ADD + ["max=2"], 1, "a pool with that name already exists"),
            (POOL_ADD[:4] + ["name=x", "osf=nope", "max=2"], 1, "unknown OSF 'nope'"),
            (["pool", "edit", "-t", "acme", "-f", "name=lab", "min=9"], 2,
             "min (9) must not exceed max (4)"),
            (["pool", "members", "-t", "acme", "-f", "name=lab", "add=nobody"], 1,
             "unknown user 'nobody'")]:
        result = demo.cli(*args)
        assert (result.returncode, result.stderr.count("\n")) == (status, 1), (args, result)
        assert words in result.stderr and "Traceback" not in result.stderr, result.stderr
    demo.take_failed_changes()
    assert demo.snapshot() == before

    # A user deleted gives their pool VM back (its next start discards their home).
    demo.sql("INSERT INTO vms (name, tenant_id, user_id, pool_id, osf_id, ip) "
             "SELECT 'lab-1', p.tenant_id, u.id, p.id, p.osf_id, '10.0.0.200' "
             "FROM pools p, users u WHERE u.login = 'bob'")
    demo.sql("INSERT INTO vm_runtimes (vm_id, last_error, last_error_at) "
             "SELECT id, 'the DI is blocked', now() FROM vms WHERE name = 'lab-1'")
    assert _pool_row(demo)["last_vm_error"] == "the DI is blocked"  # why its VMs fail
    demo.ok("user", "del", "-t", "acme", "-f", "login=bob")
    assert demo.sql("SELECT user_id, discard_home FROM vms WHERE name = 'lab-1'") == [
        (None, True)]

    demo.ok("pool", "del", "-t", "acme", "-f", "name=lab")
    assert demo.sql("SELECT count(*) FROM pools")[0][0] == 0
    assert demo.sql("SELECT count(*) FROM vms WHERE name = 'lab-1'")[0][0] == 0


def _pool_row(demo) -> dict:
    rows = json.loads(demo.ok("pool", "list", "-t", "acme", "--json"))
    return rows[0]


def _spares_on(demo, node: str) -> int:
    return demo.sql("SELECT count(*) FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id "
                    "JOIN hosts h ON h.id = r.host_id WHERE v.pool_id IS NOT NULL "
                    "AND v.user_id IS NULL AND r.vm_state = 'running' AND h.name = :n",
                    n=node)[0][0]


def prepared_display(demo, vm: int) -> int | None:
    """The display a spare's agent holds ready for its first user (qvd-hkd's x_prepare)."""
    answer = call_as_node(demo, "x_state", vm)[1]
    return answer["display"] if answer.get("x_state") == "prepared" else None


class Sampler(PeakWatch):
    """The most VMs the pool had and the most starting at once."""
    interval = 0.02

    def __init__(self, demo):
        super().__init__()
        self.demo, self.most_vms, self.most_preparing = demo, 0, 0

    def sample(self) -> None:
        (vms, preparing), = self.demo.sql(
            "SELECT count(*), count(*) FILTER (WHERE r.vm_state = 'starting' "
            "OR r.vm_cmd = 'start') FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id "
            "WHERE v.pool_id IS NOT NULL")
        self.most_vms = max(self.most_vms, vms)
        self.most_preparing = max(self.most_preparing, preparing)


def test_pool_kept_on_two_nodes_through_a_node_loss_then_a_crowd_gets_at_most_max(demo,
                                                                                 tmp_path):
    """min 5, spare 3, max 8, at most 2 starting: the spares come up spread over both nodes;
    node2 is killed and node1 replaces its spares; twenty users connect at once: eight get a
    desktop each (no VM twice), twelve hear the pool is full; nothing ever exceeds max or
    pool.max_preparing."""
    # twenty logins at once from one address are not an attack, and they may queue for the
    # password checks (two at a time) as long as they need on a loaded machine
    # no poll: notifications alone drive the keepers (until the throw-away part below)
    demo.ok("config", "set", "pool.max_preparing=2", "l7r.auth.backoff.max_failures=40",
            "l7r.auth.hash_wait=120",
            "pool.release_after=0.5", "pool.poll.interval=600")
    demo.ok("host", "add", "name=node2", "address=127.0.0.3")
    logins = [f"u{n}" for n in range(1, 21)]
    password = hash_password("pw")
    for login in logins:
        demo.sql("INSERT INTO users (tenant_id, login, password) "
                 "SELECT id, :login, :password FROM tenants WHERE name = 'acme'",
                 login=login, password=password)
    nodes = []
    try:
        nodes = [l7r_node(demo, tmp_path, name) for name in ("node1", "node2")]
        node1, node2 = nodes
        with Sampler(demo) as sampler:
            demo.ok(*POOL_ADD, "min=5", "spare=3", "max=8")
            demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "add=" + ",".join(logins))
            wait_for(lambda: _spares_on(demo, "node1") + _spares_on(demo, "node2") == 3, 40,
                     "three spares")
            wait_for(lambda: _pool_row(demo)["last_reason"].startswith("settled"),
                     15, "the pool to settle")
            row = _pool_row(demo)
            assert (row["vms"], row["spare_running"], row["stopped"], row["assigned"]) == \
                (5, 3, 2, 0), row
            on_node2 = _spares_on(demo, "node2")
            assert 1 <= on_node2 <= 2, on_node2  # placement spreads them

            node2.signal(signal.SIGKILL)  # its watchdog kills its VMs; node1 declares it lost
            wait_for(lambda: _spares_on(demo, "node1") == 3, 40,
                     "node1 to replace the lost node's spares")
            assert node2.state()[0] == "lost"

            # A rollout: the tag moves to v2; the spares are replaced one by one, at once.
            image = tmp_path / "v2.tar"
            image.write_bytes(b"image v2")
            demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=v2")
            demo.ok("di", "tag", "-f", "version=v2", "tag=default")
            (v2,), = demo.sql("SELECT id FROM dis WHERE version = 'v2'")
            wait_for(lambda: demo.sql(
                "SELECT count(*) FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id "
                "WHERE v.pool_id IS NOT NULL AND v.user_id IS NULL AND r.vm_state = 'running' "
                "AND r.vm_cmd IS NULL AND r.current_di_id = :di", di=v2)[0][0] == 3, 60,
                "the three spares running v2")
            spares = [vm for vm, in demo.sql(
                "SELECT v.id FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id WHERE v.pool_id "
                "IS NOT NULL AND v.user_id IS NULL AND r.vm_state = 'running'")]
            prepared = {vm: wait_for(lambda vm=vm: prepared_display(demo, vm), 15,
                                     "the spares' display servers started ahead") for vm in spares}

            with connect((node1.port, node1.cert), "u1@acme", "pw") as conn:
                entries = conn.list_of_vm().json()
            assert {"id": -1, "name": "lab", "state": "stopped", "blocked": 0} in entries

            replies, errors = {}, []

            def user(login):
                try:
                    conn, reply, banner = open_desktop((node1.port, node1.cert),
                                                       f"{login}@acme", "pw", vm_id=-1)
                    replies[login] = (conn, reply, banner)
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    errors.append(f"{login}: {exc!r}")
            crowd = [threading.Thread(target=user, args=(login,)) for login in logins]
            for thread in crowd:
                thread.start()
            for thread in crowd:
                thread.join(120)
            try:
                assert not errors, errors
                got = sorted(login for login, (_, reply, banner) in replies.items()
                             if reply.status == 101 and banner == b"RFB 003.008\n")
                full = sorted(login for login, (_, reply, _) in replies.items()
                              if reply.status == 503
                              and b"the pool 'lab' is full" in reply.body)
                assert (len(got), len(full), sorted(got + full)) == (8, 12, sorted(logins)), \
                    {login: (r.status, r.body) for login, (_, r, _) in replies.items()}
                given = demo.sql("SELECT u.login, v.id FROM vms v JOIN users u "
                                 "ON u.id = v.user_id WHERE v.pool_id IS NOT NULL")
                assert sorted(login for login, _ in given) == got
                assert len({vm for _, vm in given}) == 8  # no VM given twice
                connected = demo.sql("SELECT login, vm_id FROM sessions WHERE ended_at IS NULL")
                assert sorted(connected) == sorted((f"{l}@acme", vm) for l, vm in given)
                # the spares' users got the displays started ahead, at their clients' geometry
                for vm, display in prepared.items():
                    assert call_as_node(demo, "x_state", vm)[1] == {
                        "x_state": "connected", "session": "vnc", "display": display}
                login = next(login for login, vm in given if vm in prepared)
                conn, _, banner = replies[login]
                assert rfb.handshake(rfb.Stream(conn.sock, banner), conn.sock) == (800, 600)
            finally:
                for conn, _, _ in replies.values():
                    conn.close()
        assert sampler.most_vms == 8 and sampler.most_preparing <= 2, \
            (sampler.most_vms, sampler.most_preparing)
        assert "max 8" in _pool_row(demo)["last_reason"]

        # A persistent assignment stays: the user's VM is listed as theirs, not the pool, and
        # keeps its files across a stop and a start on the other node (node2, back).
        vm_of_first = dict(given)[got[0]]
        with connect((node1.port, node1.cert), f"{got[0]}@acme", "pw") as conn:
            ids = [entry["id"] for entry in conn.list_of_vm().json()]
        assert ids == [vm_of_first]
        with open(os.path.join(demo.storage, "homes", str(vm_of_first), "notes.txt"), "w",
                  encoding="utf-8") as handle:
            handle.write("mine")
        # A rollout while they are given: the VMs in use keep v2 until they stop.
        image = tmp_path / "v3.tar"
        image.write_bytes(b"image v3")
        demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=v3")
        demo.ok("di", "tag", "-f", "version=v3", "tag=default")
        (v3,), = demo.sql("SELECT id FROM dis WHERE version = 'v3'")

        def running_on(di: int) -> list[int]:
            return sorted(vm for vm, in demo.sql(
                "SELECT vm_id FROM vm_runtimes WHERE vm_state = 'running' AND current_di_id = :d",
                d=di))
        assert running_on(v2) == sorted(vm for _, vm in given)
        (rollout,) = json.loads(demo.ok("vm", "rollout", "-t", "acme", "--json"))
        assert (rollout["version"], rollout["running"], rollout["behind"]) == ("v3", 8, 8)
        demo.ok("vm", "stop", "-t", "acme", "-f", f"id={vm_of_first}")
        wait_for(lambda: demo.sql("SELECT vm_state FROM vm_runtimes WHERE vm_id = :v",
                                  v=vm_of_first) == [("stopped",)], 30, "the VM to stop")
        node2.start()
        wait_for(lambda: accepting("127.0.0.1", node2.port), 15, "node2's L7R to accept")
        demo.ok("host", "block", "-f", "name=node1")  # so the VM starts on node2
        conn, reply, _ = open_desktop((node2.port, node2.cert), f"{got[0]}@acme", "pw",
                                      vm_id=-1)
        with conn:
            assert reply.status == 101, reply
        assert demo.sql("SELECT vm_id, host_name FROM sessions ORDER BY id DESC LIMIT 1") == [
            (vm_of_first, "node2")]
        assert running_on(v3) == [vm_of_first]  # v3 at its start, the others still on v2
        assert running_on(v2) == sorted(vm for _, vm in given if vm != vm_of_first)
        with open(os.path.join(demo.storage, "homes", str(vm_of_first), "notes.txt"),
                  encoding="utf-8") as handle:
            assert handle.read() == "mine"
        demo.ok("host", "unblock", "-f", "name=node1")

        # A throw-away VM goes back to the pool once its user left, without their files (a
        # user leaving sends the keepers nothing: they poll for it).
        demo.ok("config", "set", "pool.poll.interval=0.5")
        demo.ok(*POOL_ADD[:4], "name=tw", "osf=desktop", "min=1", "spare=0", "max=2",
                "assignment=throwaway", "vm_names=tw-{n}")
        demo.ok("pool", "members", "-t", "acme", "-f", "name=tw", "add=u1,u2,u3")
        (tw_pool, tw_vm), = wait_for(lambda: demo.sql(
            "SELECT p.id, v.id FROM vms v JOIN pools p ON p.id = v.pool_id WHERE p.name = 'tw'"),
            20, "the throw-away pool's VM (stopped: spare 0)")
        tw = (node1.port, node1.cert)
        first, reply, _ = open_desktop(tw, "u1@acme", "pw", vm_id=-tw_pool)  # the stopped one
        with first:
            assert reply.status == 101
            home = os.path.join(demo.storage, "homes", str(tw_vm))
            with open(os.path.join(home, "secret.txt"), "w", encoding="utf-8") as handle:
                handle.write("u1's")
            second, reply, _ = open_desktop(tw, "u2@acme", "pw", vm_id=-tw_pool)  # a new VM
            with second:
                assert reply.status == 101
                refused, reply, _ = open_desktop(tw, "u3@acme", "pw", vm_id=-tw_pool)
                refused.close()
                assert reply.status == 503 and b"the pool 'tw' is full" in reply.body
        wait_for(lambda: demo.sql(
            "SELECT count(*) FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id WHERE "
            "v.pool_id = :p AND v.user_id IS NULL AND v.discard_home AND r.vm_state = 'stopped'",
            p=tw_pool) == [(2,)], 30, "both throw-away VMs given back")
        third, reply, _ = open_desktop(tw, "u3@acme", "pw", vm_id=-tw_pool)
        with third:
            assert reply.status == 101
            assert demo.sql("SELECT vm_id, login FROM sessions ORDER BY id DESC LIMIT 1") == [
                (tw_vm, "u3@acme")]
            assert not os.path.exists(os.path.join(home, "secret.txt"))
    finally:
        for node in nodes:
            node.cleanup()


def test_a_spare_whose_session_cannot_be_prepared_says_why_in_the_pool_list(demo, tmp_path):
    """The spare runs (a first login would get the agent's own answer); the admin reads
    the reason on the VM and in `pool list`, not in a node's log."""
    demo.ok("osf", "add", "-t", "acme", "name=odd")
    demo.ok("osf", "propset", "-t", "acme", "-f", "name=odd", "vma.session.type=rdp")
    image = tmp_path / "odd.tar"
    image.write_bytes(b"an image")
    demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=odd")
    demo.ok("pool", "add", "-t", "acme", "name=odd", "osf=odd", "min=1", "spare=1", "max=1")
    node = HkdNode(demo, "node1")
    try:
        node.start()
        row = wait_for(lambda: (row := _pool_row(demo))["last_vm_error"] and row, 30,
                       "the reason in the pool list")
        assert row["last_vm_error"] == (
            "its desktop session could not be prepared (VMA x_prepare: unknown "
            "vma.session.type 'rdp' (nx or vnc)): the first login starts it"), row
        assert demo.sql("SELECT r.vm_state FROM vm_runtimes r JOIN vms v ON v.id = r.vm_id "
                        "WHERE v.pool_id IS NOT NULL") == [("running",)]
    finally:
        node.cleanup()
