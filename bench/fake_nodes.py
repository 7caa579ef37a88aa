"""The simulated nodes of the benchmarks: the real node code (qvd.hkd.fake_node.FakeNode: fake
backend, fake VMAs, no watchdog process) without an L7R acceptor."""
from __future__ import annotations

from qvd.hkd.fake_node import FakeNode


class NoL7r:
    """Stands in for the node's L7rRunner. A real node keeps its qvd-l7r running and only
    reads its pid file each second; a simulated node has no certificate, and the real runner
    would look for one in the database every second: a load no real node makes."""

    async def ensure(self) -> None:
        pass

    def stop(self) -> None:
        pass

    @staticmethod
    def affected_by(key: str) -> bool:
        return False

    async def restart(self) -> None:
        pass


class BenchFakeNode(FakeNode):
    async def connect(self):
        await super().connect()
        self.l7r = NoL7r()

    @property
    def queries(self) -> int:
        """Statements this node sent so far (both of its connections)."""
        return self.db.queries + self.monitor_db.queries
