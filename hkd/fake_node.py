"""The real node code with a fake backend and fake VMAs, and no watchdog process: for the
scale benchmarks and in-process tests of the node's command handling."""
from __future__ import annotations

from qvd.db.config import Config

from .backends.fake import FakeBackend, FakeVma
from .node import Node


class FakeNode(Node):
    def __init__(self, cfg, backend: FakeBackend | None = None):
        super().__init__(cfg)
        self.backend = backend or FakeBackend()

    async def connect(self):
        await super().connect()
        self.actions.vma = FakeVma(self.backend)

    def ensure_watchdog(self):
        pass

    def stop_watchdog(self):
        pass


def fake_node_config(params: dict, home: str, storage: str, **extra: str) -> Config:
    """The node-file values of a fake node on the given database (extra overrides)."""
    values = {"nodename": "node1", "path.run": f"{home}/run", "path.log": f"{home}/log",
              "path.storage.root": storage, "vm.hypervisor": "process",
              "database.host": params["host"], "database.port": str(params["port"]),
              "database.user": params["user"], "database.password": params["password"],
              "database.name": params["dbname"],
              # many fake nodes share one machine (and one Python process): no metrics port
              "hkd.metrics.address": ""}
    values.update(extra)
    return Config(node=values)
