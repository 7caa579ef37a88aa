"""The built-in roles, as data: the one definition that the database is seeded from (seed.py)
and that the tests read. QVD's four visible roles (Root, Operator L1, L2, L3) are built from
hidden building blocks, as QVD's are.

`acls` and `deny` hold catalogue names or fnmatch patterns over them (`vm.*`); `roles` names
included roles. A denial wins over any grant, at any depth of inclusion.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .names import ACLS


@dataclass(frozen=True)
class RoleDefinition:
    description: str
    acls: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    internal: bool = False  # a building block, not meant to be granted alone


BUILTIN_ROLES: dict[str, RoleDefinition] = {
    "Reader": RoleDefinition("sees every object", ("*.see-main.", "*.see.*"), internal=True),
    "VM Manager": RoleDefinition("everything about VMs", ("vm.*",), internal=True),
    "Pool Manager": RoleDefinition("everything about desktop pools", ("pool.*",),
                                   internal=True),
    "User Manager": RoleDefinition("everything about users", ("user.*",), internal=True),
    "Image Manager": RoleDefinition("everything about OSFs and DIs", ("osf.*", "di.*"),
                                    internal=True),
    "Administrator Manager": RoleDefinition("everything about administrators",
                                            ("administrator.*",), internal=True),
    "Configuration Manager": RoleDefinition("reads and changes the configuration",
                                            ("config.*",), internal=True),
    "Operator L1": RoleDefinition("read-only operator: sees everything, changes nothing",
                                  roles=("Reader",)),
    "Operator L2": RoleDefinition(
        "VM operator: starts, stops, blocks and disconnects VMs, changes their tag, expiry "
        "and properties, watches their desktops; does not add, delete or rename them, nor "
        "use the desktops it watches",
        roles=("Operator L1", "VM Manager"),
        deny=("vm.create.*", "vm.delete.", "vm.delete-massive.", "vm.update.name",
              "vm.spy.interactive")),
    "Operator L3": RoleDefinition(
        "tenant manager: users, VMs, pools, OSFs, DIs, administrators and configuration",
        roles=("Operator L1", "VM Manager", "Pool Manager", "User Manager", "Image Manager",
               "Administrator Manager", "Configuration Manager")),
    "Root": RoleDefinition("every ACL", ("*",)),
}


def expand(patterns) -> list[str]:
    """Catalogue names matching the patterns, in catalogue order; a pattern matching none is
    an error (it would grant or deny nothing without anyone noticing)."""
    names = []
    for pattern in patterns:
        matched = fnmatch.filter(ACLS, pattern)
        if not matched:
            raise ValueError(f"unknown ACL '{pattern}' (see qvd-admin acl list)")
        names += matched
    return list(dict.fromkeys(names))


def definition_acls(name: str) -> set[str]:
    """The effective ACLs of a built-in role, from the definitions alone (what the database's
    computation must agree with)."""
    granted, denied, seen, todo = set(), set(), set(), [name]
    while todo:
        role = BUILTIN_ROLES[todo.pop()]
        granted |= set(expand(role.acls))
        denied |= set(expand(role.deny))
        todo += [r for r in role.roles if r not in seen]
        seen |= set(role.roles)
    return granted - denied


for _name, _role in BUILTIN_ROLES.items():  # fail on import, not on first use
    expand(_role.acls + _role.deny)
    if set(_role.roles) - set(BUILTIN_ROLES):
        raise ImportError(f"built-in role {_name} includes an unknown role")
