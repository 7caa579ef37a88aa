"""host add|del|list|block|unblock|stop|propset|propget|propdel."""
import ipaddress

from sqlalchemy import func, select, update

from qvd.db.models import Host, HostCounter, HostRuntime, VmRuntime

from .errors import DomainError
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
                           "frontend": Host.frontend, "backend": Host.backend,
                           "state": HostRuntime.state, "blocked": HostRuntime.blocked,
                           "vms": _vms, "pid": HostRuntime.pid,
                           "usable_ram": HostRuntime.usable_ram, "lease_age": _lease_age,
                           "epoch": HostRuntime.epoch,
                           "last_error": HostRuntime.last_error},
                  select(Host).join(HostRuntime, HostRuntime.host_id == Host.id))


@verb(group, "add", "Add a node: name=NODENAME address=IP [frontend=1] [backend=1].")
def add(admin, call):
    args = call.args
    check_keys(args, ("name", "address", "frontend", "backend"), ("name", "address"))
    parse_name("host name", args["name"])
    try:
        address = str(ipaddress.ip_address(args["address"]))
    except ValueError:
        raise DomainError(f"'{args['address']}' is not an IP address") from None
    host = Host(name=args["name"], address=address,
                frontend=parse_bool(args.get("frontend", "1"), "frontend"),
                backend=parse_bool(args.get("backend", "1"), "backend"))
    with admin.session() as s:
        s.add(host)
        s.flush()
        s.add_all([HostRuntime(host_id=host.id), HostCounter(host_id=host.id)])
        admin.audit(s, "host", "add", call, [host.id])
    admin.say(f"host {host.id} '{host.name}' added")


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
