"""vm start|stop|disconnect: write the command (db/runtime/vm_commands.py); the triggers
NOTIFY the nodes.

Each VM is handled on its own: the ones that can take the command get it, the others are
named in one DomainError after the ones that got it were reported.
"""
from sqlalchemy import select

from qvd.db.models import Di, DiTag, Osf, Vm, VmRuntime
from qvd.db.runtime import OnSession, vm_commands
from qvd.db.runtime.vm_image import unusable_reason
from qvd.db.states import VM_STOPPABLE

from .errors import DomainError
from .grammar import check_keys
from .registry import verb
from .vms import VIEW, group


def _selected(s, call):
    ids = VIEW.ids(s, call)
    return s.execute(select(Vm.id, Vm.name, Vm.di_tag, Osf.name.label("osf"), Osf.memory,
                            VmRuntime.vm_state, VmRuntime.vm_cmd, VmRuntime.user_state,
                            VmRuntime.user_cmd, VmRuntime.blocked, Di.id.label("di_id"),
                            Di.blocked.label("di_blocked"))
                     .join(VmRuntime, VmRuntime.vm_id == Vm.id).join(Osf, Osf.id == Vm.osf_id)
                     .outerjoin(DiTag, (DiTag.osf_id == Osf.id) & (DiTag.tag == Vm.di_tag))
                     .outerjoin(Di, Di.id == DiTag.di_id)
                     .where(Vm.id.in_(ids)).order_by(Vm.id)).all()


def _each(admin, call, action: str, send) -> None:
    """send(db, vm) -> None when sent, else why not (" is blocked"); one audit entry for
    the ones sent."""
    done, refused = [], []
    with admin.session() as s:
        db = OnSession(s)
        for vm in _selected(s, call):
            why = send(db, vm)
            if why is None:
                done.append(vm.id)
            else:
                refused.append(f"vm {vm.id} '{vm.name}'{why}")
        if done:
            admin.audit(s, "vm", action, call, done)
    admin.say(f"{action} sent to {len(done)} vm(s)"
              + (": " + ", ".join(map(str, done)) if done else ""))
    if refused:
        raise DomainError("\n".join(refused))


@verb(group, "start", "Start the VMs chosen by -f: each is placed on a running node where its "
                      "memory fits, and that node's qvd-hkd starts it.")
def start(admin, call):
    check_keys(call.args, ())
    cfg = None

    def send(db, vm):
        nonlocal cfg
        if vm.blocked:
            return " is blocked"
        if vm.vm_state != "stopped" or vm.vm_cmd == "start":
            return f" is already {'starting' if vm.vm_cmd == 'start' else vm.vm_state}"
        if (why := unusable_reason(vm.osf, vm.di_tag, vm.di_id, vm.di_blocked)) is not None:
            return f": {why}"
        if cfg is None:
            cfg = admin.settings(db.session)
        sent = vm_commands.place_and_start(db, cfg, vm.id, vm.memory)
        if sent is vm_commands.Start.NO_ROOM:
            return f": no running node has {vm.memory} MiB free (see 'qvd-admin host list')"
        return None if sent is vm_commands.Start.SENT else " changed meanwhile; try again"
    _each(admin, call, "start", send)


@verb(group, "stop", "Stop the VMs chosen by -f (their node powers them off).")
def stop(admin, call):
    check_keys(call.args, ())

    def send(db, vm):
        if not (vm.vm_state in VM_STOPPABLE or vm.vm_cmd == "start"):
            return f" is {vm.vm_state}: nothing to stop"
        return None if vm_commands.stop(db, vm.id) else " changed meanwhile; try again"
    _each(admin, call, "stop", send)


@verb(group, "disconnect", "Disconnect the users of the VMs chosen by -f; the VMs keep running.")
def disconnect(admin, call):
    check_keys(call.args, ())

    def send(db, vm):
        if vm.user_state == "disconnected":
            return " has no connected user"
        if vm.user_cmd == "abort":
            return " is being disconnected already"
        return None if vm_commands.disconnect(db, vm.id) else " changed meanwhile; try again"
    _each(admin, call, "disconnect", send)
