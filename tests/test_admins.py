"""Administrators through the real CLI: a tenant's administrator keeps to its tenant, the
supertenant's sees all; denials win; role cycles are refused; no one grants or takes more
than it holds; logins refused (wrong password or TOTP, blocked); the audit log names the
administrator and holds no secret.

qvd-admin runs in this process (tests/cli_inprocess.py: the same entry, environment, stdin
and output, without an interpreter's start and imports each time), save a few runs of the real
binary (demo.real): a login refused, a password read from stdin, SSH_CONNECTION."""
import json
import os
import pwd
import time

import pyotp

from admins import PASSWORD, AdminRun, make_admin


def listed(run, obj, *args):
    return json.loads(run.ok(obj, "list", "--json", *args))


def test_a_tenant_administrator_sees_and_touches_only_its_tenant(demo):
    demo.ok("tenant", "add", "name=beta")
    demo.ok("user", "add", "-t", "beta", "login=bob")
    demo.ok("osf", "add", "-t", "beta", "name=desktop")
    demo.ok("vm", "add", "-t", "beta", "name=desk", "user=bob", "osf=desktop")
    (beta_vm,), = demo.sql("SELECT v.id FROM vms v JOIN users u ON u.id = v.user_id "
                           "WHERE u.login = 'bob'")
    boss = make_admin(demo, "boss@acme", "Root")
    assert [v["tenant"] for v in listed(boss, "vm")] == ["acme"]
    assert [u["login"] for u in listed(boss, "user")] == ["alice"]
    assert [t["name"] for t in listed(boss, "tenant")] == ["acme"]
    assert "no vm matches" in boss.refused("vm", "block", "-f", f"id={beta_vm}")
    assert "no vm matches" in boss.refused("vm", "block", "-f", "tenant=beta")
    assert "unknown tenant 'beta'" in boss.refused("vm", "list", "-t", "beta")
    assert "unknown tenant 'beta'" in boss.refused("user", "add", "login=eve@beta")
    assert "unknown tenant 'beta'" in boss.refused("vm", "add", "name=x", "user=bob@beta",
                                                   "osf=desktop")
    assert "unknown tenant '*'" in boss.refused("admin", "add", "name=x@*", "password=p")
    boss.ok("user", "add", "login=dave")  # no -t: its own tenant, not 'default'
    assert demo.sql("SELECT t.name FROM users u JOIN tenants t ON t.id = u.tenant_id "
                    "WHERE u.login = 'dave'") == [("acme",)]
    boss.ok("vm", "block", "-f", "name=*")  # a bulk action: every VM it sees, no other
    assert demo.sql("SELECT t.name, r.blocked FROM vm_runtimes r JOIN vms v ON v.id = r.vm_id "
                    "JOIN users u ON u.id = v.user_id JOIN tenants t ON t.id = u.tenant_id "
                    "ORDER BY t.name") == [("acme", True), ("beta", False)]
    # What every tenant shares is the supertenant's, whatever the roles say.
    assert "supertenant" in boss.refused("host", "list")
    chief = make_admin(demo, "chief@*", "Root")
    assert sorted(v["tenant"] for v in listed(chief, "vm")) == ["acme", "beta"]
    chief.ok("vm", "block", "-f", f"id={beta_vm}")
    chief.ok("user", "add", "-t", "beta", "login=carol")
    assert [h["name"] for h in listed(chief, "host")] == ["node1"]
    assert demo.sql("SELECT bool_and(blocked) FROM vm_runtimes") == [(True,)]


def _held(env, role):
    return {a["name"] for a in json.loads(env.ok("acl", "list", "--json", "-f", f"role={role}"))}


def test_a_denial_wins_over_any_grant_at_any_depth(demo):
    for name in ("base", "no-rename", "middle", "top", "hosts"):
        demo.ok("role", "add", f"name={name}")
    demo.ok("role", "acl", "-f", "name=base", "grant=vm.update.*,vm.see-main.")
    demo.ok("role", "acl", "-f", "name=no-rename", "deny=vm.update.name")
    demo.ok("role", "acl", "-f", "name=hosts", "grant=host.*")
    demo.ok("role", "acl", "-f", "name=middle", "grant_role=base,no-rename")
    # top grants vm.update.name itself and includes Root, yet middle's denial two levels
    # down wins; denying the role 'hosts' denies every ACL it holds.
    demo.ok("role", "acl", "-f", "name=top", "grant_role=middle,Root", "grant=vm.update.name",
            "deny_role=hosts")
    held = _held(demo, "top")
    assert "vm.update.name" not in held and not any(a.startswith("host.") for a in held)
    assert {"vm.update.state", "user.create.", "role.create."} <= held
    top = make_admin(demo, "t@*", "top")
    assert "needs the ACL vm.update.name" in top.refused("vm", "edit", "-f", "name=desk",
                                                         "name=other")
    top.ok("vm", "edit", "-f", "name=desk", "description=fine")
    demo.ok("role", "acl", "-f", "name=middle", "revoke_role=no-rename")
    top.ok("vm", "edit", "-f", "name=desk", "name=renamed")


