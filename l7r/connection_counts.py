"""The acceptor's connections by result, for qvd-hkd's metrics (qvd_l7r_connections_total):
a small JSON file beside the acceptor's status file, rewritten whole by the acceptor as it
reaps its children and read by qvd-hkd at each scrape. Light on purpose: qvd-hkd imports it.

Results, from the child's exit as the acceptor reaps it: served (it ended normally: the
client left, or its desktop was taken over), failed (it raised), killed (by a signal),
refused (answered 503 over a connection limit), dropped (closed unanswered: the refusing
children's cap was reached)."""
from __future__ import annotations

import json
import os

RESULTS = ("served", "failed", "killed", "refused", "dropped")


def counts_path(status_file: str) -> str:
    """l7r-<node>.status -> l7r-<node>.counts"""
    return os.path.splitext(status_file)[0] + ".counts"


def read(path: str | None) -> dict[str, int]:
    """{result: connections} for every result; zeros when there is no readable file yet."""
    counts = dict.fromkeys(RESULTS, 0)
    try:
        with open(path or "", encoding="ascii") as handle:
            found = json.load(handle)
        counts.update({k: int(found[k]) for k in RESULTS if k in found})
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return counts


def write(path: str, counts: dict[str, int]) -> None:
    """Renamed into place: a reader never sees half a file. Raises OSError."""
    partial = f"{path}.{os.getpid()}"
    with open(partial, "w", encoding="ascii") as handle:
        json.dump(counts, handle)
    os.replace(partial, path)
