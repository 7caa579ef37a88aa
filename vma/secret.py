"""The agent obeys only its node: a secret made by the node at each start of the VM, carried
by every call to the agent (RPC and the desktop relay) as a bearer value.

Why a bearer and not an HMAC: the secret only travels on the VM network between the node and
this one VM, on a bridge port that lets nothing but the VM's own MAC and IP out and reaches no
other VM; the only party that could read it on the wire is the VM's root, who can read the
secret file anyway. A bearer is checkable by any agent (the busybox one of the tests' tiny KVM
guest, a future non-Python agent), costs no clock agreement, and is new at every start, so a
leaked one dies with the VM's run. Comparison is constant-time.

Shared by the agent (checking) and the node and the L7R (sending); this module must not import
qvd.db (it runs inside the image).
"""
from __future__ import annotations

import hmac
import os
import secrets

HEADER = "Authorization"
SCHEME = "Bearer "
RELAY_GREETING = b"QVD-AUTH "  # first line on the desktop port: b"QVD-AUTH <secret>\r\n"
MAX_GREETING = 200


def new_secret() -> str:
    return secrets.token_hex(32)


def bearer(secret: str) -> dict[str, str]:
    """The header a caller sends."""
    return {HEADER: SCHEME + secret}


def relay_greeting(secret: str) -> bytes:
    return RELAY_GREETING + secret.encode("ascii") + b"\r\n"


def matches(offered: str | None, secret: str) -> bool:
    if not offered or not secret:
        return False
    return hmac.compare_digest(offered.encode("utf-8", "replace"), secret.encode("ascii"))


def from_header(value: str | None) -> str | None:
    if value and value.startswith(SCHEME):
        return value[len(SCHEME):].strip()
    return None


def from_greeting(line: bytes) -> str | None:
    if line.startswith(RELAY_GREETING) and line.endswith(b"\n"):
        return line[len(RELAY_GREETING):].strip().decode("ascii", "replace")
    return None


def write_file(path: str, secret: str, uid: int = 0, gid: int = 0) -> None:
    """The node's copy for the agent: readable by the agent's account only."""
    partial = f"{path}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o400)
    try:
        os.write(fd, secret.encode("ascii"))
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    os.replace(partial, path)


def read_file(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        value = handle.read().strip()
    if len(value) < 32:
        raise ValueError(f"{path}: the agent's secret is missing or too short")
    return value


SMBIOS_OEM_STRINGS = "/sys/firmware/dmi/entries"  # type 11 entries: 11-0, 11-1, ...
SMBIOS_KEY = b"qvd.vma_secret="


def read_smbios(root: str = SMBIOS_OEM_STRINGS) -> str:
    """The secret a KVM node put in the guest's SMBIOS OEM strings (root-only in the guest)."""
    try:
        entries = sorted(n for n in os.listdir(root) if n.startswith("11-"))
    except OSError:
        entries = []
    for name in entries:
        with open(os.path.join(root, name, "raw"), "rb") as handle:
            for text in handle.read().split(b"\0"):
                if SMBIOS_KEY in text:
                    value = text.split(SMBIOS_KEY, 1)[1].decode("ascii", "replace").strip()
                    if len(value) >= 32:
                        return value
    raise ValueError("no qvd.vma_secret in the SMBIOS OEM strings (is this a qvd KVM guest?)")