def test_role_cycles_and_changes_to_builtin_roles_are_refused(demo):
    for name in ("a", "b", "c"):
        demo.ok("role", "add", f"name={name}")
    demo.ok("role", "acl", "-f", "name=a", "grant_role=b")
    demo.ok("role", "acl", "-f", "name=b", "grant_role=c")
    for key in ("grant_role", "deny_role"):
        cycle = demo.cli("role", "acl", "-f", "name=c", f"{key}=a")
        assert cycle.returncode == 1 and "cycle (a -> b -> c -> a)" in cycle.stderr
    itself = demo.cli("role", "acl", "-f", "name=a", "grant_role=a")
    assert itself.returncode == 1 and "cycle (a -> a)" in itself.stderr
    for args in (("role", "acl", "-f", "name=Root", "deny=vm.delete."),
                 ("role", "del", "-f", "name=Operator L1")):
        result = demo.cli(*args)
        assert result.returncode == 1 and "built-in role" in result.stderr
    unknown = demo.cli("role", "acl", "-f", "name=a", "grant=vm.fly.")
    assert unknown.returncode == 1 and "unknown ACL 'vm.fly.'" in unknown.stderr


def test_no_one_grants_or_takes_over_more_than_it_holds(demo):
    make_admin(demo, "boss@acme", "Root")
    manager = make_admin(demo, "mgr@acme", "Operator L3")
    demo.ok("admin", "add", "name=new@acme", "password=x")
    assert "may not grant 'Root'" in manager.refused("admin", "role", "-f", "name=new",
                                                     "grant=Root")
    manager.ok("admin", "role", "-f", "name=new", "grant=Operator L1")
    for verb in ("passwd", "block", "del"):
        assert "may not change administrator" in manager.refused("admin", verb, "-f",
                                                                 "name=boss")
    assert [a["roles"] for a in listed(manager, "admin", "-f", "name=new")] == ["Operator L1"]


def _wrong_code(secret: str) -> str:
    """Six digits that are no code of the TOTP's last, current or next 30 s window."""
    totp, now = pyotp.TOTP(secret), time.time()
    valid = {totp.at(now + step) for step in (-60, -30, 0, 30, 60)}
    return next(f"{n:06d}" for n in range(1000000) if f"{n:06d}" not in valid)


def test_wrong_passwords_totp_codes_and_blocked_administrators_are_refused(demo):
    ops = make_admin(demo, "ops@acme", "Operator L1")
    for wrong in (AdminRun(demo.real, "ops@acme", "not-it"), AdminRun(demo, "ghost@acme")):
        assert "name, password or TOTP code is wrong" in wrong.refused("vm", "list")
    demo.ok("admin", "block", "-f", "name=ops")
    assert "ops@acme is blocked" in ops.refused("vm", "list")
    demo.ok("admin", "unblock", "-f", "name=ops")
    ops.ok("vm", "list")
    out = demo.real.ok("admin", "passwd", "-f", "name=ops", "totp=1", input=PASSWORD + "\n")
    (secret,), = demo.sql("SELECT totp_secret FROM administrators WHERE name = 'ops'")
    assert secret in out and "otpauth://totp/" in out
    assert "QVD_ADMIN_TOTP" in ops.refused("vm", "list")  # no code, no terminal to ask on
    bad = ops.cli("vm", "list", totp=_wrong_code(secret))
    assert bad.returncode == 1 and "TOTP code is wrong" in bad.stderr
    code = pyotp.TOTP(secret).now()
    ops.ok("vm", "list", totp=code)
    replayed = ops.cli("vm", "list", totp=code)  # seen on the wire or over a shoulder
    assert replayed.returncode == 1 and "TOTP code is wrong" in replayed.stderr
    assert demo.sql("SELECT who, status, error FROM admin_log WHERE action = 'login' "
                    "ORDER BY id") == [
        ("ops@acme", "refused", "wrong password"), ("ghost@acme", "refused",
                                                     "no such administrator"),
        ("ops@acme", "refused", "administrator ops@acme is blocked"),
        ("ops@acme", "refused", "wrong TOTP code"),
        ("ops@acme", "refused", "TOTP code used already")]


