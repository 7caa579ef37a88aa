"""osf add|del|list|propset|propget|propdel."""
from sqlalchemy import func, select

from qvd.db.models import Di, Osf, Tenant, Vm

from .errors import DomainError
from .grammar import check_keys, parse_bool, parse_name, parse_positive_int
from .selection import ObjectView
from .registry import object_kind, verb
from .common import add_delete_verb, add_list_verb
from .properties import add_property_verbs

group = object_kind("osf", "Operating system flavours: memory, overlay and home disk of VMs.")

VIEW = ObjectView("osf", {
    "id": Osf.id, "tenant": Tenant.name, "name": Osf.name, "memory": Osf.memory,
    "use_overlay": Osf.use_overlay, "user_storage": Osf.user_storage_size,
    "is_application": Osf.is_application,
    "dis": select(func.count(Di.id)).where(Di.osf_id == Osf.id).scalar_subquery(),
    "vms": select(func.count(Vm.id)).where(Vm.osf_id == Osf.id).scalar_subquery(),
}, select(Osf).join(Tenant, Tenant.id == Osf.tenant_id), tenant=Tenant.name,
    ids={"tenant_id": Tenant.id})


def find_osf(admin, s, name: str, tenant: str | None) -> Osf:
    tenant_id = admin.tenant_id(s, tenant)
    osf = s.scalar(select(Osf).where(Osf.name == name, Osf.tenant_id == tenant_id))
    if osf is None:
        raise DomainError(f"unknown OSF '{name}' in tenant '{admin.tenant_shown(tenant)}'")
    return osf


@verb(group, "add", "Add an OSF: name=NAME [memory=MiB (256)] [use_overlay=1] "
                    "[user_storage=MiB (0: none)] [is_application=0] [description=TEXT].")
def add(admin, call):
    args = call.args
    check_keys(args, ("name", "memory", "use_overlay", "user_storage", "is_application",
                      "description"), ("name",))
    osf = Osf(name=parse_name("OSF name", args["name"]),
              memory=parse_positive_int(args.get("memory", "256"), "memory"),
              use_overlay=parse_bool(args.get("use_overlay", "1"), "use_overlay"),
              user_storage_size=parse_positive_int(args.get("user_storage", "0"), "user_storage",
                                                   allow_zero=True) or None,
              is_application=parse_bool(args.get("is_application", "0"), "is_application"),
              description=args.get("description"))
    with admin.session() as s:
        osf.tenant_id = admin.tenant_id(s, call.tenant)
        s.add(osf)
        s.flush()
        admin.audit(s, "osf", "add", call, [osf.id], osf.tenant_id)
    admin.say(f"osf {osf.id} '{osf.name}' added")


add_delete_verb(group, VIEW, Osf, " (no DIs or VMs may use them)")
add_list_verb(group, VIEW)
add_property_verbs(group, VIEW)
