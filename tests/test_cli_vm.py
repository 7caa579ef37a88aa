"""VMs through the real CLI: addresses, listing, start/stop/disconnect and what nodes are told."""
import json

from conftest import make_host_running


def vms(env, *filters):
    return json.loads(env.ok("vm", "list", "--json", *filters))


def test_vm_add_gives_consecutive_addresses_and_bulk_names(demo):
    demo.ok("vm", "add", "-t", "acme", "name=lab", "user=alice", "osf=desktop", "bulk=3")
    listed = vms(demo, "-f", "name=lab-*")
    assert [(v["name"], v["ip"]) for v in listed] == [
        ("lab-1", "10.0.0.101"), ("lab-2", "10.0.0.102"), ("lab-3", "10.0.0.103")]
    assert all(v["state"] == "stopped" and v["user"] == "alice" for v in listed)


def test_vm_add_skips_addresses_in_use_and_honours_configured_range(demo):
    demo.ok("config", "set", "vm.network.ip.start=10.0.0.100", "vm.network.netmask=255.255.255.252")
    # 10.0.0.100/30: the range ends below the broadcast address, 10.0.0.102; .100 is taken.
    demo.ok("vm", "add", "-t", "acme", "name=a", "user=alice", "osf=desktop")
    demo.ok("vm", "add", "-t", "acme", "name=b", "user=alice", "osf=desktop")
    full = demo.cli("vm", "add", "-t", "acme", "name=c", "user=alice", "osf=desktop")
    assert full.returncode == 1 and "0 free address" in full.stderr
    assert [v["ip"] for v in vms(demo, "-f", "name=?")] == ["10.0.0.101", "10.0.0.102"]


def test_vm_list_shows_state_host_user_state_and_last_error(demo):
    make_host_running(demo, "node1")
    demo.sql("UPDATE vm_runtimes SET last_error = 'image not found', "
             "host_id = (SELECT id FROM hosts), vm_state = 'zombie'")
    table = demo.ok("vm", "list")
    header, row = table.splitlines()
    for column in ("state", "host", "user_state", "last_error"):
        assert column in header
    assert "zombie" in row and "node1" in row and "image not found" in row
    assert demo.ok("vm", "list", "-q", "--csv", "-f", "state=zombie").startswith("1,acme,desk,")


def test_vm_start_assigns_a_running_node_and_wakes_it(demo):
    host_id = make_host_running(demo, "node1")
    with demo.listen(f"qvd_cmd_for_vm_on_host{host_id}") as listener:
        demo.ok("vm", "start", "-f", "name=desk")
        note = next(listener.notifies(timeout=5, stop_after=1))
    assert note.payload == "1:start"
    assert demo.sql("SELECT host_id, vm_cmd FROM vm_runtimes") == [(host_id, "start")]
    again = demo.cli("vm", "start", "-f", "name=desk")
    assert again.returncode == 1 and "already starting" in again.stderr


def test_vm_start_only_where_memory_fits(demo):
    demo.ok("host", "add", "name=node2", "address=127.0.0.3")
    make_host_running(demo, "node1", ram=256)          # too small for a 512 MiB OSF
    big = make_host_running(demo, "node2", ram=1024)
    demo.ok("vm", "start", "-f", "name=desk")
    assert demo.sql("SELECT host_id FROM vm_runtimes") == [(big,)]
    # node2 now has 512 MiB left: a second 512 MiB VM fits, a third does not.
    demo.ok("vm", "add", "-t", "acme", "name=more", "user=alice", "osf=desktop", "bulk=2")
    result = demo.cli("vm", "start", "-f", "name=more-*")
    assert result.returncode == 1
    assert "no running node has 512 MiB free" in result.stderr
    assert "start sent to 1 vm(s)" in result.stdout


def test_vm_start_refused_without_a_live_node(demo):
    make_host_running(demo, "node1")
    demo.sql("UPDATE host_runtimes SET ok_ts = now() - interval '1 hour'")  # lease expired
    result = demo.cli("vm", "start", "-f", "name=desk")
    assert result.returncode == 1 and "no running node" in result.stderr
    assert demo.sql("SELECT host_id, vm_cmd FROM vm_runtimes") == [(None, None)]


def test_blocked_vm_and_blocked_node_do_not_start(demo):
    make_host_running(demo, "node1")
    demo.ok("vm", "block", "-f", "name=desk")
    assert "is blocked" in demo.cli("vm", "start", "-f", "name=desk").stderr
    demo.ok("vm", "unblock", "-f", "name=desk")
    demo.ok("host", "block", "-f", "name=node1")
    assert "no running node" in demo.cli("vm", "start", "-f", "name=desk").stderr
    demo.ok("host", "unblock", "-f", "name=node1")
    demo.ok("vm", "start", "-f", "name=desk")


