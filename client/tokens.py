"""The auth token qvd-client keeps per server and login, so a reconnect skips the password
(and the server's Argon2id): $XDG_CONFIG_HOME/qvd/tokens/ (or ~/.config/qvd/tokens/), the
directory 0700 and each file 0600. A refused token is forgotten and the password used again."""
from __future__ import annotations

import json
import os
import urllib.parse


def directory() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "qvd", "tokens")


def path(host: str, port: int, login: str) -> str:
    name = urllib.parse.quote(f"{host}:{port}:{login}", safe="@.-_")
    return os.path.join(directory(), name + ".json")


def load(host: str, port: int, login: str) -> str | None:
    try:
        with open(path(host, port, login), encoding="utf-8") as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    token = saved.get("token")
    if saved.get("host") != host or saved.get("port") != port or saved.get("login") != login:
        return None
    return token if isinstance(token, str) and token else None


def save(host: str, port: int, login: str, token: str) -> str:
    """Written to a new 0600 file, then renamed over the old one."""
    folder = directory()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    final = path(host, port, login)
    temporary = f"{final}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"host": host, "port": port, "login": login, "token": token}, handle)
        os.replace(temporary, final)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return final


def forget(host: str, port: int, login: str) -> None:
    try:
        os.unlink(path(host, port, login))
    except FileNotFoundError:
        pass
