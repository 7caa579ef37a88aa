"""The real node code with a fake backend and fake VMAs, and no watchdog process: for the
scale benchmarks and in-process tests of the node's command handling."""
from __future__ import annotations

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
