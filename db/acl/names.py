"""The ACL catalogue: every ACL an administrator can hold, named in QVD 4.2's scheme
`<object>.<see|see-main|create|update|delete>.<field or action>` (QVD's own names where QVD has
the ACL, so its role definitions carry over; the ones QVD lacks are marked new).

Cluster-wide ACLs act on what every tenant shares (nodes, tenants themselves, roles, the TLS
certificate, trusted images that may run code as root on a node): only administrators of the
supertenant `*` hold them, whatever their roles say.
"""
from __future__ import annotations

PROPERTY_OBJECTS = ("user", "vm", "host", "osf", "di")


def _properties(obj: str) -> dict[str, str]:
    return {f"{obj}.see.properties": f"see the properties of {obj}s",
            f"{obj}.update.properties-create": f"add properties to {obj}s",
            f"{obj}.update.properties-update": f"change properties of {obj}s",
            f"{obj}.update.properties-delete": f"delete properties of {obj}s"}


ACLS: dict[str, str] = {
    "tenant.see-main.": "list tenants (a tenant's administrators see only their own)",
    "tenant.create.": "add tenants",
    "tenant.delete.": "delete tenants",
    "tenant.update.block": "block and unblock tenants (new)",
    "user.see-main.": "list users",
    "user.create.": "add users",
    "user.delete.": "delete users",
    "user.update.password": "set users' passwords",
    "user.update.block": "block and unblock users",
    "user.see.tokens": "list users' auth tokens (new)",
    "user.update.tokens-delete": "revoke users' auth tokens (new)",
    **_properties("user"),
    "osf.see-main.": "list OSFs",
    "osf.create.": "add OSFs",
    "osf.delete.": "delete OSFs",
    **_properties("osf"),
    "di.see-main.": "list DIs",
    "di.create.": "add DIs",
    "di.create.trusted": "add trusted DIs: device nodes, setuid files, hooks run on the node (new)",
    "di.delete.": "delete DIs",
    "di.update.tags": "tag and untag DIs",
    "di.update.block": "block and unblock DIs",
    **_properties("di"),
    "vm.see-main.": "list VMs",
    "vm.create.": "add VMs",
    "vm.create.di-tag": "choose the DI tag of new VMs",
    "vm.delete.": "delete VMs",
    "vm.update.state": "start and stop VMs",
    "vm.update.disconnect-user": "disconnect users from VMs",
    "vm.update.block": "block and unblock VMs",
    "vm.update.name": "rename VMs",
    "vm.update.description": "change VMs' descriptions",
    "vm.update.di-tag": "change VMs' DI tag",
    "vm.update.expiration": "change VMs' soft and hard expiration",
    "vm.spy.": "watch users' desktops, view only",
    "vm.spy.interactive": "use the users' desktops they watch (new)",
    **_properties("vm"),
    "pool.see-main.": "list desktop pools and their members (new)",
    "pool.create.": "add desktop pools (new)",
    "pool.delete.": "delete desktop pools and their VMs (new)",
    "pool.update.sizes": "change pools: sizes, DI tag, assignment, VM names (new)",
    "pool.update.block": "block and unblock pools (new)",
    "pool.update.members": "choose the users who may use pools (new)",
    "host.see-main.": "list nodes",
    "host.create.": "add nodes",
    "host.delete.": "delete nodes",
    "host.update.block": "block and unblock nodes",
    "host.update.stop-vms": "stop nodes' qvd-hkd and their VMs",
    "host.update.settings": "change nodes' VM network address and front/back end roles (new)",
    **_properties("host"),
    "config.see-main.": "read the configuration",
    "config.update.": "set configuration keys",
    "config.delete.": "remove configuration keys (new)",
    "config.update.ssl": "store the L7R's TLS certificate and key (new)",
    "session.see-main.": "list desktop sessions (new)",
    "log.see-main.": "read the audit log",
    "administrator.see-main.": "list administrators",
    "administrator.create.": "add administrators",
    "administrator.delete.": "delete administrators",
    "administrator.update.password": "set administrators' passwords and TOTP",
    "administrator.update.block": "block and unblock administrators (new)",
    "administrator.update.assign-role": "grant roles to and revoke roles from administrators",
    "role.see-main.": "list roles",
    "role.create.": "add roles",
    "role.delete.": "delete roles",
    "role.update.assign-acl": "grant, deny and revoke ACLs in roles",
    "role.update.assign-role": "include, deny and remove roles in roles",
    "acl.see-main.": "list the ACL catalogue (new)",
}

# Changing or deleting several objects at once needs the `-massive` form as well (QVD's
# `vm.update-massive.state`): a role that may stop one VM cannot stop a whole filter's worth
# by a slip. Renaming and passwords only ever change one object.
MASSIVE_OBJECTS = ("tenant", "user", "osf", "di", "vm", "host", "administrator", "pool")
SINGLE_ONLY = frozenset({"vm.update.name", "user.update.password",
                         "administrator.update.password"})


def massive_name(name: str) -> str | None:
    """`vm.update.state` -> `vm.update-massive.state`; None for ACLs without a massive form."""
    obj, kind, what = name.split(".", 2)
    if kind in ("update", "delete") and obj in MASSIVE_OBJECTS and name not in SINGLE_ONLY:
        return f"{obj}.{kind}-massive.{what}"
    return None


ACLS.update({massive: f"{description}, several at once"
             for name, description in list(ACLS.items())
             if (massive := massive_name(name)) is not None})

_CLUSTER_WIDE = ([name for name in ACLS if name.startswith(("host.", "role."))
                  and not name.startswith("role.see")]
                 + ["tenant.create.", "tenant.delete.", "tenant.update.block",
                    "config.update.ssl", "di.create.trusted"])
CLUSTER_WIDE: frozenset[str] = frozenset(
    _CLUSTER_WIDE + [m for name in _CLUSTER_WIDE if (m := massive_name(name)) is not None])


def is_read(name: str) -> bool:
    """ACLs that only let an administrator look."""
    return name.split(".")[1].startswith("see")
