"""Who is acting: an administrator with the ACLs its roles give, or the local superadmin (a
run of qvd-admin with the node file), who holds every ACL and needs no row."""
from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from qvd.db.models import SUPERTENANT

from .names import CLUSTER_WIDE


@dataclass(frozen=True)
class Actor:
    name: str                       # recorded in the audit log: name@tenant, local:<user>
    tenant_id: int
    tenant_name: str
    administrator_id: int | None = None
    acls: frozenset[str] | None = None  # None: every ACL (the local superadmin)

    @property
    def is_super(self) -> bool:
        """Of the supertenant `*`: sees and acts on every tenant."""
        return self.tenant_id == SUPERTENANT

    @property
    def is_local(self) -> bool:
        return self.administrator_id is None

    @property
    def visible_tenant(self) -> str | None:
        """The only tenant whose objects this actor sees, or None for every tenant."""
        return None if self.is_super else self.tenant_name

    def holds(self, acl: str) -> bool:
        if self.acls is None:
            return True
        return acl in self.acls and (self.is_super or acl not in CLUSTER_WIDE)


def local_actor() -> Actor:
    """The built-in superadmin, named after the Unix account (its uid, not an environment
    variable anyone could set)."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    return Actor(name=f"local:{user}", tenant_id=SUPERTENANT, tenant_name="*")
