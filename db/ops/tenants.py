"""tenant add|del|list|block|unblock."""
from sqlalchemy import select

from qvd.db.models import Tenant

from .grammar import check_keys, parse_name
from .selection import ObjectView
from .registry import object_kind, verb
from .common import add_block_verbs, add_delete_verb, add_list_verb

group = object_kind("tenant", "Tenants: separate sets of users, OSFs and VMs.")

VIEW = ObjectView("tenant", {"id": Tenant.id, "name": Tenant.name, "blocked": Tenant.blocked,
                             "description": Tenant.description},
                  select(Tenant).where(Tenant.id >= 1), scope=Tenant.name)


@verb(group, "add", "Add a tenant: name=NAME [description=TEXT].")
def add(admin, call):
    check_keys(call.args, ("name", "description"), ("name",))
    with admin.session() as s:
        tenant = Tenant(name=parse_name("tenant name", call.args["name"]),
                        description=call.args.get("description"))
        s.add(tenant)
        s.flush()
        admin.audit(s, "tenant", "add", call, [tenant.id])
    admin.say(f"tenant {tenant.id} '{tenant.name}' added")


add_delete_verb(group, VIEW, Tenant, " (they must be empty)")
add_list_verb(group, VIEW)
add_block_verbs(group, VIEW, Tenant.blocked, "their users cannot log in")