def test_the_audit_log_names_the_administrator_and_holds_no_secret(demo):
    ops = make_admin(demo, "ops@acme", "Operator L3")
    secrets = [PASSWORD, "User-pw-Kx9", "Bind-pw-Qm4", "Junior-pw-Vb2", "Odd-pw-Ht3",
               "Star-pw-Lp8"]
    ops.ok("user", "add", "login=bob", f"password={secrets[1]}")
    ops.ok("config", "set", f"auth.ldap.bindpass={secrets[2]}")  # its tenant's, not global
    ops.ok("admin", "add", "name=junior", f"password={secrets[3]}")
    # Refused before its arguments are even read, and failed after: recorded, redacted.
    ops.refused("tenant", "add", "name=beta", f"password={secrets[4]}")
    ops.refused("user", "del", "-f", "login=alice")  # allowed, but alice still has a VM
    ops.refused("admin", "add", "name=x@*", f"password={secrets[5]}")
    (ops_id, acme_id), = demo.sql("SELECT a.id, a.tenant_id FROM administrators a "
                                  "WHERE a.name = 'ops'")
    rows = demo.sql("SELECT object, action, status, administrator_id, tenant_id, source, error "
                    "FROM admin_log WHERE who = 'ops@acme' ORDER BY id")
    assert [row[:3] for row in rows] == [
        ("user", "add", "ok"), ("config", "set", "ok"), ("admin", "add", "ok"),
        ("tenant", "add", "refused"), ("user", "del", "failed"), ("admin", "add", "failed")]
    assert {row[3:6] for row in rows} == {(ops_id, acme_id, "cli")}
    assert "needs the ACL tenant.create." in rows[3][6] and "still has VMs" in rows[4][6]
    assert demo.sql("SELECT tenant_id FROM configs WHERE key = 'auth.ldap.bindpass'") == [
        (acme_id,)]
    (whole,), = demo.sql("SELECT string_agg(l::text, ' ') FROM admin_log l")
    assert "***" in whole and not [s for s in secrets if s in whole]
    local = f"local:{pwd.getpwuid(os.getuid()).pw_name}"
    assert demo.sql("SELECT DISTINCT who FROM admin_log WHERE administrator_id IS NULL "
                    "AND action <> 'login'") == [(local,)]
    mine = listed(ops, "log")
    assert {e["tenant"] for e in mine} == {"acme"}
    assert ("host", local) not in {(e["object"], e["who"]) for e in mine}  # node1: no tenant's
    assert len(listed(demo, "log")) > len(mine)  # the local superadmin sees every entry


def test_changing_several_objects_at_once_needs_the_massive_acl(demo):
    demo.ok("vm", "add", "-t", "acme", "name=lab", "user=alice", "osf=desktop", "bulk=2")
    demo.ok("role", "add", "name=one-at-a-time")
    demo.ok("role", "acl", "-f", "name=one-at-a-time", "grant=vm.see-main.,vm.update.block")
    one = make_admin(demo, "one@acme", "one-at-a-time")
    one.ok("vm", "block", "-f", "name=lab-1")
    refused = one.refused("vm", "block", "-f", "name=lab-*")
    assert "on 2 objects at once: it needs the ACL vm.update-massive.block" in refused
    assert demo.sql("SELECT v.name FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id "
                    "WHERE r.blocked ORDER BY 1") == [("lab-1",)]
    entry = demo.sql("SELECT who, status, error FROM admin_log WHERE action = 'block' "
                     "ORDER BY id DESC LIMIT 1")[0]
    assert entry[:2] == ("one@acme", "refused") and "vm.update-massive.block" in entry[2]
    demo.ok("role", "acl", "-f", "name=one-at-a-time", "grant=vm.update-massive.block")
    one.ok("vm", "block", "-f", "name=lab-*")


def test_an_administrator_over_ssh_is_logged_with_the_address_it_came_from(demo):
    demo = demo.real  # the real qvd-admin, given the environment sshd gives it
    over_ssh = demo.env(SSH_CONNECTION="192.0.2.44 50022 10.1.1.1 22")
    assert demo.cli("vm", "block", "-f", "name=desk", env=over_ssh).returncode == 0
    console = {k: v for k, v in demo.env().items() if k != "SSH_CONNECTION"}
    assert demo.cli("vm", "unblock", "-f", "name=desk", env=console).returncode == 0
    assert demo.sql("SELECT action, host(client_address) FROM admin_log "
                    "WHERE object = 'vm' AND action IN ('block', 'unblock') ORDER BY id") == [
        ("block", "192.0.2.44"), ("unblock", None)]
