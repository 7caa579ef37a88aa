"""The L7R's series in qvd-hkd's /metrics (the list: metrics.py's docstring).

Per node, read at each scrape without the database: the acceptor's open connections (its
live children, from /proc) and its connections by result (the acceptor's counts file,
qvd.l7r.connection_counts). Children that outlived an acceptor restart are no longer its
children: they end uncounted.

Cluster-wide, from the rows the L7R's children write as they work (host_counters, and
migration 0011's host_auth_counters and host_session_ends: a request's counts, a session's
end), summed over the nodes and exported by the one cluster reporter (cluster_metrics.py)
with its gauges, so that a dashboard summing over nodes does not count them twice. They are
cumulative in the database: they survive restarts of qvd-hkd and of the reporter's node.
"""
from __future__ import annotations

import math
import os

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.utils import floatToGoString

from qvd.l7r import connection_counts, prefork, start_status
from qvd.l7r.session_end import SESSION_BUCKETS

# sum() of bigint is numeric (Decimal in Python): float8 for the exposition.
TOTALS = """
SELECT coalesce(sum(http_requests), 0)::float8 AS requests,
       coalesce(sum(auth_throttled), 0)::float8 AS throttled,
       coalesce(sum(takeovers), 0)::float8 AS takeovers,
       coalesce(sum(bytes_from_client), 0)::float8 AS up,
       coalesce(sum(bytes_to_client), 0)::float8 AS down,
       coalesce(sum(session_seconds), 0)::float8 AS seconds
FROM host_counters"""
LOGINS = """
SELECT plugin, sum(attempts)::float8 AS attempts, sum(failures)::float8 AS failures
FROM host_auth_counters GROUP BY plugin"""
ENDS = """SELECT reason, le, sum(sessions)::float8 AS n FROM host_session_ends
GROUP BY reason, le"""
SESSION_REASONS = ("client_closed", "desktop_closed", "aborted", "error")  # session_end.py
PLUGINS = ("default", "ldap", "token")  # qvd.l7r.auth.PLUGINS: zero series before any login


def open_connections(pid: int) -> int:
    """The acceptor's live children but those still waiting for a client (ready):
    connections being served or refused."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            children = handle.read().split()
    except FileNotFoundError:  # gone meanwhile, or a kernel without CONFIG_PROC_CHILDREN
        children = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()
                    and _parent(entry.name) == pid]
    return sum(1 for child in children if not prefork.is_ready(child))


def _parent(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def node_families(node):
    """The node's acceptor: open connections, connections by result."""
    runner = getattr(node, "l7r", None)  # made once the node found its host row
    if runner is None:
        return
    pid = runner.pidfile.running()
    yield GaugeMetricFamily("qvd_l7r_open_connections",
                            "Client connections this node's L7R serves (or refuses) now",
                            value=open_connections(pid) if pid else 0)
    results = CounterMetricFamily("qvd_l7r_connections",
                                  "Client connections this node's L7R ended, by result",
                                  labels=["result"])
    path = connection_counts.counts_path(start_status.status_path(node.run_dir, node.name))
    for result, count in connection_counts.read(path).items():
        results.add_metric([result], count)
    yield results


class L7rCounters:
    """The cluster's L7R counters as last read (refresh) by the reporter."""

    def __init__(self):
        self.totals: dict | None = None
        self.logins: list[dict] = []
        self.ends: list[dict] = []

    async def refresh(self, db) -> None:
        self.totals = await db.fetchone(TOTALS)
        self.logins, self.ends = await db.fetch(LOGINS), await db.fetch(ENDS)

    def collect(self):
        if self.totals is None:
            return
        totals = self.totals
        yield CounterMetricFamily("qvd_cluster_l7r_requests",
                                  "HTTP requests the L7Rs answered", value=totals["requests"])
        attempts = CounterMetricFamily(
            "qvd_cluster_l7r_auth_attempts",
            "Logins the L7Rs' plugin chains checked, by plugin (token for bearer tokens; a "
            "tenant's chain of several password plugins is one label, e.g. ldap,default)",
            labels=["plugin"])
        failures = CounterMetricFamily("qvd_cluster_l7r_auth_failures",
                                       "Logins the plugin chains refused, by plugin",
                                       labels=["plugin"])
        logins = {plugin: (0, 0) for plugin in PLUGINS}
        logins.update({row["plugin"]: (row["attempts"], row["failures"]) for row in self.logins})
        for plugin, (tried, refused) in logins.items():
            attempts.add_metric([plugin], tried)
            failures.add_metric([plugin], refused)
        yield attempts
        yield failures
        yield CounterMetricFamily("qvd_cluster_l7r_auth_throttled",
                                  "Logins refused unchecked by the failed-login back-off",
                                  value=totals["throttled"])
        yield CounterMetricFamily("qvd_cluster_l7r_takeovers",
                                  "Desktop connections that ended another connection's "
                                  "session to take its VM over", value=totals["takeovers"])
        tunnel = CounterMetricFamily("qvd_cluster_l7r_tunnel_bytes",
                                     "Bytes the ended desktop sessions carried, each way",
                                     labels=["direction"])
        tunnel.add_metric(["from_client"], totals["up"])
        tunnel.add_metric(["to_client"], totals["down"])
        yield tunnel
        yield from self._sessions(totals["seconds"])

    def _sessions(self, seconds: float):
        by_reason = dict.fromkeys(SESSION_REASONS, 0)
        by_bound: dict[float, int] = {}
        for row in self.ends:
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + row["n"]
            by_bound[row["le"]] = by_bound.get(row["le"], 0) + row["n"]
        ended = CounterMetricFamily("qvd_cluster_l7r_sessions_ended",
                                    "Desktop sessions ended, by reason class (aborted: ended "
                                    "on request, a takeover or vm disconnect)",
                                    labels=["reason"])
        for reason, count in by_reason.items():
            ended.add_metric([reason], count)
        yield ended
        buckets = [(floatToGoString(bound), sum(n for le, n in by_bound.items() if le <= bound))
                   for bound in (*SESSION_BUCKETS, math.inf)]
        yield HistogramMetricFamily("qvd_cluster_l7r_session_seconds",
                                    "Durations of the ended desktop sessions",
                                    buckets=buckets, sum_value=seconds)
