"""Logins canonical (issue 19, part 5), kills only what they mean (part 6), the client
reconnects with a token (part 7): the real L7R over TLS, a real qvd-hkd, a real slapd."""
import json
import os
import stat
import subprocess
import sys

from hkd_nodes import wait_for
from test_l7r import connect, l7r  # noqa: F401  (l7r: the fixture, a real node's L7R)
from test_ldap import use_ldap

QVD_CLIENT = os.path.join(os.path.dirname(sys.executable), "qvd-client")


def listed(l7r, login, password="secret"):
    with connect(l7r, login, password) as conn:
        reply = conn.list_of_vm()
        return reply.status, [vm["id"] for vm in reply.json()] if reply.status == 200 else None


def last_refusal(demo) -> str:
    path = os.path.join(demo.home, "nodes", "node1", "log", "l7r-node1.log")
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line for line in handle if "authentication failed" in line][-1]


# --- part 5: one person, one user ------------------------------------------------------------

def test_default_plugin_folds_case_and_whitespace(l7r, demo):
    assert listed(l7r, "alice@acme") == (200, [1])
    for variant in ("ALICE@acme", "Alice@acme", " alice @acme", "alice @ acme"):
        assert listed(l7r, variant) == (200, [1]), variant
    assert demo.sql("SELECT count(*) FROM users WHERE lower(login) = 'alice'") == [(1,)]
    demo.ok("config", "set", "-t", "acme", "l7r.auth.login.case_insensitive=0")
    assert listed(l7r, "ALICE@acme")[0] == 401
    assert listed(l7r, " alice@acme")[0] == 200  # whitespace is never part of a login


def test_exact_match_wins_and_two_folded_matches_are_refused(l7r, demo):
    demo.ok("user", "add", "-t", "acme", "login=Alice", "password=other")
    assert listed(l7r, "Alice@acme", "other") == (200, [])
    assert listed(l7r, "alice@acme") == (200, [1])
    assert listed(l7r, "ALICE@acme")[0] == 401
    assert "differ only in case" in last_refusal(demo)


def test_ldap_logins_are_the_directorys_uid(l7r, demo, slapd):
    use_ldap(demo, slapd, "pattern", autocreate=1, **{"autocreate.osf": "desktop"})
    first = listed(l7r, "carol@acme", "carolpw")
    assert first[0] == 200 and len(first[1]) == 1
    for variant in ("CAROL@acme", "Carol@acme", "carol @acme"):
        assert listed(l7r, variant, "carolpw") == first, variant
    assert demo.sql("SELECT login FROM users WHERE lower(login) = 'carol'") == [("carol",)]
    assert demo.sql("SELECT count(*) FROM vms v JOIN users u ON u.id = v.user_id "
                    "WHERE u.login = 'carol'") == [(1,)]


def test_ldap_search_mode_and_a_first_login_in_capitals(l7r, demo, slapd):
    use_ldap(demo, slapd, "search", autocreate=1, **{"autocreate.osf": "desktop"})
    assert listed(l7r, "DAVE@acme", "davepw")[0] == 200  # created as the directory spells it
    assert listed(l7r, "dave@acme", "davepw")[0] == 200
    assert demo.sql("SELECT login FROM users WHERE lower(login) = 'dave'") == [("dave",)]


def test_autocreate_is_capped_per_tenant_and_hour(l7r, demo, slapd):
    use_ldap(demo, slapd, "pattern", autocreate=1, **{"autocreate.osf": "desktop",
                                                       "autocreate.max_per_hour": 1})
    assert listed(l7r, "carol@acme", "carolpw")[0] == 200
    assert listed(l7r, "dave@acme", "davepw")[0] == 401
    assert "auth.ldap.autocreate.max_per_hour (1) reached" in last_refusal(demo)
    assert demo.sql("SELECT count(*) FROM users WHERE login = 'dave'") == [(0,)]
    assert listed(l7r, "carol@acme", "carolpw")[0] == 200  # existing users are not counted
    # An hour later the window has room again.
    demo.sql("UPDATE admin_log SET at = now() - interval '61 minutes' WHERE who = 'qvd-l7r'")
    assert listed(l7r, "dave@acme", "davepw")[0] == 200


