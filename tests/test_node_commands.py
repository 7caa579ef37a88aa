"""The node's command handling, in process (real database, fake backend): commands that come
at awkward moments are not left for the slow poll."""
import asyncio
import os

from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.fake_node import FakeNode, fake_node_config


def test_start_arriving_while_the_previous_handler_finishes_is_taken(demo):
    async def scenario():
        node = FakeNode(fake_node_config(demo.params, demo.home, demo.storage, **{"hkd.poll.interval": "600"}))
        running = asyncio.create_task(node.run())
        while not node.life.serving:
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


def test_stop_arriving_while_the_start_is_claimed_makes_no_second_machine(demo):
    async def scenario():
        node = FakeNode(fake_node_config(demo.params, demo.home, demo.storage,
                                         **{"hkd.poll.interval": "600"}))
        running = asyncio.create_task(node.run())
        while not node.life.serving:
            await asyncio.sleep(0.05)
        spawned = []
        spawn, claim = node.spawn, node.store.claim_start

        def counting_spawn(vm_id, *args):
            spawned.append(vm_id)
            return spawn(vm_id, *args)

        async def slow_claim(vm_id):  # the claim is committed: the stop can come now
            claimed = await claim(vm_id)
            await asyncio.sleep(0.3)
            return claimed
        node.spawn, node.store.claim_start = counting_spawn, slow_claim
        demo.sql("UPDATE vm_runtimes SET host_id = (SELECT id FROM hosts), vm_cmd = 'start'")
        for _ in range(100):  # the node claims it (NOTIFY), then takes 0.3 s to go on
            await asyncio.sleep(0.02)
            if demo.sql("SELECT vm_state FROM vm_runtimes") == [("starting",)]:
                break
        assert not spawned
        demo.sql("UPDATE vm_runtimes SET vm_cmd = 'stop'")  # arrives in that gap
        for _ in range(100):
            await asyncio.sleep(0.05)
            if demo.sql("SELECT vm_state FROM vm_runtimes") == [("stopped",)] and not node.machines:
                break
        state = demo.sql("SELECT vm_state, last_error FROM vm_runtimes")
        node.request_stop()
        await running
        assert spawned == [1] and state == [("stopped", None)]  # one machine, a clean stop
    os.makedirs(os.path.join(demo.storage, "images"), exist_ok=True)
    asyncio.run(scenario())


def test_the_lease_is_renewed_while_adoption_takes_long(demo):
    """A restart over hundreds of VMs may adopt for longer than the node timeout: the lease
    must not age meanwhile (issue 13, part 6). Adoption is held until renewals are seen."""
    renewals = []

    class SlowToList(FakeBackend):
        async def list(self):
            first = None
            while len(renewals) < 3:  # adoption is stuck here until the lease moved thrice
                (ok,), = demo.sql("SELECT ok_ts FROM host_runtimes")
                if first is None:
                    first = ok
                elif ok != (renewals[-1] if renewals else first):
                    renewals.append(ok)
                await asyncio.sleep(0.05)
            return await super().list()

    async def scenario():
        node = FakeNode(fake_node_config(demo.params, demo.home, demo.storage,
                                         **{"hkd.poll.interval": "600",
                                            "hkd.lease.interval": "0.2"}), SlowToList())
        running = asyncio.create_task(node.run())
        while not node.life.serving and not running.done():
            await asyncio.sleep(0.05)
        node.request_stop()
        await running
    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert len(renewals) == 3 and renewals == sorted(renewals)


def test_a_background_loop_that_raises_is_restarted_and_says_so_on_the_host_row(demo):
    calls = []

    async def scenario():
        node = FakeNode(fake_node_config(demo.params, demo.home, demo.storage,
                                         **{"hkd.poll.interval": "600"}))

        async def flaky_liveness():
            calls.append(len(calls))
            if len(calls) == 1:
                raise RuntimeError("a bug in the loop")
            while True:
                await asyncio.sleep(3600)
        node.sync_liveness = flaky_liveness
        running = asyncio.create_task(node.run())
        while len(calls) < 2 and not running.done():
            await asyncio.sleep(0.05)
        serving = node.life.serving
        node.request_stop()
        await running
        return serving
    assert asyncio.run(asyncio.wait_for(scenario(), 60))
    assert calls == [0, 1]
    (error,), = demo.sql("SELECT last_error FROM host_runtimes")
    assert "liveness sync loop crashed (RuntimeError: a bug in the loop)" in error
