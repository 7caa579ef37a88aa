"""The `ldap` auth plugin against a real slapd (tests/slapd.py): through the real L7R, and the
plugin function itself for what a client cannot see (uid/gid/home, TLS, timeouts)."""
import json
import os
import shutil
import socket
import subprocess
import threading

import pytest

from qvd.db.config import Config
from qvd.hkd.backends.process import free_port
from qvd.l7r.auth import ldap as ldap_plugin
from qvd.l7r.auth.base import AuthFailed, Credentials
from qvd.l7r.db import L7rDb
from hkd_nodes import wait_for
from test_l7r import connect, l7r, open_desktop  # noqa: F401  (l7r: the fixture, a real node's L7R)
from test_pools import POOL_ADD

MODES = ["pattern", "search"]


def use_ldap(demo, slapd, mode="pattern", plugins="ldap", **more):
    """Tenant acme authenticates with LDAP (tenant-level config, as an admin would set it)."""
    values = slapd.pattern_settings() if mode == "pattern" else slapd.search_settings()
    values.update({"l7r.auth.plugins": plugins}, **{f"auth.ldap.{k}": v for k, v in more.items()})
    demo.ok("config", "set", "-t", "acme", *(f"{k}={v}" for k, v in values.items()))


def status(l7r, login, password) -> int:
    with connect(l7r, login, password) as conn:
        return conn.list_of_vm().status


def refusal(l7r, demo, login, password) -> str:
    """Log in, require 401, return what the L7R logged about it (the reason stays server-side).
    No test fails more than twice: the login back-off (5 failures) never answers instead."""
    assert status(l7r, login, password) == 401
    log = os.path.join(demo.home, "nodes", "node1", "log", "l7r-node1.log")
    with open(log, encoding="utf-8", errors="replace") as handle:
        return [line for line in handle if "authentication failed" in line][-1]


@pytest.fixture
def bob(demo):
    """bob of tenant acme, known to LDAP, without a password of his own in the database."""
    demo.ok("user", "add", "-t", "acme", "login=bob")


def test_bind_by_dn_pattern_and_the_tenant_chain_applies(l7r, demo, slapd, bob):
    demo.ok("vm", "add", "-t", "acme", "name=bobdesk", "user=bob", "osf=desktop")
    use_ldap(demo, slapd, "pattern")
    with connect(l7r, "bob@acme", "bobpw") as conn:
        reply = conn.list_of_vm()
        assert reply.status == 200
        assert [vm["name"] for vm in reply.json()] == ["bobdesk"]
    # acme's chain is ldap only: alice's database password no longer opens the door.
    assert "unknown user alice@acme" not in refusal(l7r, demo, "alice@acme", "secret")


def test_search_then_bind(l7r, demo, slapd, bob):
    use_ldap(demo, slapd, "search")
    with connect(l7r, "bob@acme", "bobpw") as conn:
        assert conn.list_of_vm().status == 200


@pytest.mark.parametrize("mode", MODES)
def test_wrong_password(l7r, demo, slapd, bob, mode):
    use_ldap(demo, slapd, mode)
    assert "LDAP refused the password of bob" in refusal(l7r, demo, "bob@acme", "carolpw")


@pytest.mark.parametrize("mode,reason", [("pattern", "LDAP refused the password of zed"),
                                         ("search", "found 0 entries")])
def test_user_unknown_to_ldap(l7r, demo, slapd, mode, reason):
    demo.ok("user", "add", "-t", "acme", "login=zed")
    use_ldap(demo, slapd, mode)
    assert reason in refusal(l7r, demo, "zed@acme", "zedpw")


@pytest.mark.parametrize("mode", MODES)
def test_empty_password_is_not_an_anonymous_bind(l7r, demo, slapd, bob, mode):
    use_ldap(demo, slapd, mode)  # this slapd accepts a DN without password as anonymous
    assert "empty password for bob@acme" in refusal(l7r, demo, "bob@acme", "")


