"""The node's command handling, in process (real database, fake backend): commands that come
at awkward moments are not left for the slow poll."""
import asyncio
import os

from qvd.hkd.fake_node import FakeNode, fake_node_config


def test_start_arriving_while_the_previous_handler_finishes_is_taken(demo):
    async def scenario():
        node = FakeNode(fake_node_config(demo.params, demo.home, demo.storage, **{"hkd.poll.interval": "600"}))
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
