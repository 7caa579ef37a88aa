"""How the acceptor tells whoever started it that it listens, or the one sentence saying why it
could not (port in use, unusable certificate): a small file beside its pid file. qvd-hkd puts
the sentence on the host row (`qvd-admin host list`); `qvd-admin system start` fails with it.
A log line alone would be seen by nobody."""
from __future__ import annotations

import os

LISTENING = "listening"


def status_path(run_dir: str, node: str) -> str:
    return os.path.join(run_dir, f"l7r-{node}.status")


def write(path: str | None, text: str) -> None:
    if not path:
        return
    partial = f"{path}.{os.getpid()}"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text.strip() + "\n")
    os.replace(partial, path)  # a reader never sees half a line


def read(path: str) -> str | None:
    """LISTENING, the reason it could not start, or None (not started yet)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except FileNotFoundError:
        return None


def clear(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
