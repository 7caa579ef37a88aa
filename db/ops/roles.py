"""role add|del|list|acl: roles made of ACLs and of other roles, with denials
(a denial wins over any grant, at any depth). Built-in roles (db/acl/roles.py) are fixed."""
from sqlalchemy import case, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased

from qvd.db.acl.grants import GrantError, changeable, find_role, set_acls, set_role
from qvd.db.models import AclRoleRelation, Role, RoleRoleRelation

from .errors import BadRequest, DomainError
from .grammar import check_keys
from .selection import EVERY_TENANT, ObjectView
from .registry import object_kind, verb
from .common import add_delete_verb, add_list_verb

group = object_kind("role", "Roles: sets of ACLs and of other roles, granted to administrators.")

Included = aliased(Role)
_included = (select(func.string_agg(
    case((RoleRoleRelation.positive, Included.name), else_="-" + Included.name),
    aggregate_order_by(literal(", "), Included.name)))
    .join(Included, Included.id == RoleRoleRelation.inherited_id)
    .where(RoleRoleRelation.inheritor_id == Role.id).scalar_subquery())


def _count(positive: bool):
    return (select(func.count()).select_from(AclRoleRelation)
            .where(AclRoleRelation.role_id == Role.id, AclRoleRelation.positive.is_(positive))
            .scalar_subquery())


VIEW = ObjectView("role", {"id": Role.id, "name": Role.name, "builtin": Role.fixed,
                           "internal": Role.internal, "roles": _included,
                           "acls": _count(True), "denied": _count(False),
                           "description": Role.description},
                  select(Role), scope=EVERY_TENANT)


def _check_role_name(name: str) -> str:
    if not name or name != name.strip() or len(name) > 64 or "," in name:
        raise DomainError(f"role name '{name}' must be 1 to 64 characters, without commas or "
                        "surrounding spaces")
    return name


@verb(group, "add", "Add a role: name=NAME [description=TEXT]; fill it with 'role acl'.")
def add(admin, call):
    check_keys(call.args, ("name", "description"), ("name",))
    role = Role(name=_check_role_name(call.args["name"]), description=call.args.get("description"))
    with admin.session() as s:
        s.add(role)
        s.flush()
        admin.audit(s, "role", "add", call, [role.id])
    admin.say(f"role {role.id} '{role.name}' added")


def _refuse_builtin(admin, s, ids) -> None:
    for role in s.scalars(select(Role).where(Role.id.in_(ids))):
        try:
            changeable(role)
        except GrantError as exc:
            raise DomainError(str(exc)) from None


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


ACL_KEYS = {"grant": True, "deny": False, "revoke": None}
ROLE_KEYS = {"grant_role": True, "deny_role": False, "revoke_role": None}


@verb(group, "acl", "Change the role chosen by -f: grant=ACL[,ACL] deny=ACL revoke=ACL "
                    "(ACL names or patterns such as vm.update.*), grant_role=ROLE[,ROLE] "
                    "deny_role=ROLE revoke_role=ROLE (include a role, deny all it holds, "
                    "or remove it). Cycles of roles are refused.")
def acl(admin, call):
    check_keys(call.args, [*ACL_KEYS, *ROLE_KEYS])
    if not call.args:
        raise BadRequest("give grant=, deny=, revoke=, grant_role=, deny_role= or revoke_role=")
    try:
        with admin.session() as s:
            role = changeable(s.get(Role, VIEW.one_id(s, call, "role acl")))
            acls = sum(set_acls(s, role, _names(call.args[key]), positive)
                       for key, positive in ACL_KEYS.items() if key in call.args)
            roles = 0
            for key, positive in ROLE_KEYS.items():
                for name in _names(call.args.get(key, "")):
                    set_role(s, role, find_role(s, name), positive)
                    roles += 1
            admin.audit(s, "role", "acl", call, [role.id])
    except GrantError as exc:
        raise DomainError(str(exc)) from None
    admin.say(f"role '{role.name}': {acls} ACL(s) and {roles} role(s) changed")


add_delete_verb(group, VIEW, Role, " (not built-in ones)", before=_refuse_builtin)
add_list_verb(group, VIEW)
