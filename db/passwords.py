"""User and administrator passwords: Argon2id (PHC strings), plus QVD's legacy hashes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

# RFC 9106's second recommended option (64 MiB, 3 passes), 4 lanes.
MEMORY_KIB, ITERATIONS, LANES = 65536, 3, 4


def hash_password(password: str) -> str:
    kdf = Argon2id(salt=os.urandom(16), length=32, iterations=ITERATIONS, lanes=LANES,
                   memory_cost=MEMORY_KIB)
    return kdf.derive_phc_encoded(password.encode("utf-8"))


def is_legacy(stored: str) -> bool:
    return not stored.startswith("$argon2id$")


def verify_password(password: str, stored: str | None, legacy_salt: str = "") -> bool:
    """True if `password` matches; legacy QVD hashes are base64(sha256(salt + password))."""
    if not stored:
        return False
    if is_legacy(stored):
        digest = hashlib.sha256((legacy_salt + password).encode("utf-8")).digest()
        return hmac.compare_digest(base64.b64encode(digest).decode("ascii").rstrip("="),
                                   stored.rstrip("="))
    try:
        Argon2id.verify_phc_encoded(password.encode("utf-8"), stored)
        return True
    except (InvalidKey, ValueError):
        return False
