"""acl list: the ACL catalogue (db/acl/names.py), or the effective ACLs of a role
or an administrator (-f role=NAME, -f admin=NAME@TENANT)."""
import fnmatch

from qvd.db.acl.check import administrator_acls, effective_acls
from qvd.db.acl.grants import GrantError, find_role
from qvd.db.acl.names import ACLS, CLUSTER_WIDE
from qvd.db.acl.login import find_administrator

from .errors import DomainError
from .grammar import check_keys
from .registry import object_kind, verb
from .selection import show_page

group = object_kind("acl", "The ACLs administrators' roles are made of.")


def _held(admin, s, filters) -> frozenset[str] | None:
    if "role" in filters:
        try:
            return effective_acls(s, [find_role(s, filters["role"]).id])
        except GrantError as exc:
            raise DomainError(str(exc)) from None
    if "admin" in filters:
        found = find_administrator(s, filters["admin"])
        visible = admin.actor.visible_tenant
        if found is None or (visible is not None and found[1].name != visible):
            raise DomainError(f"unknown administrator '{filters['admin']}'")
        return administrator_acls(s, found[0].id)
    return None


@verb(group, "list", "List ACLs (-f name=vm.* narrows; -f role=NAME or -f admin=NAME@TENANT: "
                     "only those the role or administrator holds, denials applied).", lists=True)
def list_(admin, call):
    check_keys(call.filters, ("name", "role", "admin"), what="the filter")
    check_keys(call.args, ())
    with admin.session() as s:
        held = _held(admin, s, call.filters)
    pattern = call.filters.get("name", "*")
    rows = [{"name": name, "cluster_wide": name in CLUSTER_WIDE, "description": description}
            for name, description in ACLS.items()
            if fnmatch.fnmatchcase(name, pattern) and (held is None or name in held)]
    show_page(admin, call, ["name", "cluster_wide", "description"], rows)
