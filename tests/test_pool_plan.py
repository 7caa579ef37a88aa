"""The pool keeper's rules (hkd/pool_plan.py) on VM lists the database cannot easily be made
to show at once: the decision alone, no I/O."""
from qvd.hkd.pool_plan import decide

POOL = {"min": 2, "spare": 2, "max": 5, "blocked": False, "assignment": "persistent"}


def vm(vm_id, user=None, state="stopped", cmd=None, current=1, tag=1):
    return {"id": vm_id, "user_id": user, "discard_home": False, "vm_state": state,
            "vm_cmd": cmd, "blocked": False, "user_state": "disconnected", "user_idle": 0.0, "current_di_id": current,
            "tag_di_id": tag}


def test_the_keepers_rules():
    # too many spares: the newest stop; stopped spares past min go
    plan = decide(dict(POOL, spare=1), [vm(1, state="running"), vm(2, state="running"),
                                        vm(3), vm(4)], 4)
    assert (plan.stop, plan.delete, plan.create) == ([2], [3, 4], 0)
    # short of spares: stopped ones first, then new VMs, all within max_preparing
    plan = decide(dict(POOL, spare=4), [vm(1, user=7, state="running"), vm(2)], 2)
    assert (plan.start, plan.create, plan.start_new) == ([2], 1, 1)
    assert "pool.max_preparing 2" in plan.reason
    # at max: nothing made, and the reason says so
    plan = decide(dict(POOL, max=2), [vm(1, user=7, state="running"),
                                      vm(2, user=8, state="running")], 4)
    assert (plan.create, plan.start) == (0, [])
    assert "2 VM(s) short: the pool is at max 2" in plan.reason
    # blocked: nothing at all
    assert decide(dict(POOL, blocked=True), [], 4).create == 0
    # a rollout restarts one outdated spare at a time, never one given to a user
    plan = decide(POOL, [vm(1, state="running", tag=2), vm(2, state="running", tag=2),
                         vm(3, user=7, state="running", tag=2)], 4)
    assert plan.stop == [1] and "rollout" in plan.reason
    # a throw-away VM left long enough: stopped, then given back once stopped
    throwaway = dict(POOL, assignment="throwaway")
    left = dict(vm(1, user=7, state="running"), user_idle=10.0)
    assert decide(throwaway, [left, vm(2, state="running"), vm(3, state="running")],
                  4, 5.0).stop_left == [1]
    assert decide(throwaway, [dict(left, vm_state="stopped"), vm(2, state="running"),
                              vm(3, state="running")], 4, 5.0).release == [1]