def test_ldap_user_not_in_the_database_without_autocreate(l7r, demo, slapd):
    use_ldap(demo, slapd, "pattern")
    assert "auth.ldap.autocreate is off" in refusal(l7r, demo, "dave@acme", "davepw")
    assert demo.sql("SELECT count(*) FROM users WHERE login = 'dave'") == [(0,)]


def test_autocreate_makes_the_user_and_a_vm_once(l7r, demo, slapd):
    use_ldap(demo, slapd, "pattern", autocreate=1, **{"autocreate.osf": "desktop"})
    results = []

    def first_login():
        with connect(l7r, "carol@acme", "carolpw") as conn:
            reply = conn.list_of_vm()
            results.append((reply.status, [vm["name"] for vm in reply.json()]))
    threads = [threading.Thread(target=first_login) for _ in range(4)]  # at the same time
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [(200, ["carol"])] * 4
    with connect(l7r, "carol@acme", "carolpw") as conn:  # a later login adds nothing
        assert [vm["name"] for vm in conn.list_of_vm().json()] == ["carol"]
    assert demo.sql("SELECT u.password, t.name FROM users u JOIN tenants t ON t.id = u.tenant_id "
                    "WHERE login = 'carol'") == [(None, "acme")]  # no password to guess
    (vm_id, tag, ip, osf), = demo.sql(
        "SELECT v.id, v.di_tag, host(v.ip), o.name FROM vms v JOIN users u ON u.id = v.user_id "
        "JOIN osfs o ON o.id = v.osf_id WHERE u.login = 'carol'")
    assert (tag, ip, osf) == ("default", "10.0.0.101", "desktop")  # desk has 10.0.0.100
    assert demo.sql("SELECT vm_state FROM vm_runtimes WHERE vm_id = :v", v=vm_id) == [("stopped",)]
    assert demo.sql("SELECT count(*) FROM vm_counters WHERE vm_id = :v", v=vm_id) == [(1,)]
    assert demo.sql("SELECT object, who FROM admin_log WHERE who = 'qvd-l7r' ORDER BY id") == [
        ("user", "qvd-l7r"), ("vm", "qvd-l7r")]
    listed = demo.ok("vm", "list", "-f", "name=carol", "--csv")
    assert "carol" in listed and "10.0.0.101" in listed  # a VM like any other


def test_slapd_unreachable_is_a_refusal_and_the_node_keeps_serving(l7r, demo, slapd, bob):
    use_ldap(demo, slapd, "pattern", host=f"ldap://127.0.0.1:{free_port()}")
    assert "unreachable" in refusal(l7r, demo, "bob@acme", "bobpw")
    with connect(l7r, "bob@acme", "bobpw") as conn:
        assert conn.list_of_vm().status == 401
        assert conn.ping().status == 200  # same connection, next request


def test_chain_default_then_ldap(l7r, demo, slapd, bob):
    use_ldap(demo, slapd, "pattern", plugins="default,ldap")
    assert status(l7r, "alice@acme", "secret") == 200   # database only
    assert status(l7r, "bob@acme", "bobpw") == 200      # LDAP only


# --- the plugin function itself, on the test database ---------------------------------------

def plugin_login(demo, settings: dict, login="bob", password="bobpw"):
    db = L7rDb(demo.params)
    try:
        return ldap_plugin.authenticate(db, Config(db_global=settings),
                                        Credentials("basic", login, "acme", password))
    finally:
        db.release()


@pytest.mark.parametrize("mode", MODES)
def test_identity_carries_uid_gid_home_from_the_entry(demo, slapd, bob, mode):
    settings = slapd.pattern_settings() if mode == "pattern" else slapd.search_settings()
    identity = plugin_login(demo, settings)
    assert (identity.login, identity.tenant) == ("bob", "acme")
    assert identity.extra == {"uid": "2001", "gid": "2001", "home": "/home/bob"}


@pytest.mark.parametrize("tls,trusted", [("ldaps", True), ("starttls", True),
                                         ("starttls", False), ("ldaps", False)])