# --- part 6: a stored pid is signalled only while it is the L7R child that wrote it --------

def _abort_with_pid(demo, pid, written="now()"):
    (host,), = demo.sql("SELECT id FROM hosts WHERE name = 'node1'")
    demo.sql(f"UPDATE vm_runtimes SET user_state = 'connected', user_state_ts = {written}, "
             "l7r_pid = :pid, l7r_host_id = :host WHERE vm_id = 1", pid=pid, host=host)
    demo.sql("UPDATE vm_runtimes SET user_cmd = 'abort' WHERE vm_id = 1")
    wait_for(lambda: demo.sql("SELECT user_state, l7r_pid, user_cmd FROM vm_runtimes "
                              "WHERE vm_id = 1") == [("disconnected", None, None)],
             15, "the stale row to be reset")


def _hkd_log(demo) -> str:
    """Everything the node's qvd-hkd wrote (its log files and its captured output)."""
    text = []
    for folder, _, names in os.walk(os.path.join(demo.home, "nodes", "node1")):
        for name in names:
            if "hkd" in name and (name.endswith(".log") or ".log." in name):
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                    text.append(f.read())
    return "".join(text)


def test_a_stored_pid_of_another_program_is_not_signalled(l7r, demo):
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        _abort_with_pid(demo, sleeper.pid)
        assert sleeper.poll() is None  # still running: never signalled
        assert "now another program ('sleep 300')" in _hkd_log(demo)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stored_pid_reused_by_a_later_l7r_like_process_is_not_signalled(l7r, demo):
    # The command line looks like an L7R child's, but it started after the row was written.
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "qvd-l7r"])
    try:
        _abort_with_pid(demo, later.pid, written="now() - interval '1 hour'")
        assert later.poll() is None
        assert "the pid was reused" in _hkd_log(demo)
    finally:
        later.kill()
        later.wait()


# --- part 7: qvd-client keeps a token and reconnects with it ---------------------------------

def run_client(l7r, config_home, password, *more):
    port, cert = l7r
    env = {k: v for k, v in os.environ.items() if not k.startswith("QVD_")}
    env.update(XDG_CONFIG_HOME=str(config_home), QVD_PASSWORD=password)
    return subprocess.run([QVD_CLIENT, "list", "--json", "--host", "127.0.0.1", "--port",
                           str(port), "--insecure", "--login", "alice@acme", *more],
                          env=env, capture_output=True, text=True, timeout=60)


def test_qvd_client_reconnects_with_its_token(l7r, demo, tmp_path):
    first = run_client(l7r, tmp_path, "secret")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "qvd" / "tokens"
    (kept,) = list(folder.iterdir())
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert json.loads(kept.read_text())["login"] == "alice@acme"
    assert demo.sql("SELECT uses FROM user_tokens") == [(0,)]
    ok_before = demo.sql("SELECT sum(auth_ok), sum(auth_failed) FROM host_counters")
    # The second run's password is wrong: it can only succeed without a password check.
    second = run_client(l7r, tmp_path, "not-the-password")
    assert second.returncode == 0, second.stderr
    assert [vm["name"] for vm in json.loads(second.stdout)] == ["desk"]
    assert demo.sql("SELECT uses FROM user_tokens") == [(1,)]  # the server saw the token
    (ok, failed), = demo.sql("SELECT sum(auth_ok), sum(auth_failed) FROM host_counters")
    assert (ok - ok_before[0][0], failed - ok_before[0][1]) == (1, 0)
    # A refused token (revoked) falls back to the password, and a new token is kept.
    demo.ok("user", "token", "del", "-f", "login=alice", "-t", "acme")
    assert run_client(l7r, tmp_path, "not-the-password").returncode == 1
    assert not list(folder.iterdir())  # the refused token is forgotten
    third = run_client(l7r, tmp_path, "secret")
    assert third.returncode == 0, third.stderr
    assert len(list(folder.iterdir())) == 1
    assert run_client(l7r, tmp_path, "not-the-password").returncode == 0
    # --no-token: the password, always.
    assert run_client(l7r, tmp_path, "not-the-password", "--no-token").returncode == 1
