"""The L7R role's password: a random secret is stored as a quick SCRAM verifier (each L7R
connection process logs in), a short one is left to the server's hashing; both log in, and
only with the right password."""
import secrets

import psycopg
import pytest

from conftest import L7R_PASSWORD
from qvd.db.engine import L7R_ROLE, enable_l7r_role


def stored_verifier(qvd) -> str:
    (stored,), = qvd.sql("SELECT rolpassword FROM pg_authid WHERE rolname = :r", r=L7R_ROLE)
    return stored


def logs_in(qvd, password: str) -> bool:
    try:
        psycopg.connect(**dict(qvd.params, user=L7R_ROLE, password=password)).close()
        return True
    except psycopg.OperationalError as exc:
        assert "password authentication failed" in str(exc)
        return False


@pytest.mark.parametrize("password, iterations", [
    (secrets.token_urlsafe(24), 16),  # what the embedded cluster makes
    ("Short:Chosen%1'", 4096),       # a person's password keeps PostgreSQL's default
])
def test_db_upgrade_gives_the_l7r_role_the_configured_password(qvd, password, iterations):
    qvd.write_conf(f"database.l7r.password = {password}\n")  # later lines win
    try:
        qvd.ok("db", "upgrade")
        assert stored_verifier(qvd).startswith(f"SCRAM-SHA-256${iterations}:")
        assert logs_in(qvd, password)
        assert not logs_in(qvd, password + "x")
        assert not logs_in(qvd, L7R_PASSWORD)
    finally:  # the role is the cluster's: every other test's nodes log in with L7R_PASSWORD
        enable_l7r_role(qvd.engine, L7R_PASSWORD)
    assert logs_in(qvd, L7R_PASSWORD)
