"""The node's life table (hkd/node_life.py): what an administrator relies on."""
import pytest

from qvd.hkd.node_life import ROW_STATE, TRANSITIONS, BadTransition, NodeLife

STATES = set(ROW_STATE)


def test_every_state_is_reachable_and_a_live_node_can_always_be_stopped():
    reached, frontier = {"starting"}, ["starting"]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source == state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == STATES
    for state in STATES - {"stopping", "stopped"}:
        assert TRANSITIONS[(state, "stop")] == "stopping", state


def test_a_lost_database_keeps_vms_until_the_fence_and_a_fenced_node_must_rejoin():
    life = NodeLife("node1")
    life.fire("joined")
    life.fire("db_lost", "connection refused")
    assert (life.serving, life.fenced) == (False, False)  # VMs kept, no new work
    life.fire("db_back")
    assert life.serving
    life.fire("db_lost")
    life.fire("fence", "70 s without the database")
    life.fire("fenced")
    assert life.fenced and not life.serving
    with pytest.raises(BadTransition):
        life.fire("db_back")  # only a new lease (rejoin) brings it back
    life.fire("rejoin")
    life.fire("rejoin_failed")
    life.fire("rejoin")
    life.fire("joined")
    assert life.serving and not life.fenced