def test_tls_to_the_ldap_server_checks_its_certificate(demo, slapd, bob, tls, trusted):
    settings = slapd.pattern_settings()
    if tls == "ldaps":
        settings["auth.ldap.host"] = slapd.ldaps_uri
    else:
        settings["auth.ldap.starttls"] = "1"
    if trusted:
        settings["auth.ldap.cacert"] = slapd.cacert
        assert plugin_login(demo, settings).extra["uid"] == "2001"
    else:  # the system's CAs do not know the test CA
        with pytest.raises(AuthFailed):
            plugin_login(demo, settings)


def _failure(demo, settings) -> str:
    try:
        plugin_login(demo, settings)
    except AuthFailed as exc:
        return str(exc)
    return "no failure"


def test_a_silent_ldap_server_times_out(demo, bob):
    """The server takes the connection and the bind request and never answers: the plugin
    gives up with the reason and hangs up. Without the timeout it would wait for ever; the
    30 s bounds below only keep a broken build from hanging the run (not a measurement)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(30)
        settings = {"auth.ldap.host": f"ldap://127.0.0.1:{silent.getsockname()[1]}",
                    "auth.ldap.dn_pattern": "uid=%u,ou=people,dc=qvd,dc=test",
                    "auth.ldap.timeout": "1"}
        outcome = []
        login = threading.Thread(target=lambda: outcome.append(_failure(demo, settings)),
                                 daemon=True)
        login.start()
        peer, _ = silent.accept()
        with peer:
            peer.settimeout(30)
            assert peer.recv(4096)[:1] == b"\x30"  # an LDAP message (BER): the bind request
            while peer.recv(4096):  # until the plugin gives up and hangs up
                pass
        login.join(30)
    assert len(outcome) == 1 and "did not answer in time" in outcome[0]


def test_special_characters_in_the_login_are_escaped(demo, slapd):
    # Unescaped, "bob," would make the DN malformed and "*" would match every entry. Such
    # logins cannot be added any more (db/names.py); rows from before that still can be met.
    for login in ("bob,", "*"):
        demo.sql("INSERT INTO users (tenant_id, login) SELECT id, :login FROM tenants "
                 "WHERE name = 'acme'", login=login)
    with pytest.raises(AuthFailed, match="refused the password"):
        plugin_login(demo, slapd.pattern_settings(), "bob,", "bobpw")
    with pytest.raises(AuthFailed, match="found 0 entries"):
        plugin_login(demo, slapd.search_settings(), "*", "bobpw")


def test_blocked_user_and_blocked_tenant_are_refused(demo, slapd, bob):
    demo.ok("user", "block", "-f", "login=bob", "-t", "acme")
    with pytest.raises(AuthFailed, match="bob@acme is blocked"):
        plugin_login(demo, slapd.pattern_settings())
    demo.ok("user", "unblock", "-f", "login=bob", "-t", "acme")
    demo.ok("tenant", "block", "-f", "name=acme")
    with pytest.raises(AuthFailed, match="bob@acme is blocked"):
        plugin_login(demo, slapd.pattern_settings())


def test_autocreate_with_an_unknown_osf_creates_nothing(demo, slapd):
    settings = dict(slapd.pattern_settings(), **{"auth.ldap.autocreate": "1",
                                                 "auth.ldap.autocreate.osf": "nope"})
    with pytest.raises(AuthFailed, match="no OSF 'nope'"):
        plugin_login(demo, settings, "dave", "davepw")
    assert demo.sql("SELECT count(*) FROM users WHERE login = 'dave'") == [(0,)]


def _directory(slapd, ldif: str) -> None:
    """A change to the directory, as its administrator makes it (ldapmodify as the root DN)."""
    done = subprocess.run([shutil.which("ldapmodify") or "/usr/bin/ldapmodify", "-x", "-H",
                           slapd.uri, "-D", slapd.rootdn, "-w", slapd.rootpw],
                          input=ldif, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_pools_given_to_directory_groups_follow_the_directory(l7r, demo, slapd, bob):
    """Bob is in Designers (memberOf on his entry), carol and dave in devs (a posixGroup found
    by a search): a pool given to a group is theirs at their next login, and no longer when
    the directory takes them out."""
    demo.ok("user", "add", "-t", "acme", "login=carol")
    use_ldap(demo, slapd, "pattern", **{
        "group.filter": "(&(objectClass=posixGroup)(memberUid=%u))",
        "group.base": f"ou=groups,{slapd.base}"})
    demo.ok(*POOL_ADD, "min=0", "max=2")
    demo.ok(*POOL_ADD[:4], "name=build", "osf=desktop", "max=1")
    demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "add_group=designers")
    demo.ok("pool", "members", "-t", "acme", "-f", "name=build", "add_group=DEVS")
    lab, build = (demo.sql("SELECT id FROM pools WHERE name = :n", n=n)[0][0]
                  for n in ("lab", "build"))

    def desktops(login, password):
        with connect(l7r, f"{login}@acme", password) as conn:
            reply = conn.list_of_vm()
            assert reply.status == 200, reply
            return [(vm["id"], vm["name"]) for vm in reply.json()]
    assert desktops("bob", "bobpw") == [(-lab, "lab")]
    assert desktops("carol", "carolpw") == [(-build, "build")]
    assert demo.sql("SELECT login, directory_groups FROM users WHERE login IN ('bob', 'carol') "
                    "ORDER BY login") == [("bob", ["designers"]), ("carol", ["devs"])]
    # dave is in devs but no user of acme: nothing is made for him, and carol's pool is hers
    assert "unknown user dave@acme" in refusal(l7r, demo, "dave@acme", "davepw")
    conn, reply, _ = open_desktop(l7r, "carol@acme", "carolpw", vm_id=-lab)
    conn.close()
    assert reply.status == 404  # not her group's pool: as if it did not exist
    conn, reply, banner = open_desktop(l7r, "bob@acme", "bobpw", vm_id=-lab)
    with conn:
        assert (reply.status, banner) == (101, b"RFB 003.008\n")
    members = json.loads(demo.ok("pool", "members", "-t", "acme", "-f", "name=lab", "--json"))
    assert [(m["login"], m["via"], m["vm"]) for m in members] == [
        ("bob", "group designers", "lab-1")]
    assert json.loads(demo.ok("pool", "list", "-t", "acme", "-f", "name=build", "--json"))[0][
        "groups"] == "devs"

    # The directory takes bob out of Designers: at his next login the pool is not his any more
    # (the VM he was given stays his until `vm del`, as for a member taken off).
    designers = f"cn=Designers,ou=groups,{slapd.base}"
    _directory(slapd, f"dn: {designers}\nchangetype: modify\nadd: member\n"
                      f"member: uid=carol,ou=people,{slapd.base}\n-\ndelete: member\n"
                      f"member: uid=bob,ou=people,{slapd.base}\n")
    try:
        assert sorted(desktops("carol", "carolpw")) == [(-build, "build"), (-lab, "lab")]
        demo.ok("vm", "stop", "-t", "acme", "-f", "name=lab-1")
        wait_for(lambda: demo.sql("SELECT vm_state FROM vm_runtimes r JOIN vms v "
                                  "ON v.id = r.vm_id WHERE v.name = 'lab-1'") == [("stopped",)],
                 30, "lab-1 to stop")
        demo.ok("vm", "del", "-t", "acme", "-f", "name=lab-1")
        assert desktops("bob", "bobpw") == []
        assert demo.sql("SELECT directory_groups FROM users WHERE login = 'bob'") == [([],)]
    finally:
        _directory(slapd, f"dn: {designers}\nchangetype: modify\nadd: member\n"
                          f"member: uid=bob,ou=people,{slapd.base}\n-\ndelete: member\n"
                          f"member: uid=carol,ou=people,{slapd.base}\n")
