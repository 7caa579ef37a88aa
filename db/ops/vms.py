"""vm add|del|list|edit|block|unblock|propset|propget|propdel
(start, stop and disconnect live in vm_commands.py)."""
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import aliased

from qvd.db.images import DEFAULT, osf_has_tag
from qvd.db.models import Di, Host, Osf, Pool, Tenant, User, Vm, VmCounter, VmRuntime
from qvd.db.runtime import OnSession
from qvd.db.vm_network import AddressError, check_address, free_addresses

from .errors import BadRequest, DomainError
from .grammar import check_keys, parse_name, parse_positive_int
from .selection import ObjectView
from .registry import object_kind, verb
from .common import add_block_verbs, add_delete_verb, add_list_verb
from .osfs import find_osf
from .properties import add_property_verbs
from .users import find_user

group = object_kind("vm", "Virtual machines: one desktop of one user.")

CurrentDi = aliased(Di)
VIEW = ObjectView("vm", {
    "id": Vm.id, "tenant": Tenant.name, "name": Vm.name, "user": User.login, "osf": Osf.name,
    "di_tag": Vm.di_tag, "ip": Vm.ip, "state": VmRuntime.vm_state, "host": Host.name,
    "pid": VmRuntime.vm_pid, "address": VmRuntime.vm_address, "vma_port": VmRuntime.vm_vma_port,
    "user_state": VmRuntime.user_state, "blocked": VmRuntime.blocked,
    "di": CurrentDi.version, "expiration_soft": VmRuntime.expiration_soft,
    "expiration_hard": VmRuntime.expiration_hard, "last_error": VmRuntime.last_error,
    "description": Vm.description, "pool": Pool.name,
}, (select(Vm).join(VmRuntime, VmRuntime.vm_id == Vm.id).outerjoin(User, User.id == Vm.user_id)
    .join(Tenant, Tenant.id == Vm.tenant_id).join(Osf, Osf.id == Vm.osf_id)
    .outerjoin(Pool, Pool.id == Vm.pool_id).outerjoin(Host, Host.id == VmRuntime.host_id)
    .outerjoin(CurrentDi, CurrentDi.id == VmRuntime.current_di_id)), tenant=Tenant.name,
    ids={"user_id": User.id, "osf_id": Osf.id, "host_id": Host.id, "tenant_id": Tenant.id,
         "pool_id": Pool.id})


def _check_tag(s, osf: Osf, tag: str) -> str:
    """A tag other than 'default' must exist on the OSF (default may come with the first DI)."""
    if tag != DEFAULT and not osf_has_tag(s, osf.id, tag):
        raise DomainError(f"OSF '{osf.name}' has no DI tagged '{tag}'")
    return tag


@verb(group, "add", "Add VMs: name=NAME user=LOGIN[@TENANT] osf=OSF [di_tag=default] [ip=IP] "
                    "[bulk=N (names NAME-1..NAME-N)] [description=TEXT]. "
                    "Addresses come from vm.network.ip.start unless ip= is given.")
