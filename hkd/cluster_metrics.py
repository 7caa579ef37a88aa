"""The cluster-wide series (nodes by state, VMs by tenant and state, the L7Rs' counters kept
in the database: l7r_metrics.py), exported by one node at a time: whichever holds the session advisory lock below on its main connection. The lock
goes with the connection, so when that node stops or loses the database another takes over at
its next refresh; the others export nothing for these series (qvd_cluster_reporter 0).
"""
from __future__ import annotations

import asyncio
import logging

from prometheus_client.core import GaugeMetricFamily

from .database import DbUnavailable
from .l7r_metrics import L7rCounters

log = logging.getLogger(__name__)

TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext('qvd: cluster metrics')) AS got"
NODES = "SELECT state, count(*) AS n FROM host_runtimes GROUP BY state"
VMS = """
SELECT t.name AS tenant, r.vm_state AS state, count(*) AS n
FROM vm_runtimes r JOIN vms v ON v.id = r.vm_id
JOIN tenants t ON t.id = v.tenant_id GROUP BY t.name, r.vm_state"""
REFRESH_SECONDS = 5.0  # a scrape interval's worth; five small GROUP BYs


class ClusterMetrics:
    def __init__(self, db):
        self.db = db
        self.locked_on: int | None = None  # the db.connects at which the lock was taken
        self.nodes: list[dict] = []
        self.vms: list[dict] = []
        self.l7r = L7rCounters()

    @property
    def reporting(self) -> bool:
        return self.locked_on is not None and self.locked_on == self.db.connects

    async def refresh(self) -> None:
        if not self.reporting:  # a reconnect drops a session lock: take it again
            row = await self.db.fetchone(TRY_LOCK)
            self.locked_on = self.db.connects if row and row["got"] else None
        if self.reporting:
            self.nodes, self.vms = await self.db.fetch(NODES), await self.db.fetch(VMS)
            await self.l7r.refresh(self.db)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except DbUnavailable as exc:
                self.locked_on = None
                log.debug("cluster metrics: database unavailable: %s", exc)
            await asyncio.sleep(REFRESH_SECONDS)

    def collect(self):
        yield GaugeMetricFamily("qvd_cluster_reporter",
                                "1 on the one node exporting the qvd_cluster_* gauges",
                                value=1 if self.reporting else 0)
        if not self.reporting:
            return
        nodes = GaugeMetricFamily("qvd_cluster_nodes", "Nodes by the state of their row",
                                  labels=["state"])
        for row in self.nodes:
            nodes.add_metric([row["state"]], row["n"])
        yield nodes
        vms = GaugeMetricFamily("qvd_cluster_vms", "VMs by tenant and state",
                                labels=["tenant", "state"])
        for row in self.vms:
            vms.add_metric([row["tenant"], row["state"]], row["n"])
        yield vms
        yield from self.l7r.collect()
