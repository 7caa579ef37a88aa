"""The schema: migrations agree with the models; invariants and notifications live in the DB."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from qvd.db.models import Base


def test_migrations_match_models(qvd):
    with qvd.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={
            "compare_type": True, "compare_server_default": True}), Base.metadata)
    assert differences == []


def test_fixed_tenants_exist(qvd):
    assert qvd.sql("SELECT id, name FROM tenants ORDER BY id") == [
        (-1, "_global"), (0, "*"), (1, "default")]


def test_login_unique_per_tenant_only(demo):
    demo.ok("user", "add", "login=alice")  # same login, default tenant: allowed
    with pytest.raises(IntegrityError):
        demo.sql("INSERT INTO users (tenant_id, login) SELECT tenant_id, login FROM users "
                 "WHERE login = 'alice' LIMIT 1")


@pytest.mark.parametrize("change", [
    "UPDATE vm_runtimes SET vm_state = 'flying'",
    "UPDATE vm_runtimes SET vm_cmd = 'reboot'",
    "UPDATE vm_runtimes SET user_state = 'dancing'",
    "UPDATE vm_runtimes SET vm_cmd = 'start'",           # start without a host
    "UPDATE vm_runtimes SET vm_state = 'running'",       # running without a host
    "UPDATE vm_runtimes SET user_state = 'connected'",   # connected without an L7R
    "UPDATE host_runtimes SET state = 'sleeping'",
    "UPDATE host_runtimes SET cmd = 'explode'",
    "UPDATE osfs SET memory = 0",
    "UPDATE di_tags SET tag = 'bad tag'",
    "UPDATE vms SET ip = (SELECT address FROM hosts LIMIT 1) WHERE false OR true AND name='x'",
])
def test_database_refuses_invalid_states(demo, change):
    if "name='x'" in change:  # duplicate IPs between two VMs
        demo.ok("vm", "add", "-t", "acme", "name=x", "user=alice", "osf=desktop")
        change = "UPDATE vms SET ip = (SELECT ip FROM vms WHERE name = 'desk') WHERE name = 'x'"
    with pytest.raises(IntegrityError):
        demo.sql(change)


def test_di_tag_must_name_a_di_of_its_own_osf(demo):
    demo.ok("osf", "add", "-t", "acme", "name=other")
    with pytest.raises(IntegrityError):
        demo.sql("INSERT INTO di_tags (di_id, osf_id, tag) "
                 "SELECT d.id, o.id, 'x' FROM dis d, osfs o WHERE o.name = 'other'")


def _notifications(conn, count, timeout=5.0):
    return [(n.channel, n.payload) for n in conn.notifies(timeout=timeout, stop_after=count)]


def test_triggers_notify_commands_and_state_changes(demo):
    (host_id,), = demo.sql("SELECT id FROM hosts")
    (vm_id,), = demo.sql("SELECT id FROM vms")
    listener = demo.listen(f"qvd_cmd_for_vm_on_host{host_id}", f"qvd_state_of_vm{vm_id}",
                           f"qvd_cmd_for_user_on_host{host_id}", f"qvd_cmd_for_host{host_id}",
                           "qvd_config_changed", "qvd_host_state")
    with listener:
        # Any writer wakes the nodes, psql included: these are plain SQL updates.
        demo.sql("UPDATE vm_runtimes SET host_id = :h, vm_cmd = 'start'", h=host_id)
        assert _notifications(listener, 1) == [(f"qvd_cmd_for_vm_on_host{host_id}",
                                                f"{vm_id}:start")]
        demo.sql("UPDATE vm_runtimes SET vm_state = 'starting', vm_cmd = NULL")
        assert _notifications(listener, 1) == [(f"qvd_state_of_vm{vm_id}",
                                                "starting:disconnected")]
        demo.sql("UPDATE vm_runtimes SET l7r_host_id = :h, l7r_pid = 1, "
                 "user_state = 'connected'", h=host_id)
        demo.sql("UPDATE vm_runtimes SET user_cmd = 'abort'")
        assert _notifications(listener, 2) == [
            (f"qvd_state_of_vm{vm_id}", "starting:connected"),
            (f"qvd_cmd_for_user_on_host{host_id}", f"{vm_id}:abort")]
        demo.sql("UPDATE host_runtimes SET cmd = 'stop', state = 'running'")
        assert sorted(_notifications(listener, 2)) == [
            (f"qvd_cmd_for_host{host_id}", "stop"), ("qvd_host_state", f"{host_id}:running")]
        demo.ok("config", "set", "l7r.port=9443")
        assert _notifications(listener, 1) == [("qvd_config_changed", "-1:l7r.port")]


def test_no_notification_for_a_rolled_back_change(demo):
    (host_id,), = demo.sql("SELECT id FROM hosts")
    with demo.listen(f"qvd_cmd_for_vm_on_host{host_id}") as listener:
        with demo.engine.connect() as conn:
            conn.exec_driver_sql(f"UPDATE vm_runtimes SET host_id = {host_id}, vm_cmd = 'start'")
            conn.rollback()
        assert _notifications(listener, 1, timeout=0.5) == []
