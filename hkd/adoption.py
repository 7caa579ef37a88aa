"""Taking back VMs after the HKD restarted (VDSM's recovery is the model): what the database
says runs here and the backend still runs is adopted as it is, without restarting it; what
is gone is cleaned up with a reason; what the backend runs that the database does not give
to this node is killed."""
from __future__ import annotations

import logging

from .backends import VmAddress

log = logging.getLogger(__name__)


async def adopt(node, gone_reason: str) -> None:
    actions, backend = node.actions, node.backend
    running = await backend.list()
    known = set()
    for row in await node.store.on_host():
        vm_id, state = row["vm_id"], row["vm_state"]
        known.add(vm_id)
        if vm_id in node.machines or state == "stopped":
            continue
        if state in ("starting", "running"):
            if vm_id in running:
                address = running[vm_id] or VmAddress(
                    row["address"], row["vm_vma_port"], row["vm_x_port"])
                address.secret = row["vma_secret"] or ""
                actions.addresses[vm_id] = address
                first = "monitor" if state == "running" else "await_vma"
                log.info("vm %d: adopted (%s)", vm_id, state)
            else:
                actions.gone_reason = gone_reason
                first = "gone"
                log.warning("vm %d: %s in the database but not running: %s", vm_id, state,
                            gone_reason)
            node.spawn(vm_id, state, first)
        else:  # stopping, zombie: finish the job
            node.spawn(vm_id, state)
    for vm_id in set(running) - known:
        log.warning("vm %d: runs here but the database does not place it here: killing it", vm_id)
        await actions.abandon(vm_id)
