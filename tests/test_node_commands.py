"""The node's command handling, in process (real database, fake backend): commands that come
at awkward moments are not left for the slow poll."""
import asyncio
import os

from qvd.db.config import Config
from qvd.hkd.fake_node import FakeNode


def node_config(env) -> Config:
    p = env.params
    return Config(node={"nodename": "node1", "path.run": f"{env.home}/run",
                        "path.log": f"{env.home}/log", "path.storage.root": env.storage,
                        "vm.hypervisor": "process", "hkd.poll.interval": "600",
                        "database.host": p["host"], "database.port": str(p["port"]),
                        "database.user": p["user"], "database.password": p["password"],
                        "database.name": env.dbname})


def test_start_arriving_while_the_previous_handler_finishes_is_taken(demo):
    async def scenario():
        node = FakeNode(node_config(demo))
        running = asyncio.create_task(node.run())
        while node.state != "running":
            await asyncio.sleep(0.05)
        # The VM's previous handler is still finishing when the start command comes.
        finishing = asyncio.create_task(asyncio.sleep(0.5))
        node.machines[1] = finishing
        finishing.add_done_callback(lambda task: node._machine_done(1, task))
        demo.sql("UPDATE vm_runtimes SET host_id = (SELECT id FROM hosts), vm_cmd = 'start'")
        await asyncio.sleep(0.2)
        assert demo.sql("SELECT vm_state FROM vm_runtimes") == [("stopped",)]  # put off
        for _ in range(100):
            await asyncio.sleep(0.05)
            if demo.sql("SELECT vm_state FROM vm_runtimes") == [("running",)]:
                break
        state = demo.sql("SELECT vm_state FROM vm_runtimes")
        node.request_stop()
        await running
        assert state == [("running",)]
    os.makedirs(os.path.join(demo.storage, "images"), exist_ok=True)
    asyncio.run(scenario())