def test_vm_start_with_a_blocked_di_is_refused_with_the_reason(demo):
    make_host_running(demo, "node1")
    demo.ok("di", "block", "-f", "osf=desktop")
    result = demo.cli("vm", "start", "-f", "name=desk")
    assert result.returncode == 1
    assert "the DI tagged 'default' of OSF 'desktop' is blocked" in result.stderr
    assert demo.sql("SELECT host_id, vm_cmd FROM vm_runtimes") == [(None, None)]
    demo.ok("di", "unblock", "-f", "osf=desktop")
    demo.ok("vm", "start", "-f", "name=desk")


def test_vm_stop_withdraws_an_unclaimed_start_and_asks_a_running_vm(demo):
    host_id = make_host_running(demo, "node1")
    demo.ok("vm", "start", "-f", "name=desk")
    demo.ok("vm", "stop", "-f", "name=desk")
    assert demo.sql("SELECT host_id, vm_cmd FROM vm_runtimes") == [(None, None)]
    demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'running'", h=host_id)
    with demo.listen(f"qvd_cmd_for_vm_on_host{host_id}") as listener:
        demo.ok("vm", "stop", "-f", "id=1")
        assert next(listener.notifies(timeout=5, stop_after=1)).payload == "1:stop"
    stopped = demo.cli("vm", "stop", "-f", "name=nothing*")
    assert stopped.returncode == 1 and "no vm matches" in stopped.stderr


def test_vm_disconnect_sends_abort_to_the_l7r_node(demo):
    host_id = make_host_running(demo, "node1")
    assert "no connected user" in demo.cli("vm", "disconnect", "-f", "id=1").stderr
    demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'running', user_state = 'connected',"
             " l7r_host_id = :h, l7r_pid = 4242", h=host_id)
    with demo.listen(f"qvd_cmd_for_user_on_host{host_id}") as listener:
        demo.ok("vm", "disconnect", "-f", "id=1")
        assert next(listener.notifies(timeout=5, stop_after=1)).payload == "1:abort"


def test_vm_del_only_when_stopped(demo):
    host_id = make_host_running(demo, "node1")
    demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_state = 'running'", h=host_id)
    refused = demo.cli("vm", "del", "-f", "name=desk")
    assert refused.returncode == 1 and "running" in refused.stderr
    demo.sql("UPDATE vm_runtimes SET host_id = NULL, vm_state = 'stopped'")
    demo.ok("vm", "del", "-f", "name=desk")
    assert vms(demo) == []


def test_vm_edit_tag_and_expiration(demo, tmp_path):
    image = tmp_path / "v2.tar"
    image.write_bytes(b"v2")
    demo.ok("di", "add", "-t", "acme", f"path={image}", "osf=desktop", "version=v2")
    demo.ok("vm", "edit", "-f", "name=desk", "di_tag=v2", "expiration_hard=2030-01-01T00:00+00:00")
    (vm,) = vms(demo)
    assert vm["di_tag"] == "v2" and vm["expiration_hard"].startswith("2030-01-01T00:00:00")
    unknown = demo.cli("vm", "edit", "-f", "name=desk", "di_tag=nope")
    assert unknown.returncode == 1 and "no DI tagged 'nope'" in unknown.stderr


def test_properties_set_get_del(demo):
    demo.ok("vm", "propset", "-f", "name=desk", "vma.session.type=nx", "custom.a=1")
    got = json.loads(demo.ok("vm", "propget", "-f", "name=desk", "--json"))
    assert {(p["key"], p["value"]) for p in got} == {("vma.session.type", "nx"), ("custom.a", "1")}
    demo.ok("vm", "propdel", "-f", "name=desk", "custom.a")
    assert "custom.a" not in demo.ok("vm", "propget", "-f", "name=desk")


def test_every_change_is_in_the_audit_log(demo):
    make_host_running(demo, "node1")
    demo.ok("vm", "start", "-f", "name=desk")
    last = json.loads(demo.ok("log", "list", "--json"))[-1]
    assert (last["object"], last["action"], last["object_ids"]) == ("vm", "start", [1])
    assert last["arguments"]["filters"] == {"name": "desk"}
    actions = [(e["object"], e["action"]) for e in json.loads(demo.ok("log", "list", "--json"))]
    assert actions[:6] == [("tenant", "add"), ("user", "add"), ("osf", "add"), ("di", "add"),
                           ("vm", "add"), ("host", "add")]
    # passwords never reach the log
    assert "secret" not in demo.ok("log", "list", "--json")


def test_filters_on_addresses_and_flags(demo):
    demo.ok("vm", "add", "-t", "acme", "name=second", "user=alice", "osf=desktop")
    assert [v["name"] for v in vms(demo, "-f", "ip=10.0.0.101")] == ["second"]
    assert [v["name"] for v in vms(demo, "-f", "ip=10.0.0.10*")] == ["desk", "second"]
    demo.ok("vm", "block", "-f", "ip=10.0.0.100")
    assert [v["name"] for v in vms(demo, "-f", "blocked=1")] == ["desk"]
    assert [h["name"] for h in json.loads(demo.ok("host", "list", "--json", "-f",
                                                  "address=127.0.0.2"))] == ["node1"]
