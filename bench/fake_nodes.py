"""The simulated nodes of the benchmarks: the real node code (qvd.hkd.fake_node.FakeNode: fake
backend, fake VMAs, no watchdog process) without an L7R acceptor; NodeProcesses runs many of
them in worker processes."""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os

from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.fake_node import FakeNode, fake_node_config


# The first rows of every benchmark on simulated nodes: one OSF ('bench', id 1) with its DI
# tagged default, and %(nodes)s nodes (node1..., at 127.1.0.n) with their runtimes.
CLUSTER_SEED = """
INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'bench', 1);
INSERT INTO dis (osf_id, path, version) VALUES (1, 'bench.tar', 'v1');
INSERT INTO di_tags (di_id, osf_id, tag) VALUES (1, 1, 'default');
INSERT INTO hosts (name, address)
  SELECT 'node' || n, '127.1.0.0'::inet + n FROM generate_series(1, %(nodes)s) n;
INSERT INTO host_runtimes (host_id) SELECT id FROM hosts;
"""


def seed(db, statements: str, values: dict) -> None:
    """Statements separated by ';\n', each run with these parameters."""
    for statement in filter(str.strip, statements.split(";\n")):
        db.execute(statement, values)


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


# --- simulated nodes in worker processes (bench.pool_bench, bench.scale_bench) ---------------
def _node_worker(params: dict, root: str, names: list[str], running: int, conn) -> None:
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_run_nodes(params, root, names, running, conn))


def _backend(name: str, running: int) -> FakeBackend:
    """node<N>'s backend, running its `running` VMs (ids (N-1)*running+1 on) when it starts."""
    backend = FakeBackend()
    first = (int(name.removeprefix("node")) - 1) * running + 1
    backend.running = {vm: None for vm in range(first, first + running)}
    return backend


async def _run_nodes(params: dict, root: str, names: list[str], running: int, conn) -> None:
    nodes = [BenchFakeNode(fake_node_config(params, os.path.join(root, "nodes", name),
                                            os.path.join(root, "storage"), nodename=name),
                           _backend(name, running)) for name in names]
    tasks = [asyncio.create_task(node.run()) for node in nodes]
    loop = asyncio.get_running_loop()
    while (message := await loop.run_in_executor(None, conn.recv)) != "exit":
        assert message == "status"
        conn.send({"queries": sum(node.queries + (node.pools.db.queries if hasattr(
                       node, "pools") else 0) for node in nodes),
                   "serving": sum(bool(node.life.serving) for node in nodes),
                   "machines": sum(len(node.machines) for node in nodes),
                   "failed": [repr(task.exception()) for task in tasks
                              if task.done() and not task.cancelled() and task.exception()]})
    conn.send("bye")
    os._exit(0)  # no orderly node shutdown: nothing outside this process to stop


class NodeProcesses:
    """Simulated nodes with the given names (node<N>: a FakeBackend each, running `running`
    VMs of its own at first, as a restarted node finds them; homes under root/nodes/<name>),
    spread over `processes` worker processes. status(): their statements sent so far (the
    pool keepers' too), how many serve, their VM machines."""

    def __init__(self, params: dict, root: str, names: list[str], processes: int,
                 running: int = 0):
        context = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        for index in range(min(len(names), processes)):
            mine, theirs = context.Pipe()
            proc = context.Process(target=_node_worker, daemon=True,
                                   args=(params, root, names[index::processes], running,
                                         theirs))
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    def status(self) -> dict:
        for pipe in self.pipes:
            pipe.send("status")
        replies = [pipe.recv() for pipe in self.pipes]
        if failed := [f for reply in replies for f in reply["failed"]]:
            raise RuntimeError(f"simulated nodes failed: {failed[:3]}")
        return {key: sum(reply[key] for reply in replies)
                for key in ("queries", "serving", "machines")}

    def stop(self) -> None:
        for pipe, proc in zip(self.pipes, self.procs):
            try:
                pipe.send("exit")
                pipe.recv()
            except (OSError, EOFError):
                pass
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
