"""vm spy: an administrator watches a user's desktop for support (QVD's vm.spy), view only
unless they also hold vm.spy.interactive and ask for it (interactive=1).

The operation authorizes, checks that the desktop can be watched, records it in the audit log
and says where the WAT shows it. The WAT's tunnel (wat/spy.py) runs the same operation and
takes the desktop's address from `ctx.spy_target`, which no front end prints: it carries the
agent's secret of this run of the VM.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from qvd.db.models import Vm, VmRuntime

from .errors import BadRequest, DomainError
from .grammar import check_keys
from .registry import verb
from .vms import VIEW, group


@dataclass(frozen=True)
class SpyTarget:
    vm_id: int
    name: str
    address: str
    port: int
    secret: str
    interactive: bool


def _interactive(args: dict) -> bool:
    value = str(args.get("interactive", "0")).lower()
    if value not in ("0", "1", "no", "yes", "false", "true"):
        raise BadRequest("interactive=... takes 1 or 0")
    return value in ("1", "yes", "true")


@verb(group, "spy", "Watch the desktop of the one VM chosen by -f in the WAT (view only; "
                    "interactive=1 lets you use it, with vm.spy.interactive).")
def spy(admin, call):
    check_keys(call.args, ("interactive",))
    interactive = _interactive(call.args)
    with admin.session() as s:
        vm_id = VIEW.one_id(s, call, "spy")
        vm = s.execute(select(Vm.name, VmRuntime.vm_state, VmRuntime.vm_address,
                              VmRuntime.vm_x_port, VmRuntime.vma_secret)
                       .join(VmRuntime, VmRuntime.vm_id == Vm.id)
                       .where(Vm.id == vm_id)).one()
        if vm.vm_state != "running" or not (vm.vm_address and vm.vm_x_port and vm.vma_secret):
            raise DomainError(f"vm {vm_id} '{vm.name}' is {vm.vm_state}: only a running "
                              "desktop can be watched")
        admin.audit(s, "vm", "spy", call, [vm_id])
    admin.spy_target = SpyTarget(vm_id, vm.name, str(vm.vm_address).split("/")[0],
                                 vm.vm_x_port, vm.vma_secret, interactive)
    admin.say(f"vm {vm_id} '{vm.name}': watch it {'' if interactive else 'view only '}in the "
              f"WAT at /wat/vms/{vm_id}/spy{'?interactive=1' if interactive else ''}")
