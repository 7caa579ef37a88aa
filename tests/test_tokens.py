"""Tokens with a lifecycle (issue 19, part 4), through the real L7R over TLS and the real CLI:
a token minted with a token never outlives the password login; password change, block and
`user token del` revoke; a tenant whose chain leaves out `token` refuses tokens; expired rows
are purged when a token is created."""
import base64
import hashlib
import json

from test_l7r import connect, l7r  # noqa: F401  (l7r: the fixture, a real node's L7R)


def password_token(l7r, login="alice@acme", password="secret") -> str:
    with connect(l7r, login, password) as conn:
        reply = conn.create_auth_token()
        assert reply.status == 200
        return reply.json()["auth_token"]


def token_status(l7r, token) -> int:
    with connect(l7r) as conn:
        conn.use_token(token)
        return conn.list_of_vm().status


def minted_with(l7r, token):
    with connect(l7r) as conn:
        conn.use_token(token)
        reply = conn.create_auth_token()
        return reply.json()["auth_token"] if reply.status == 200 else reply.status


def row(demo, token):
    digest = hashlib.sha256(token.encode()).hexdigest()
    found = demo.sql("SELECT expires_at, login_expires_at, uses FROM user_tokens "
                     "WHERE token_hash = :h", h=digest)
    return found[0] if found else None


def test_a_token_minted_with_a_token_never_outlives_the_password_login(l7r, demo):
    first = password_token(l7r)
    expires, login_ends, _ = row(demo, first)
    assert expires == login_ends  # a password login: the login's own lifetime
    # The login is about to end: tokens minted from it (and from those) end with it.
    demo.sql("UPDATE user_tokens SET expires_at = now() + interval '20 seconds', "
             "login_expires_at = now() + interval '20 seconds'")
    (login_ends,), = demo.sql("SELECT login_expires_at FROM user_tokens")
    second = minted_with(l7r, first)
    third = minted_with(l7r, second)
    for token in (second, third):
        expires, ends, _ = row(demo, token)
        assert ends == login_ends and expires <= login_ends
        assert token_status(l7r, token) == 200
    # Once the login has ended, no token of it mints another (nor opens anything).
    demo.sql("UPDATE user_tokens SET created_at = now() - interval '1 minute', "
             "expires_at = now() - interval '1 second', "
             "login_expires_at = now() - interval '1 second'")
    assert minted_with(l7r, third) == 401
    assert token_status(l7r, second) == 401
    # A password login starts a new lifetime.
    fresh = password_token(l7r)
    assert token_status(l7r, fresh) == 200


def test_expired_rows_are_purged_when_a_token_is_created(l7r, demo):
    old = password_token(l7r)
    demo.sql("UPDATE user_tokens SET created_at = now() - interval '2 days', "
             "expires_at = now() - interval '1 day', login_expires_at = now() - interval '1 day'")
    password_token(l7r)
    assert row(demo, old) is None
    assert demo.sql("SELECT count(*) FROM user_tokens") == [(1,)]


def test_password_change_revokes_tokens_and_the_legacy_rehash_does_not(l7r, demo):
    token = password_token(l7r)
    # The L7R upgrading a legacy hash writes the password column: not a password change.
    demo.ok("config", "set", "l7r.auth.plugin.default.salt=qvd-salt")
    legacy = base64.b64encode(hashlib.sha256(b"qvd-saltold-pass").digest()).decode()
    demo.sql("UPDATE users SET password = :p WHERE login = 'alice'", p=legacy)
    with connect(l7r, "alice@acme", "old-pass") as conn:
        assert conn.list_of_vm().status == 200
    assert token_status(l7r, token) == 200
    out = demo.ok("user", "passwd", "login=alice@acme", input="n3w-pass\n")
    assert "1 token(s) revoked" in out
    assert token_status(l7r, token) == 401
    assert demo.sql("SELECT count(*) FROM user_tokens") == [(0,)]


def test_blocking_revokes_tokens_for_good(l7r, demo):
    token = password_token(l7r)
    demo.ok("user", "block", "-f", "login=alice")
    assert token_status(l7r, token) == 401
    demo.ok("user", "unblock", "-f", "login=alice")
    assert token_status(l7r, token) == 401  # unblocking does not bring it back
    token = password_token(l7r)
    demo.ok("tenant", "block", "-f", "name=acme")
    demo.ok("tenant", "unblock", "-f", "name=acme")
    assert token_status(l7r, token) == 401


def test_user_token_list_and_del(l7r, demo):
    demo.ok("user", "add", "-t", "acme", "login=bob", "password=bobpw")
    alices = [password_token(l7r) for _ in range(2)]
    bobs = password_token(l7r, "bob@acme", "bobpw")
    assert token_status(l7r, alices[0]) == 200
    listed = json.loads(demo.ok("user", "token", "list", "-t", "acme", "--json"))
    assert sorted(t["login"] for t in listed) == ["alice", "alice", "bob"]
    used = [t for t in listed if t["token"] == hashlib.sha256(alices[0].encode()).hexdigest()[:12]]
    assert used[0]["uses"] == 1 and used[0]["last_used"]
    assert "2 token(s) revoked" in demo.ok("user", "token", "del", "-f", "login=alice",
                                           "-t", "acme")
    assert [token_status(l7r, t) for t in (*alices, bobs)] == [401, 401, 200]
    assert demo.cli("user", "token", "del").returncode != 0  # no filter, no mass revocation
    (action, ids), = demo.sql("SELECT action, object_ids FROM admin_log "
                              "WHERE action = 'token del'")
    assert len(ids) == 1


def test_a_tenant_whose_chain_leaves_out_token_refuses_tokens(l7r, demo):
    token = password_token(l7r)
    demo.ok("user", "add", "login=dora", "password=dorapw")  # tenant default
    other = password_token(l7r, "dora", "dorapw")
    demo.ok("config", "set", "-t", "acme", "l7r.auth.plugins=default")
    assert token_status(l7r, token) == 401
    log = open(f"{demo.home}/nodes/node1/log/l7r-node1.log", encoding="utf-8").read()
    assert "l7r.auth.plugins leaves out token" in log
    assert token_status(l7r, other) == 200  # the default chain names token
    with connect(l7r, "alice@acme", "secret") as conn:  # passwords still open acme
        assert conn.list_of_vm().status == 200
    demo.ok("config", "set", "-t", "acme", "l7r.auth.plugins=token,default")
    assert token_status(l7r, token) == 200


def test_bad_tokens_count_against_their_address_good_ones_write_nothing(l7r, demo):
    """A token is not rationed like a password (nothing costly to check, nothing to guess):
    a good one leaves no back-off row; bad ones count, and at the limit their address is
    refused, good token or not."""
    demo.ok("config", "set", "l7r.auth.backoff.max_failures=3")
    token = password_token(l7r)
    demo.sql("DELETE FROM auth_failures")  # the password login's own row is gone already
    assert token_status(l7r, token) == 200
    assert demo.sql("SELECT key, failures FROM auth_failures") == []
    for _ in range(3):
        assert token_status(l7r, "not-a-token") == 401
    assert demo.sql("SELECT key, failures FROM auth_failures") == [("address:127.0.0.1", 3)]
    with connect(l7r) as conn:
        conn.use_token(token)
        reply = conn.list_of_vm()
    assert reply.status == 401 and b"Too many failed attempts" in reply.body
