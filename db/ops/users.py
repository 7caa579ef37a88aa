"""user add|del|list|passwd|block|unblock|propset|propget|propdel, user token list|del."""
from sqlalchemy import delete, func, select, update

from qvd.db.models import Tenant, User, UserToken, Vm
from qvd.db.passwords import hash_password

from .errors import BadRequest, DomainError
from .grammar import check_keys, parse_name
from .selection import ObjectView, list_objects
from .registry import object_kind, verb
from .common import add_block_verbs, add_delete_verb, add_list_verb
from .properties import add_property_verbs

group = object_kind("user", "Users who own desktops.")

_vm_count = select(func.count(Vm.id)).where(Vm.user_id == User.id).scalar_subquery()
VIEW = ObjectView("user", {"id": User.id, "tenant": Tenant.name, "login": User.login,
                           "blocked": User.blocked, "vms": _vm_count,
                           "created": User.created_at},
                  select(User).join(Tenant, Tenant.id == User.tenant_id), tenant=Tenant.name,
                  ids={"tenant_id": Tenant.id})


def split_login(value: str, tenant: str | None) -> tuple[str, str | None]:
    """login@tenant or login#tenant (QVD's forms); -t is used when the login names none."""
    for separator in ("@", "#"):
        if separator in value:
            login, _, named = value.rpartition(separator)
            if tenant is not None and named != tenant:
                raise BadRequest(f"'{value}' names tenant '{named}' but -t says '{tenant}'")
            return login, named
    return value, tenant


def find_user(admin, s, value: str, tenant: str | None) -> User:
    login, tenant = split_login(value, tenant)
    tenant_id = admin.tenant_id(s, tenant)
    user = s.scalar(select(User).where(User.login == login, User.tenant_id == tenant_id))
    if user is None:
        raise DomainError(f"unknown user '{login}' in tenant '{admin.tenant_shown(tenant)}'")
    return user


@verb(group, "add", "Add a user: login=LOGIN[@TENANT] [password=PASSWORD] [blocked=0|1].")
def add(admin, call):
    check_keys(call.args, ("login", "password", "blocked"), ("login",))
    login, tenant = split_login(call.args["login"], call.tenant)
    if not login:
        raise BadRequest("login must not be empty")
    parse_name("login", login)
    password = call.args.get("password")
    with admin.session() as s:
        tenant_id = admin.tenant_id(s, tenant)
        user = User(tenant_id=tenant_id, login=login,
                    password=hash_password(password) if password else None,
                    blocked=call.args.get("blocked", "0") in ("1", "true", "yes"))
        s.add(user)
        s.flush()
        admin.audit(s, "user", "add", call, [user.id], tenant_id)
    admin.say(f"user {user.id} '{login}' added")


@verb(group, "passwd", "Set the password of the user chosen by -f or login=LOGIN[@TENANT]; "
                       "it is read from the terminal or standard input.")
def passwd(admin, call):
    check_keys(call.args, ("login",))
    if bool(call.filters) == bool(call.args.get("login")):
        raise BadRequest("choose the user with either login=LOGIN or -f")
    with admin.session() as s:
        if call.filters:
            ids = VIEW.ids(s, call)
            if len(ids) != 1:
                raise DomainError(f"the filter matches {len(ids)} users; passwd changes one")
            user_id = ids[0]
        else:
            user_id = find_user(admin, s, call.args["login"], call.tenant).id
        password = admin.read_new_password()
        if not password:
            raise DomainError("the new password is empty; nothing changed")
        s.execute(update(User).where(User.id == user_id).values(password=hash_password(password)))
        # The tokens the old password opened end with it (same transaction).
        revoked = s.execute(delete(UserToken).where(UserToken.user_id == user_id)).rowcount
        admin.audit(s, "user", "passwd", call, [user_id])
    admin.say(f"password of user {user_id} changed, {revoked} token(s) revoked")


def _give_back_pool_vms(admin, s, ids) -> None:
    """The users' VMs of desktop pools go back to their pools (their next start discards the
    home); one still running or connected must be stopped first."""
    from .vms import _refuse_active  # vms imports this module (find_user)
    pooled = list(s.scalars(select(Vm.id).where(Vm.user_id.in_(ids), Vm.pool_id.isnot(None))))
    if pooled:
        _refuse_active(admin, s, pooled)
        s.execute(update(Vm).where(Vm.id.in_(pooled)).values(user_id=None, discard_home=True))


add_delete_verb(group, VIEW, User, " (their VMs must be deleted first; VMs of pools go back "
                "to their pools)", before=_give_back_pool_vms)
add_list_verb(group, VIEW)
add_block_verbs(group, VIEW, User.blocked, "they cannot log in")
add_property_verbs(group, VIEW)


# --- user token list|del: the bearer tokens of /qvd/create_auth_token -------------------------
tokens = object_kind("user token", "Users' auth tokens (only their hashes are stored).")

TOKEN_VIEW = ObjectView(
    "token", {"token": func.left(UserToken.token_hash, 12), "login": User.login,
              "tenant": Tenant.name, "created": UserToken.created_at,
              "expires": UserToken.expires_at, "login_expires": UserToken.login_expires_at,
              "uses": UserToken.uses, "last_used": UserToken.last_used_at},
    select(UserToken).join(User, User.id == UserToken.user_id)
    .join(Tenant, Tenant.id == User.tenant_id).where(UserToken.expires_at > func.now()),
    tenant=Tenant.name, order=UserToken.created_at)


@verb(tokens, "list", "List the valid tokens (filter with -f login=LOGIN, token=PREFIX).",
      lists=True)
def token_list(admin, call):
    check_keys(call.args, ())
    list_objects(admin, TOKEN_VIEW, call)


@verb(tokens, "del", "Revoke the tokens chosen by -f (e.g. -f login=alice -t acme): "
                     "their next use gets 401.")
def token_del(admin, call):
    check_keys(call.args, ())
    if not call.filters and call.chosen is None:
        raise BadRequest("say whose tokens with -f, e.g. -f login=alice")
    with admin.session() as s:
        chosen = TOKEN_VIEW.query(call, [UserToken.token_hash]).subquery()
        gone = s.execute(delete(UserToken).where(UserToken.token_hash.in_(select(chosen)))
                         .returning(UserToken.user_id)).scalars().all()
        admin.audit(s, "user", "token del", call, sorted(set(gone)))
    admin.say(f"{len(gone)} token(s) revoked")
