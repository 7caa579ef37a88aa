"""Changing roles: ACLs granted, denied or revoked in a role; roles included, denied or
removed in a role (never making a cycle); roles granted to administrators (never more than
the granting administrator holds itself). Built-in roles are not changed here."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from qvd.db.models import Acl, AclRoleRelation, Role, RoleAdministratorRelation, RoleRoleRelation

from .actor import Actor
from .check import administrator_acls, effective_acls
from .roles import expand


class GrantError(Exception):
    """A change to roles that is refused; the message says why."""


def find_role(session: Session, name: str) -> Role:
    role = session.scalar(select(Role).where(Role.name == name))
    if role is None:
        raise GrantError(f"unknown role '{name}'")
    return role


def changeable(role: Role) -> Role:
    if role.fixed:
        raise GrantError(f"'{role.name}' is a built-in role; include it in a role of your own "
                         "instead of changing it")
    return role


def acl_names(patterns: list[str]) -> list[str]:
    try:
        return expand(patterns)
    except ValueError as exc:
        raise GrantError(str(exc)) from None


def set_acls(session: Session, role: Role, patterns: list[str], positive: bool | None) -> int:
    """Grant (True), deny (False) or revoke (None) ACLs in the role; returns how many."""
    names = acl_names(patterns)
    ids = session.scalars(select(Acl.id).where(Acl.name.in_(names))).all()
    session.execute(delete(AclRoleRelation).where(AclRoleRelation.role_id == role.id,
                                                  AclRoleRelation.acl_id.in_(ids)))
    if positive is not None:
        session.add_all([AclRoleRelation(role_id=role.id, acl_id=acl_id, positive=positive)
                         for acl_id in ids])
    return len(ids)


def _inclusion_path(session: Session, start: int, goal: int) -> list[int] | None:
    """Role ids from start down to goal through inclusions, or None."""
    edges: dict[int, list[int]] = {}
    for inheritor, inherited in session.execute(select(RoleRoleRelation.inheritor_id,
                                                       RoleRoleRelation.inherited_id)):
        edges.setdefault(inheritor, []).append(inherited)
    parents, todo = {start: None}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            path = []
            while node is not None:
                path.append(node)
                node = parents[node]
            return path[::-1]
        for nxt in edges.get(node, []):
            if nxt not in parents:
                parents[nxt] = node
                todo.append(nxt)
    return None


def set_role(session: Session, role: Role, other: Role, positive: bool | None) -> None:
    """Include (True), deny (False) or remove (None) `other` in `role`."""
    if positive is not None:
        path = _inclusion_path(session, other.id, role.id)
        if path is not None:
            names = dict(session.execute(select(Role.id, Role.name)
                                         .where(Role.id.in_(path))).tuples().all())
            chain = " -> ".join(names[i] for i in path)
            raise GrantError(f"'{other.name}' cannot go into '{role.name}': it would make a "
                             f"cycle ({chain} -> {other.name})")
    session.execute(delete(RoleRoleRelation).where(RoleRoleRelation.inheritor_id == role.id,
                                                   RoleRoleRelation.inherited_id == other.id))
    if positive is not None:
        session.add(RoleRoleRelation(inheritor_id=role.id, inherited_id=other.id,
                                     positive=positive))


def grant_to_administrator(session: Session, actor: Actor, administrator_id: int,
                           role: Role) -> None:
    """An administrator may hand out only what its roles give it: no granting oneself Root.
    (Cluster-wide ACLs count as held: a tenant's administrator grants only within its tenant,
    where they have no effect for the grantee either.)"""
    if actor.acls is not None:
        beyond = sorted(effective_acls(session, [role.id]) - actor.acls)
        if beyond:
            raise GrantError(f"administrator {actor.name} may not grant '{role.name}': it "
                             f"holds {beyond[0]} and {actor.name} does not")
    session.execute(insert(RoleAdministratorRelation)
                    .values(role_id=role.id, administrator_id=administrator_id)
                    .on_conflict_do_nothing())


def revoke_from_administrator(session: Session, administrator_id: int, role: Role) -> bool:
    return session.execute(delete(RoleAdministratorRelation).where(
        RoleAdministratorRelation.role_id == role.id,
        RoleAdministratorRelation.administrator_id == administrator_id)).rowcount > 0


def require_outranks(session: Session, actor: Actor, administrator_ids) -> None:
    """Changing another administrator (password, roles, blocking, deleting) needs every ACL
    that one holds: no taking over a stronger account of one's tenant."""
    if actor.acls is None:
        return
    for administrator_id in administrator_ids:
        beyond = sorted(administrator_acls(session, administrator_id) - actor.acls)
        if beyond:
            raise GrantError(f"administrator {actor.name} may not change administrator "
                             f"{administrator_id}: it holds {beyond[0]} and "
                             f"{actor.name} does not")
