"""Writes the ACL catalogue and the built-in roles into the database, after every schema
upgrade (qvd.db.migrate): rows follow the code, so a catalogue change needs no migration.
ACLs gone from the catalogue are deleted with their grants; built-in roles are rewritten
whole (they are `fixed`: `qvd-admin role acl` refuses to change them)."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from qvd.db.models import Acl, AclRoleRelation, Role, RoleRoleRelation

from .names import ACLS
from .roles import BUILTIN_ROLES, expand


def sync(session: Session) -> None:
    for name, description in ACLS.items():
        session.execute(insert(Acl).values(name=name, description=description)
                        .on_conflict_do_update(index_elements=["name"],
                                               set_={"description": description}))
    session.execute(delete(Acl).where(Acl.name.not_in(list(ACLS))))
    acl_ids = dict(session.execute(select(Acl.name, Acl.id)).tuples().all())
    role_ids = {}
    for name, role in BUILTIN_ROLES.items():
        values = {"fixed": True, "internal": role.internal, "description": role.description}
        role_ids[name] = session.execute(
            insert(Role).values(name=name, **values)
            .on_conflict_do_update(index_elements=["name"], set_=values)
            .returning(Role.id)).scalar_one()
    builtin = list(role_ids.values())
    session.execute(delete(AclRoleRelation).where(AclRoleRelation.role_id.in_(builtin)))
    session.execute(delete(RoleRoleRelation).where(RoleRoleRelation.inheritor_id.in_(builtin)))
    for name, role in BUILTIN_ROLES.items():
        denied = set(expand(role.deny))
        grants = {acl: True for acl in expand(role.acls)} | dict.fromkeys(denied, False)
        session.add_all([AclRoleRelation(role_id=role_ids[name], acl_id=acl_ids[acl],
                                         positive=positive) for acl, positive in grants.items()])
        session.add_all([RoleRoleRelation(inheritor_id=role_ids[name],
                                          inherited_id=role_ids[included], positive=True)
                         for included in role.roles])
