"""What an actor may do: the effective ACLs of a set of roles, and the check an operation
passes before it acts.

Effective ACLs: every ACL granted by the roles or by the roles they include, at any depth,
minus every ACL denied anywhere on the way, a denied role denying all it holds. One
recursive query; UNION (not UNION ALL) keeps a cycle, should one exist, from looping.
"""
from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Integer
from sqlalchemy.orm import Session

from .actor import Actor
from .names import CLUSTER_WIDE, massive_name
from .operations import LOCAL, OPERATIONS

_EFFECTIVE = """
WITH RECURSIVE reach(role_id, positive) AS (
    {seed}
    UNION
    SELECT r.inherited_id, reach.positive AND r.positive
    FROM role_role_relations r JOIN reach ON r.inheritor_id = reach.role_id
)
SELECT a.name FROM reach
JOIN acl_role_relations g ON g.role_id = reach.role_id
JOIN acls a ON a.id = g.acl_id
GROUP BY a.name HAVING bool_and(reach.positive AND g.positive)
"""
EFFECTIVE_ACLS = text(_EFFECTIVE.format(seed="SELECT unnest(:roles), true")).bindparams(
    bindparam("roles", type_=ARRAY(Integer)))
# The same from an administrator's own roles, in one round trip (it runs on every request).
ADMINISTRATOR_ACLS = text(_EFFECTIVE.format(
    seed="SELECT role_id, true FROM role_administrator_relations "
         "WHERE administrator_id = :administrator"))


class AccessDenied(Exception):
    """The actor lacks an ACL the operation needs; the message names it."""


def effective_acls(session: Session, role_ids) -> frozenset[str]:
    if not role_ids:
        return frozenset()
    return frozenset(session.scalars(EFFECTIVE_ACLS, {"roles": list(role_ids)}))


def administrator_acls(session: Session, administrator_id: int) -> frozenset[str]:
    return frozenset(session.scalars(ADMINISTRATOR_ACLS, {"administrator": administrator_id}))


def require_massive(actor: Actor, operation: str, argument_keys, count: int) -> None:
    """Raise AccessDenied unless the actor may run the operation on `count` (> 1) objects at
    once: the massive form of each ACL it needs (names.massive_name)."""
    if actor.acls is None:
        return
    for acl in OPERATIONS[operation].for_arguments(argument_keys):
        massive = massive_name(acl)
        if massive is not None and not actor.holds(massive):
            raise AccessDenied(f"administrator {actor.name} may not run '{operation}' on "
                               f"{count} objects at once: it needs the ACL {massive}")


def require(actor: Actor, operation: str, argument_keys=()) -> None:
    """Raise AccessDenied unless the actor may run the operation with those arguments."""
    if actor.acls is None:
        return
    if operation not in OPERATIONS:  # fail closed: a new command without an entry
        raise AccessDenied(f"'{operation}' has no ACL in the catalogue; only a local run "
                           "(without --admin) may use it")
    need = OPERATIONS[operation]
    if need is LOCAL:
        raise AccessDenied(f"'{operation}' acts on this node itself; run it without --admin")
    missing = [acl for acl in need.for_arguments(argument_keys) if not actor.holds(acl)]
    if missing:
        acl = missing[0]
        why = (" (held only by administrators of the supertenant '*')"
               if acl in CLUSTER_WIDE and not actor.is_super else "")
        raise AccessDenied(f"administrator {actor.name} may not run '{operation}': "
                           f"it needs the ACL {acl}{why}")
