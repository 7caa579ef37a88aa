"""qvd-admin vm start|stop|disconnect: write the command; the triggers NOTIFY the nodes.

Each VM is handled on its own: the ones that can take the command get it, the others are
named on stderr and make the exit status 1.
"""
from sqlalchemy import select, update

from qvd.db.models import Osf, Vm, VmRuntime
from qvd.db.placement import choose_host
from qvd.db.states import VM_STOPPABLE

from .errors import DomainError
from .grammar import check_keys
from .registry import verb
from .vms import VIEW, group


def _selected(s, call):
    ids = VIEW.ids(s, call)
    return s.execute(select(Vm.id, Vm.name, Osf.memory, VmRuntime.vm_state, VmRuntime.vm_cmd,
                            VmRuntime.user_state, VmRuntime.blocked)
                     .join(VmRuntime, VmRuntime.vm_id == Vm.id).join(Osf, Osf.id == Vm.osf_id)
                     .where(Vm.id.in_(ids)).order_by(Vm.id)).all()


def _report(admin, action: str, done: list[int], refused: list[str]) -> None:
    admin.say(f"{action} sent to {len(done)} vm(s)"
          + (": " + ", ".join(map(str, done)) if done else ""))
    if refused:
        raise DomainError("\n".join(refused))


def _set(s, vm_id: int, where, **values) -> bool:
    """A conditional UPDATE: True if the row still matched, i.e. nobody moved first."""
    stmt = update(VmRuntime).where(VmRuntime.vm_id == vm_id, *where).values(**values)
    return s.execute(stmt.returning(VmRuntime.vm_id)).first() is not None


@verb(group, "start", "Start the VMs chosen by -f: each is placed on a running node where its "
                      "memory fits, and that node's qvd-hkd starts it.")
def start(admin, call):
    check_keys(call.args, ())
    done, refused = [], []
    with admin.session() as s:
        cfg = admin.settings(s)
        for vm in _selected(s, call):
            if vm.blocked:
                refused.append(f"vm {vm.id} '{vm.name}' is blocked")
            elif vm.vm_state != "stopped" or vm.vm_cmd == "start":
                refused.append(f"vm {vm.id} '{vm.name}' is already "
                               f"{'starting' if vm.vm_cmd == 'start' else vm.vm_state}")
            elif (host_id := choose_host(s, cfg, vm.memory)) is None:
                refused.append(f"vm {vm.id} '{vm.name}': no running node has {vm.memory} MiB "
                               "free (see 'qvd-admin host list')")
            # Assign the node and ask it to start in one step: never one without the other.
            elif _set(s, vm.id, (VmRuntime.vm_state == "stopped", VmRuntime.vm_cmd.is_(None),
                                 VmRuntime.blocked.is_(False)),
                      host_id=host_id, vm_cmd="start", last_error=None, last_error_at=None):
                done.append(vm.id)
            else:
                refused.append(f"vm {vm.id} '{vm.name}' changed meanwhile; try again")
        if done:
            admin.audit(s, "vm", "start", call, done)
    _report(admin, "start", done, refused)


@verb(group, "stop", "Stop the VMs chosen by -f (their node powers them off).")
def stop(admin, call):
    check_keys(call.args, ())
    done, refused = [], []
    with admin.session() as s:
        for vm in _selected(s, call):
            if vm.vm_state == "stopped" and vm.vm_cmd == "start":
                # Not claimed by its node yet: withdraw the request and the placement.
                ok = _set(s, vm.id, (VmRuntime.vm_state == "stopped", VmRuntime.vm_cmd == "start"),
                          vm_cmd=None, host_id=None)
            elif vm.vm_state in VM_STOPPABLE:
                ok = _set(s, vm.id, (VmRuntime.vm_state.in_(VM_STOPPABLE),), vm_cmd="stop")
            else:
                refused.append(f"vm {vm.id} '{vm.name}' is {vm.vm_state}: nothing to stop")
                continue
            if ok:
                done.append(vm.id)
            else:
                refused.append(f"vm {vm.id} '{vm.name}' changed meanwhile; try again")
        if done:
            admin.audit(s, "vm", "stop", call, done)
    _report(admin, "stop", done, refused)


@verb(group, "disconnect", "Disconnect the users of the VMs chosen by -f; the VMs keep running.")
def disconnect(admin, call):
    check_keys(call.args, ())
    done, refused = [], []
    with admin.session() as s:
        for vm in _selected(s, call):
            if vm.user_state == "disconnected":
                refused.append(f"vm {vm.id} '{vm.name}' has no connected user")
            elif _set(s, vm.id, (VmRuntime.user_state != "disconnected",), user_cmd="abort"):
                done.append(vm.id)
            else:
                refused.append(f"vm {vm.id} '{vm.name}' changed meanwhile; try again")
        if done:
            admin.audit(s, "vm", "disconnect", call, done)
    _report(admin, "disconnect", done, refused)
