"""The cluster monitor's window (issue 13, part 1), against a real PostgreSQL: a node is
declared lost only when one monitor watched its lease go unrenewed for node_timeout on one
unbroken connection. A lease that aged while the database was away (or while the monitor was
reconnecting) does not count."""
import asyncio

from conftest import make_host_running
from hkd_nodes import wait_for
from qvd.hkd.database import Database
from qvd.hkd.host_store import declare_lost

TIMEOUT = 2.0  # hkd.cluster.node_timeout of this test


def _two_nodes_one_lease_an_hour_old(qvd) -> tuple[int, int]:
    """node1 (the monitor's) and node2, whose lease is an hour old (the database was away,
    say, and came back just now)."""
    qvd.ok("host", "add", "name=node1", "address=127.0.0.2")
    qvd.ok("host", "add", "name=node2", "address=127.0.0.3")
    me, other = make_host_running(qvd, "node1"), make_host_running(qvd, "node2")
    qvd.sql("UPDATE host_runtimes SET ok_ts = now() - interval '1 hour' WHERE host_id = :h",
            h=other)
    return me, other


def test_a_lease_that_aged_before_the_monitor_connected_is_not_held_against_it(qvd):
    me, other = _two_nodes_one_lease_an_hour_old(qvd)

    async def scenario():
        monitor = Database(qvd.params, "test monitor")
        try:
            first = await declare_lost(monitor, me, "node1", TIMEOUT)
            # node2 renews within the window the monitor has to watch: never lost
            qvd.sql("UPDATE host_runtimes SET ok_ts = now() WHERE host_id = :h", h=other)
            again = await declare_lost(monitor, me, "node1", TIMEOUT)
            return first, again
        finally:
            await monitor.close()
    assert asyncio.run(scenario()) == ([], [])
    assert qvd.sql("SELECT state, epoch FROM host_runtimes WHERE host_id = :h", h=other) == [
        ("running", 0)]


def test_a_node_silent_for_a_whole_watched_window_is_lost_and_a_reconnect_restarts_it(qvd):
    me, other = _two_nodes_one_lease_an_hour_old(qvd)

    async def scenario():
        monitor = Database(qvd.params, "test monitor")
        try:
            assert await declare_lost(monitor, me, "node1", TIMEOUT) == []
            await monitor.close()  # a reconnect: the window starts again
            started = await monitor.fetchone("SELECT now() AS t")
            while True:  # the same connection, watching, until the window completes
                lost = await declare_lost(monitor, me, "node1", TIMEOUT)
                if lost:
                    watched = await monitor.fetchone(
                        "SELECT extract(epoch FROM now() - %(t)s)::float8 AS s",
                        {"t": started["t"]})
                    return lost, watched["s"]
                await asyncio.sleep(0.1)
        finally:
            await monitor.close()
    lost, watched = asyncio.run(scenario())
    assert lost == [("node2", 0, 0)] and watched >= TIMEOUT
    wait_for(lambda: qvd.sql("SELECT state FROM host_runtimes WHERE host_id = :h", h=other)
             == [("lost",)], 5, "node2 lost")
