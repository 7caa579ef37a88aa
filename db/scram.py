"""SCRAM-SHA-256 password verifiers for PostgreSQL roles whose password is a machine secret.

PostgreSQL stores what `ALTER ROLE ... PASSWORD` is given in this form as it is, iteration
count included, and every login then runs PBKDF2 that many times on the client. The count
exists to slow the guessing of passwords people choose; a random secret of 144 bits and more
(the L7R's) cannot be guessed however fast each try is, so its verifier uses few iterations:
an L7R connection then costs 1.9 ms instead of 5.6 ms (PostgreSQL's default of 4096), twice
per desktop session. Never use it for a password a person chose.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MACHINE_SECRET_ITERATIONS = 16
MIN_SECRET_LENGTH = 24  # characters of a random token: what this module accepts as a secret


def verifier(password: str, iterations: int = MACHINE_SECRET_ITERATIONS,
             salt: bytes | None = None) -> str:
    """The value PostgreSQL stores for this password (RFC 5802/7677, as libpq computes it)."""
    if len(password) < MIN_SECRET_LENGTH:
        raise ValueError(f"a verifier of {iterations} iterations is only for random secrets "
                         f"of {MIN_SECRET_LENGTH}+ characters")
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