def add(admin, call):
    args = call.args
    check_keys(args, ("name", "user", "osf", "di_tag", "ip", "bulk", "description"),
               ("name", "user", "osf"))
    bulk = parse_positive_int(args["bulk"], "bulk") if "bulk" in args else None
    if bulk and "ip" in args:
        raise BadRequest("ip= cannot be used with bulk=; addresses are given automatically")
    names = [f"{args['name']}-{n}" for n in range(1, bulk + 1)] if bulk else [args["name"]]
    for name in (names[0], names[-1]):  # the longest is the last
        parse_name("VM name", name)
    if "di_tag" in args:
        parse_name("DI tag", args["di_tag"])
    with admin.session() as s:
        user = find_user(admin, s, args["user"], call.tenant)
        tenant = s.get(Tenant, user.tenant_id).name
        osf = find_osf(admin, s, args["osf"], tenant)
        tag = _check_tag(s, osf, args.get("di_tag", DEFAULT))
        cfg = admin.settings(s, user.tenant_id)
        start, netmask = cfg.get("vm.network.ip.start"), cfg.get("vm.network.netmask")
        try:
            ips = ([check_address(args["ip"], start, netmask)] if "ip" in args
                   else free_addresses(OnSession(s), start, netmask, len(names)))
        except AddressError as exc:
            raise DomainError(str(exc)) from None
        if "ip" in args:
            node = s.execute(select(Host.name).where(Host.vm_address == ips[0])).scalar()
            if node is not None:
                raise DomainError(f"{ips[0]} is the address of node '{node}' on the VM "
                                  "network (its vm_address); nothing was added")
        vms = [Vm(name=name, tenant_id=user.tenant_id, user_id=user.id, osf_id=osf.id,
                  di_tag=tag, ip=ip, description=args.get("description")) for name, ip in zip(names, ips)]
        s.add_all(vms)
        s.flush()
        s.add_all([VmRuntime(vm_id=vm.id) for vm in vms] + [VmCounter(vm_id=vm.id) for vm in vms])
        admin.audit(s, "vm", "add", call, [vm.id for vm in vms], user.tenant_id)
    for vm in vms:
        admin.say(f"vm {vm.id} '{vm.name}' added for {user.login}@{tenant}, ip {vm.ip}")


def _refuse_active(admin, s, ids) -> None:
    active = s.execute(select(Vm.id, Vm.name, VmRuntime.vm_state, VmRuntime.user_state)
                       .join(VmRuntime, VmRuntime.vm_id == Vm.id)
                       .where(Vm.id.in_(ids), (VmRuntime.vm_state != "stopped")
                              | VmRuntime.host_id.isnot(None)
                              | (VmRuntime.user_state != "disconnected"))).first()
    if active is not None:
        raise DomainError(f"vm {active.id} '{active.name}' is {active.vm_state} "
                        f"(user {active.user_state}); stop it first, nothing was deleted")


def _parse_time(value: str, key: str):
    if value.strip().lower() in ("", "none", "never"):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{key} must be a date and time like 2026-12-31T18:00, got '{value}'") from None
    return moment if moment.tzinfo else moment.astimezone()


@verb(group, "edit", "Change the VMs chosen by -f: [name=] [description=] [di_tag=TAG] "
                     "[expiration_soft=TIME|none] [expiration_hard=TIME|none].")
def edit(admin, call):
    args = call.args
    check_keys(args, ("name", "description", "di_tag", "expiration_soft", "expiration_hard"))
    if not args:
        raise BadRequest("give what to change, e.g. di_tag=testing")
    if "name" in args:
        parse_name("VM name", args["name"])
    if "di_tag" in args:
        parse_name("DI tag", args["di_tag"])
    vm_values = {k: args[k] for k in ("name", "description") if k in args}
    runtime_values = {k: _parse_time(args[k], k) for k in ("expiration_soft", "expiration_hard")
                      if k in args}
    with admin.session() as s:
        ids = VIEW.ids(s, call)
        if "name" in args and len(ids) > 1:
            raise DomainError(f"the filter matches {len(ids)} VMs; name= changes one")
        if "di_tag" in args:
            for osf in s.scalars(select(Osf).join(Vm, Vm.osf_id == Osf.id)
                                 .where(Vm.id.in_(ids)).distinct()):
                _check_tag(s, osf, args["di_tag"])
            vm_values["di_tag"] = args["di_tag"]
        if vm_values:
            s.execute(update(Vm).where(Vm.id.in_(ids)).values(**vm_values))
        if runtime_values:
            s.execute(update(VmRuntime).where(VmRuntime.vm_id.in_(ids)).values(**runtime_values))
        admin.audit(s, "vm", "edit", call, ids)
    admin.say(f"{len(ids)} vm(s) changed")


add_delete_verb(group, VIEW, Vm, " (only stopped VMs)", before=_refuse_active)
add_list_verb(group, VIEW)
add_block_verbs(group, VIEW, VmRuntime.blocked, "they do not start and users cannot connect")
add_property_verbs(group, VIEW)
