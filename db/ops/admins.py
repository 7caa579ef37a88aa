"""admin add|del|list|passwd|block|unblock|role: administrators, each of one tenant
(`*`: of every tenant), logging in with `qvd-admin --admin NAME@TENANT`."""
import pyotp
from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by

from qvd.db.acl.grants import (GrantError, find_role, grant_to_administrator,
                               require_outranks, revoke_from_administrator)
from qvd.db.acl.login import split_admin_login
from qvd.db.models import Administrator, Role, RoleAdministratorRelation, Tenant
from qvd.db.passwords import hash_password

from .errors import BadRequest, DomainError
from .grammar import check_keys, parse_bool, parse_name
from .selection import ObjectView
from .registry import object_kind, verb
from .common import add_block_verbs, add_delete_verb, add_list_verb

group = object_kind("admin", "Administrators: NAME@TENANT, with roles that give them ACLs.")

_roles = (select(func.string_agg(Role.name, aggregate_order_by(literal(", "), Role.name)))
          .join(RoleAdministratorRelation, RoleAdministratorRelation.role_id == Role.id)
          .where(RoleAdministratorRelation.administrator_id == Administrator.id)
          .scalar_subquery())
VIEW = ObjectView("admin", {"id": Administrator.id, "tenant": Tenant.name,
                            "name": Administrator.name, "blocked": Administrator.blocked,
                            "totp": Administrator.totp_secret.isnot(None), "roles": _roles,
                            "created": Administrator.created_at},
                  select(Administrator).join(Tenant, Tenant.id == Administrator.tenant_id),
                  tenant=Tenant.name)


def _outranked(admin, s, ids) -> None:
    try:
        require_outranks(s, admin.actor, ids)
    except GrantError as exc:
        raise DomainError(str(exc)) from None


def _new_password(admin, call) -> str:
    password = call.args.get("password") or admin.read_new_password()
    if not password:
        raise DomainError("the password is empty; nothing changed")
    return password


def _totp_secret(admin, call, name: str) -> str | None:
    """A fresh secret when totp=1, shown once (to enter in an authenticator app)."""
    if not parse_bool(call.args.get("totp", "0"), "totp"):
        return None
    secret = pyotp.random_base32()
    admin.say(f"TOTP secret of {name}: {secret}\n"
              f"  {pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name='QVD')}")
    return secret


@verb(group, "add", "Add an administrator: name=NAME[@TENANT] (@* for every tenant) "
                    "[password=PASSWORD, else read from the terminal or standard input] "
                    "[totp=1: also a TOTP code at login; the secret is printed once].")
def add(admin, call):
    check_keys(call.args, ("name", "password", "totp"), ("name",))
    name, tenant = split_admin_login(call.args["name"])
    if "@" in call.args["name"] and call.tenant and call.tenant != tenant:
        raise BadRequest(f"'{call.args['name']}' names tenant '{tenant}' but -t says '{call.tenant}'")
    tenant = tenant if "@" in call.args["name"] else call.tenant
    parse_name("administrator name", name)
    with admin.session() as s:
        tenant_id = admin.tenant_id(s, tenant, supertenant=True)
        tenant_name = s.get(Tenant, tenant_id).name
        row = Administrator(tenant_id=tenant_id, name=name,
                            password=hash_password(_new_password(admin, call)),
                            totp_secret=_totp_secret(admin, call, f"{name}@{tenant_name}"))
        s.add(row)
        s.flush()
        admin.audit(s, "admin", "add", call, [row.id], tenant_id)
    admin.say(f"administrator {row.id} '{name}@{tenant_name}' added")


@verb(group, "passwd", "Set the password of the administrator chosen by -f (read from the "
                       "terminal or standard input); totp=1 gives it a new TOTP secret, "
                       "totp=0 removes it.")
def passwd(admin, call):
    check_keys(call.args, ("totp",))
    with admin.session() as s:
        admin_id = VIEW.one_id(s, call, "passwd")
        _outranked(admin, s, [admin_id])
        row = s.get(Administrator, admin_id)
        values = {"password": hash_password(_new_password(admin, call))}
        if "totp" in call.args:
            tenant = s.get(Tenant, row.tenant_id).name
            values["totp_secret"] = _totp_secret(admin, call, f"{row.name}@{tenant}")
        s.execute(update(Administrator).where(Administrator.id == admin_id).values(**values))
        admin.audit(s, "admin", "passwd", call, [admin_id], row.tenant_id)
    admin.say(f"password of administrator {admin_id} changed")


def _role_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


@verb(group, "role", "Grant or revoke roles of the administrators chosen by -f: "
                     "grant=ROLE[,ROLE] revoke=ROLE[,ROLE]. An administrator may grant only "
                     "roles whose every ACL it holds itself.")
def role(admin, call):
    check_keys(call.args, ("grant", "revoke"))
    if not call.args:
        raise BadRequest("give grant=ROLE or revoke=ROLE")
    try:
        with admin.session() as s:
            ids = VIEW.ids(s, call)
            _outranked(admin, s, ids)
            for name in _role_names(call.args.get("grant", "")):
                chosen = find_role(s, name)
                for admin_id in ids:
                    grant_to_administrator(s, admin.actor, admin_id, chosen)
            for name in _role_names(call.args.get("revoke", "")):
                chosen = find_role(s, name)
                for admin_id in ids:
                    revoke_from_administrator(s, admin_id, chosen)
            admin.audit(s, "admin", "role", call, ids)
    except GrantError as exc:
        raise DomainError(str(exc)) from None
    admin.say(f"roles of {len(ids)} administrator(s) changed")


add_delete_verb(group, VIEW, Administrator, before=_outranked)
add_list_verb(group, VIEW)
add_block_verbs(group, VIEW, Administrator.blocked, "they cannot log in", before=_outranked)
