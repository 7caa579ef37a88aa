"""qvd-hkd's Prometheus metrics, all defined here; the places where the events happen call them.

Labels are from small fixed sets only (backend, state, reason class, connection kind, and the
tenant names of the cluster gauges): never a user name or a VM id, so the series stay bounded.
The node's own gauges are read at scrape time from the node (NodeCollector); the cluster-wide
ones (nodes by state, VMs per tenant) come from the one node holding an advisory lock
(cluster_metrics.py), so a dashboard summing over nodes does not count them twice.

The L7R's series (l7r_metrics.py). Each node's own, read at scrape time:
  qvd_l7r_open_connections           client connections its L7R serves or refuses now
  qvd_l7r_connections_total{result}  connections ended: served, failed, killed, refused, dropped
  qvd_vma_ping_failures_total        pings of a VM's agent that failed after it had answered
Cluster-wide, kept in the database by the L7R's children, from the reporter node only:
  qvd_cluster_l7r_requests_total, qvd_cluster_l7r_auth_throttled_total
  qvd_cluster_l7r_auth_attempts_total{plugin}, qvd_cluster_l7r_auth_failures_total{plugin}
  qvd_cluster_l7r_takeovers_total
  qvd_cluster_l7r_sessions_ended_total{reason}  client_closed, desktop_closed, aborted, error
  qvd_cluster_l7r_session_seconds (histogram)   ended desktop sessions' durations
  qvd_cluster_l7r_tunnel_bytes_total{direction} from_client, to_client (at each session's end)
"""
from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from . import l7r_metrics
from .node_life import ROW_STATE

# Buckets in seconds: a process VM starts in a fraction of a second, a KVM guest in a minute.
START_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

VM_START_SECONDS = Histogram("qvd_vm_start_seconds",
                             "From the node taking a VM's start to its VMA answering",
                             ["backend"], buckets=START_BUCKETS)
VM_STOP_SECONDS = Histogram("qvd_vm_stop_seconds",
                            "From a VM entering stopping to it being stopped and cleaned up",
                            ["backend"], buckets=START_BUCKETS)
VM_START_FAILURES = Counter("qvd_vm_start_failures",
                            "Starts that did not reach running, by reason class",
                            ["backend", "reason"])
VM_STOP_FAILURES = Counter("qvd_vm_stop_failures",
                           "Stops that left a zombie (the VM survived kill or cleanup failed)",
                           ["backend"])
LEASE_RENEWAL_SECONDS = Histogram("qvd_lease_renewal_seconds",
                                  "Time of one lease renewal statement", buckets=DB_BUCKETS)
LEASE_RENEWAL_FAILURES = Counter("qvd_lease_renewal_failures",
                                 "Lease renewals that failed (database unreachable or no answer)")
FENCES = Counter("qvd_fences", "Times this node fenced itself, by reason class", ["reason"])
DB_QUERY_SECONDS = Histogram("qvd_db_query_seconds", "Round trip of one database statement",
                             ["connection"], buckets=DB_BUCKETS)
DB_RECONNECTS = Counter("qvd_db_reconnects",
                        "Database connections opened after the first one", ["connection"])
DB_ERRORS = Counter("qvd_db_errors", "Statements or connections that failed", ["connection"])
VMA_PING_FAILURES = Counter("qvd_vma_ping_failures",
                            "Pings of a VM's agent that failed after it had answered in this "
                            "run of the VM (a booting agent's silence is not counted)")

# The fixed reason classes of a failed start (START_FAILURE_REASONS); anything else: "error".
START_FAILURE_REASONS = ("di_unusable", "timeout", "vm_exited", "vm_gone", "error")
FENCE_REASONS = ("lease_timeout", "declared_lost")
VM_STATES = ("starting", "running", "stopping", "zombie")

for _reason in FENCE_REASONS:  # every series exists from the start: rate() needs a zero
    FENCES.labels(_reason)
for _conn in ("main", "monitor", "pools"):
    DB_RECONNECTS.labels(_conn)
    DB_ERRORS.labels(_conn)


def start_failure_reason(event_name: str, reason: str | None) -> str:
    """The class of a failed start: from the event that ended `starting`, never its text."""
    if event_name == "refused":
        return "di_unusable"
    if event_name in ("timeout", "vm_gone"):
        return event_name
    if reason == "the VM exited while starting":
        return "vm_exited"
    return "error"


def prepare_backend(backend: str) -> None:
    """Zero series for the node's backend, so a dashboard shows 0 rather than no data."""
    VM_START_SECONDS.labels(backend)
    VM_STOP_SECONDS.labels(backend)
    VM_STOP_FAILURES.labels(backend)
    for reason in START_FAILURE_REASONS:
        VM_START_FAILURES.labels(backend, reason)


class NodeCollector:
    """Gauges read from the live node at each scrape: its VMs by state, its own state, the
    age of its lease, its L7R's connections."""

    def __init__(self, node):
        self.node = node

    def collect(self):
        node, backend = self.node, self.node.cfg.get("vm.hypervisor")
        vms = GaugeMetricFamily("qvd_node_vms", "VMs this node handles, by state",
                                labels=["backend", "state"])
        counts = dict.fromkeys(VM_STATES, 0)
        for machine in list(node.inboxes.values()):
            counts[machine.state] = counts.get(machine.state, 0) + 1
        for state, count in counts.items():
            vms.add_metric([backend, state], count)
        yield vms
        life = GaugeMetricFamily("qvd_node_state", "1 for the state this node is in",
                                 labels=["state"])
        for state in ROW_STATE:
            life.add_metric([state], 1 if node.life.state == state else 0)
        yield life
        lease = getattr(node, "lease", None)
        if lease is not None:
            yield GaugeMetricFamily("qvd_lease_age_seconds",
                                    "Seconds since this node last renewed its lease",
                                    value=time.monotonic() - lease.last_renewed)
        yield from l7r_metrics.node_families(node)
