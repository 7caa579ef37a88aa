"""What a pool needs next, decided from its VMs as they are (no I/O: hkd/pool_keeper.py reads
and writes). The rules, in order:

| rule                | when                                   | action                          |
|---------------------|----------------------------------------|---------------------------------|
| blocked             | the pool is blocked                    | nothing                         |
| release             | throw-away: a user left release_after  | stop it; once stopped, back to  |
|                     | seconds ago                            | the pool (fresh at its start)   |
| too many spares     | spares up > spare                      | stop the newest extra spares    |
| shrink              | spares up >= spare, total > min        | delete stopped spares to min    |
|                     |                                        | (not those given back: their    |
|                     |                                        | next start discards the files)  |
| rollout             | a running spare runs another DI than   | stop it (one at a time, when no |
|                     | its tag names now (di tag moved)       | spare is starting or stopping); |
|                     |                                        | "spares short" restarts it      |
| spares short        | spares up < spare                      | start stopped spares, then make |
|                     |                                        | new ones (never above max)      |
| below min           | total < min                            | make VMs (stopped beyond spare) |
VMs given to users take a new DI at their next start, as any VM; throw-away ones once
given back. A start or a VM made counts against pool.max_preparing with the VMs already
starting; what is left over waits for the next pass (every start's end wakes the keepers).

"Spare": a VM of the pool with no user. "Up": running and not asked to stop, or starting.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qvd.db.runtime.pools import idle, outdated, preparing, up


@dataclass
class Plan:
    create: int = 0      # VMs to make
    start_new: int = 0   # of those, how many to start at once (spares short)
    start: list[int] = field(default_factory=list)   # stopped spares to start
    stop: list[int] = field(default_factory=list)    # spares beyond `spare`
    delete: list[int] = field(default_factory=list)  # stopped spares beyond min
    release: list[int] = field(default_factory=list)  # stopped throw-away VMs given back
    stop_left: list[int] = field(default_factory=list)  # throw-away VMs whose user left
    reason: str = ""


def _counts(total, given, spares_up, stopped) -> str:
    return f"{total} VMs: {given} given to users, {spares_up} spare up, {stopped} spare stopped"


def _released(pool: dict, vms: list[dict], release_after: float, plan: Plan) -> list[str]:
    """Throw-away VMs whose user left release_after ago: stopped first, then given back
    (they count as spares from the next pass on)."""
    if pool["assignment"] != "throwaway":
        return []
    left = [vm for vm in vms if vm["user_id"] is not None
            and vm["user_state"] == "disconnected" and vm["user_idle"] >= release_after]
    plan.release = [vm["id"] for vm in left if idle(vm)]
    plan.stop_left = [vm["id"] for vm in left if up(vm) and vm["vm_cmd"] is None]
    return [f"giving back {len(left)} throw-away VM(s) unused for {release_after:g}s"] \
        if left else []


def decide(pool: dict, vms: list[dict], max_preparing: int,
           release_after: float = 0.0) -> Plan:
    spares = [vm for vm in vms if vm["user_id"] is None]
    spares_up = [vm for vm in spares if up(vm)]
    stopped = [vm for vm in spares if idle(vm)]
    total, given = len(vms), len(vms) - len(spares)
    counts = _counts(total, given, len(spares_up), len(stopped))
    sizes = f"min {pool['min']}, spare {pool['spare']}, max {pool['max']}"
    plan = Plan()
    if pool["blocked"]:
        plan.reason = f"blocked: no VM is made or started ({counts})"
        return plan
    done, waiting = _released(pool, vms, release_after, plan), []
    extra = len(spares_up) - pool["spare"]
    if extra > 0:  # the newest go first: they are likely still starting
        plan.stop += [vm["id"] for vm in spares_up[-extra:]]
        done.append(f"stopping {extra} spare(s) beyond spare={pool['spare']}")
    moving = [vm for vm in spares if preparing(vm) or vm["vm_cmd"] == "stop"
              or vm["vm_state"] == "stopping"]
    old_di = [vm for vm in spares_up if outdated(vm) and vm["id"] not in plan.stop]
    if extra == 0 and old_di and not moving:
        plan.stop.append(old_di[0]["id"])
        done.append(f"rollout: restarting spare vm {old_di[0]['id']} on the DI its tag names "
                    f"now ({len(old_di)} to go)")
    deletable = [vm for vm in stopped if not vm["discard_home"]]  # see DELETE_SPARE
    if extra >= 0 and total > pool["min"] and deletable:
        plan.delete = [vm["id"] for vm in deletable[:total - pool["min"]]]
        done.append(f"deleting {len(plan.delete)} stopped spare(s) beyond min={pool['min']}")
    budget = max(0, max_preparing - sum(1 for vm in vms if preparing(vm)))
    short = max(0, -extra)
    startable = min(short, len(stopped))  # stopped spares cover the shortage first
    plan.start = [vm["id"] for vm in stopped[:min(startable, budget)]]
    budget -= len(plan.start)
    to_make = max(short - startable, pool["min"] - total)
    room = max(0, pool["max"] - total)
    plan.create = min(to_make, room, budget)
    plan.start_new = min(plan.create, short - startable)
    if plan.create:
        done.append(f"making {plan.create} VM(s)")
    if plan.start or plan.start_new:
        done.append(f"starting {len(plan.start) + plan.start_new} spare(s)")
    if to_make > room:
        waiting.append(f"{to_make - room} VM(s) short: the pool is at max {pool['max']}")
    if len(plan.start) < startable or plan.create < min(to_make, room):
        waiting.append(f"the rest waits for starts under way (pool.max_preparing "
                       f"{max_preparing})")
    if not done and not waiting:
        plan.reason = f"settled ({sizes}; {counts})"
    else:
        plan.reason = "; ".join(done + waiting) + f" ({sizes}; {counts})"
    return plan
