"""host add|edit|del|list|block|unblock|stop|propset|propget|propdel."""
import ipaddress

from sqlalchemy import func, select, text, update

from qvd.db.models import Host, HostCounter, HostRuntime, VmRuntime
from qvd.db.vm_network import ADDRESS_HOLDERS, ADDRESS_LOCK, AddressError, check_node_address

from .errors import BadRequest, DomainError
from .grammar import check_keys, parse_bool, parse_name
from .selection import ObjectView
from .registry import object_kind, verb
from .common import add_block_verbs, add_delete_verb, add_list_verb
from .properties import add_property_verbs

group = object_kind("host", "Nodes of the cluster (each runs qvd-hkd).")

_vms = (select(func.count()).select_from(VmRuntime).where(VmRuntime.host_id == Host.id)
        .scalar_subquery())
# Seconds since the lease was renewed, by the database's clock (the one leases use).
_lease_age = func.round(func.extract("epoch", func.now() - HostRuntime.ok_ts), 1)
VIEW = ObjectView("host", {"id": Host.id, "name": Host.name, "address": Host.address,
                           "vm_address": Host.vm_address,
                           "frontend": Host.frontend, "backend": Host.backend,
                           "state": HostRuntime.state, "blocked": HostRuntime.blocked,
                           "vms": _vms, "pid": HostRuntime.pid,
                           "usable_ram": HostRuntime.usable_ram, "lease_age": _lease_age,
                           "epoch": HostRuntime.epoch,
                           "last_error": HostRuntime.last_error},
                  select(Host).join(HostRuntime, HostRuntime.host_id == Host.id))


def _vm_address(admin, s, value: str, host_id: int | None = None) -> str | None:
    """vm_address=: the node's own address on the VM network (none: the network's first
    address, as with one node); refused when another node or a VM holds it. Taken under the
    lock VM addresses are given under, so that none is given meanwhile."""
    if value.strip().lower() in ("", "none"):
        return None
    s.execute(text(ADDRESS_LOCK))
    cfg = admin.settings(s)
    try:
        address = check_node_address(value, cfg.get("vm.network.ip.start"),
                                     cfg.get("vm.network.netmask"))
    except AddressError as exc:
        raise DomainError(str(exc)) from None
    holders = dict(s.connection().exec_driver_sql(
        ADDRESS_HOLDERS, {"address": address, "host": host_id or 0}).all())
    if "node" in holders:
        raise DomainError(f"vm_address {address} is already the address of node "
                          f"'{holders['node']}' on the VM network: each node needs its own; "
                          "nothing was changed")
    if "VM" in holders:
        raise DomainError(f"vm_address {address} is the address of VM '{holders['VM']}'; "
                          "nothing was changed")
    return address


@verb(group, "add", "Add a node: name=NODENAME address=IP [vm_address=IP] [frontend=1] "
                    "[backend=1]. vm_address: the node's own address on the VM network "
                    "(default: the network's first address, for one node).")
def add(admin, call):
    args = call.args
    check_keys(args, ("name", "address", "vm_address", "frontend", "backend"),
               ("name", "address"))
    parse_name("host name", args["name"])
    try:
        address = str(ipaddress.ip_address(args["address"]))
    except ValueError:
        raise DomainError(f"'{args['address']}' is not an IP address") from None
    host = Host(name=args["name"], address=address,
                frontend=parse_bool(args.get("frontend", "1"), "frontend"),
                backend=parse_bool(args.get("backend", "1"), "backend"))
    with admin.session() as s:
        if "vm_address" in args:
            host.vm_address = _vm_address(admin, s, args["vm_address"])
        s.add(host)
        s.flush()
        s.add_all([HostRuntime(host_id=host.id), HostCounter(host_id=host.id)])
        admin.audit(s, "host", "add", call, [host.id])
    admin.say(f"host {host.id} '{host.name}' added")


@verb(group, "edit", "Change the node chosen by -f: [vm_address=IP|none] [frontend=0|1] "
                     "[backend=0|1]. A node takes a new vm_address at its next start.")
def edit(admin, call):
    args = call.args
    check_keys(args, ("vm_address", "frontend", "backend"))
    if not args:
        raise BadRequest("give what to change, e.g. vm_address=10.0.0.3")
    values = {k: parse_bool(args[k], k) for k in ("frontend", "backend") if k in args}
    with admin.session() as s:
        ids = VIEW.ids(s, call)
        if "vm_address" in args:
            if len(ids) > 1:
                raise DomainError(f"the filter matches {len(ids)} hosts; vm_address= changes "
                                  "one")
            values["vm_address"] = _vm_address(admin, s, args["vm_address"], ids[0])
        s.execute(update(Host).where(Host.id.in_(ids)).values(**values))
        admin.audit(s, "host", "edit", call, ids)
    admin.say(f"{len(ids)} host(s) changed")


@verb(group, "stop", "Ask the qvd-hkd of the nodes chosen by -f to stop their VMs and exit.")
def stop(admin, call):
    check_keys(call.args, ())
    with admin.session() as s:
        ids = VIEW.ids(s, call)
        changed = s.execute(update(HostRuntime).where(HostRuntime.host_id.in_(ids),
                                                      HostRuntime.state != "stopped")
                            .values(cmd="stop").returning(HostRuntime.host_id)).scalars().all()
        admin.audit(s, "host", "stop", call, changed)
    admin.say(f"stop sent to {len(changed)} host(s)"
          + (f"; {len(ids) - len(changed)} already stopped" if len(changed) < len(ids) else ""))


add_delete_verb(group, VIEW, Host, " (no VM may be assigned to them)")
add_list_verb(group, VIEW)
add_block_verbs(group, VIEW, HostRuntime.blocked, "no new VM is placed on them")
add_property_verbs(group, VIEW)
