"""pool add|del|list|edit|block|unblock|members: desktop pools (issue 17). Their VMs are made,
started and stopped by the pool keeper of qvd-hkd (hkd/pool_keeper.py) and handed out by the
L7R (l7r/pools.py); here only the pool's definition and who may use it."""
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from qvd.db.images import DEFAULT
from qvd.db.models import Osf, Pool, PoolGroup, PoolMember, Tenant, User, Vm, VmRuntime
from qvd.db.models.pools import ASSIGNMENTS
from qvd.db.runtime.pools import vm_name

from .errors import BadRequest, DomainError
from .grammar import check_keys, parse_name, parse_positive_int
from .selection import ObjectView, show_page
from .registry import object_kind, verb
from .common import add_block_verbs, add_delete_verb, add_list_verb
from .osfs import find_osf
from .users import find_user
from .vms import _check_tag, _refuse_active

group = object_kind("pool", "Desktop pools: VMs made on demand for the users entitled to them.")


def _count(*where):
    return (select(func.count(Vm.id)).join(VmRuntime, VmRuntime.vm_id == Vm.id)
            .where(Vm.pool_id == Pool.id, *where).scalar_subquery())


_spare = Vm.user_id.is_(None)
_preparing = (VmRuntime.vm_state == "starting") | (VmRuntime.vm_cmd == "start")
VIEW = ObjectView("pool", {
    "id": Pool.id, "tenant": Tenant.name, "name": Pool.name, "osf": Osf.name,
    "di_tag": Pool.di_tag, "assignment": Pool.assignment, "min": Pool.min,
    "spare": Pool.spare, "max": Pool.max, "vms": _count(),
    "assigned": _count(Vm.user_id.isnot(None)),
    "spare_running": _count(_spare, VmRuntime.vm_state == "running"),
    "preparing": _count(_preparing),
    "stopped": _count(VmRuntime.vm_state == "stopped", VmRuntime.vm_cmd.is_(None)),
    "members": select(func.count()).where(PoolMember.pool_id == Pool.id).scalar_subquery(),
    "groups": select(func.string_agg(PoolGroup.name, ",")).where(PoolGroup.pool_id == Pool.id)
    .scalar_subquery(),
    "blocked": Pool.blocked, "vm_names": Pool.vm_names, "last_reason": Pool.last_reason,
    "last_reason_at": Pool.last_reason_at,
    # why its VMs fail (a start refused, a DI missing): the newest of their last_error
    "last_vm_error": (select(VmRuntime.last_error).join(Vm, Vm.id == VmRuntime.vm_id)
                      .where(Vm.pool_id == Pool.id, VmRuntime.last_error.isnot(None))
                      .order_by(VmRuntime.last_error_at.desc().nulls_last()).limit(1)
                      .scalar_subquery()),
    "description": Pool.description,
}, select(Pool).join(Tenant, Tenant.id == Pool.tenant_id).join(Osf, Osf.id == Pool.osf_id),
    tenant=Tenant.name, ids={"tenant_id": Tenant.id, "osf_id": Osf.id})

SIZES = ("min", "max", "spare")


def _sizes(args: dict, current: dict) -> dict:
    """min <= max, spare <= max, max >= 1: checked here so that the admin reads which."""
    sizes = {key: parse_positive_int(args[key], key, allow_zero=key != "max")
             if key in args else current[key] for key in SIZES}
    if sizes["min"] > sizes["max"]:
        raise BadRequest(f"min ({sizes['min']}) must not exceed max ({sizes['max']})")
    if sizes["spare"] > sizes["max"]:
        raise BadRequest(f"spare ({sizes['spare']}) must not exceed max ({sizes['max']})")
    return sizes


def _assignment(value: str) -> str:
    if value not in ASSIGNMENTS:
        raise BadRequest(f"assignment must be {' or '.join(ASSIGNMENTS)}, got '{value}'")
    return value


def _vm_names(pattern: str, pool: str) -> str:
    if "{n}" not in pattern:
        raise BadRequest(f"vm_names must contain {{n}} (each VM's number), got '{pattern}'")
    parse_name("VM name", vm_name(pattern, pool, 99999))  # the longest a VM is likely to get
    return pattern


@verb(group, "add", "Add a pool: name=NAME osf=OSF max=N [min=0] [spare=0] [di_tag=default] "
                    "[assignment=persistent|throwaway] [vm_names={pool}-{n}] [blocked=0] "
                    "[description=TEXT]. Give it users with `pool members`.")
def add(admin, call):
    args = call.args
    check_keys(args, ("name", "osf", "max", "min", "spare", "di_tag", "assignment", "vm_names",
                      "blocked", "description"), ("name", "osf", "max"))
    name = parse_name("pool name", args["name"])
    sizes = _sizes(args, {"min": 0, "spare": 0})
    assignment = _assignment(args.get("assignment", "persistent"))
    pattern = _vm_names(args.get("vm_names", "{pool}-{n}"), name)
    if "di_tag" in args:
        parse_name("DI tag", args["di_tag"])
    with admin.session() as s:
        tenant_id = admin.tenant_id(s, call.tenant)
        osf = find_osf(admin, s, args["osf"], call.tenant)
        pool = Pool(tenant_id=tenant_id, name=name, osf_id=osf.id,
                    di_tag=_check_tag(s, osf, args.get("di_tag", DEFAULT)), **sizes,
                    assignment=assignment, vm_names=pattern,
                    blocked=args.get("blocked", "0") in ("1", "true", "yes"),
                    description=args.get("description"))
        s.add(pool)
        s.flush()
        admin.audit(s, "pool", "add", call, [pool.id], tenant_id)
    admin.say(f"pool {pool.id} '{name}' added (min {sizes['min']}, spare {sizes['spare']}, "
              f"max {sizes['max']}, {assignment})")


@verb(group, "edit", "Change the pools chosen by -f: [min=N] [max=N] [spare=N] [di_tag=TAG] "
                     "[assignment=persistent|throwaway] [vm_names=PATTERN] [description=TEXT]. "
                     "The pool keepers follow at once.")
def edit(admin, call):
    args = call.args
    check_keys(args, ("min", "max", "spare", "di_tag", "assignment", "vm_names", "description"))
    if not args:
        raise BadRequest("give what to change, e.g. spare=2")
    if "assignment" in args:
        _assignment(args["assignment"])
    if "di_tag" in args:
        parse_name("DI tag", args["di_tag"])
    with admin.session() as s:
        ids = VIEW.ids(s, call)
        for pool in s.scalars(select(Pool).where(Pool.id.in_(ids)).with_for_update()):
            values = {k: args[k] for k in ("assignment", "description") if k in args}
            values.update(_sizes(args, {k: getattr(pool, k) for k in SIZES}))
            if "vm_names" in args:
                values["vm_names"] = _vm_names(args["vm_names"], pool.name)
            if "di_tag" in args:
                values["di_tag"] = _check_tag(s, s.get(Osf, pool.osf_id), args["di_tag"])
            s.execute(update(Pool).where(Pool.id == pool.id).values(**values))
            if "di_tag" in values:  # its VMs follow: spares at once, the others at next start
                s.execute(update(Vm).where(Vm.pool_id == pool.id).values(di_tag=values["di_tag"]))
        admin.audit(s, "pool", "edit", call, ids)
    admin.say(f"{len(ids)} pool(s) changed")


def _refuse_active_vms(admin, s, ids) -> None:
    """A pool goes with its VMs: none of them may be running or connected."""
    _refuse_active(admin, s, list(s.scalars(select(Vm.id).where(Vm.pool_id.in_(ids)))))


MEMBER_FIELDS = ["pool", "login", "tenant", "via", "vm"]
CHANGES = ("add", "del", "add_group", "del_group")


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _change_members(admin, s, pool: Pool, changes: dict) -> None:
    tenant = s.get(Tenant, pool.tenant_id).name
    users = {key: [find_user(admin, s, login, tenant).id for login in changes[key]]
             for key in ("add", "del") if key in changes}
    if users.get("add"):
        s.execute(insert(PoolMember).values([{"pool_id": pool.id, "user_id": user}
                                             for user in users["add"]])
                  .on_conflict_do_nothing())
    if users.get("del"):
        s.execute(delete(PoolMember).where(PoolMember.pool_id == pool.id,
                                           PoolMember.user_id.in_(users["del"])))
    groups = {key: sorted({name.lower() for name in changes.get(key, [])})
              for key in ("add_group", "del_group")}
    for name in groups["add_group"]:
        parse_name("group name", name)
    if groups["add_group"]:
        s.execute(insert(PoolGroup).values([{"pool_id": pool.id, "name": name}
                                            for name in groups["add_group"]])
                  .on_conflict_do_nothing())
    if groups["del_group"]:
        s.execute(delete(PoolGroup).where(PoolGroup.pool_id == pool.id,
                                          PoolGroup.name.in_(groups["del_group"])))


def _member_rows(s, ids: list[int]) -> list[dict]:
    """Members one by one, then each group with the users the directory last put in it
    (a group nobody of it has logged in since: one row without a login)."""
    vm = select(Vm.name).where(Vm.pool_id == Pool.id, Vm.user_id == User.id) \
        .scalar_subquery()
    rows = [dict(row, via="user") for row in s.execute(
        select(Pool.name.label("pool"), User.login.label("login"),
               Tenant.name.label("tenant"), vm.label("vm"))
        .select_from(PoolMember).join(Pool, Pool.id == PoolMember.pool_id)
        .join(User, User.id == PoolMember.user_id).join(Tenant, Tenant.id == User.tenant_id)
        .where(Pool.id.in_(ids))).mappings()]
    for row in s.execute(
            select(Pool.name.label("pool"), PoolGroup.name.label("group"),
                   User.login.label("login"), Tenant.name.label("tenant"), vm.label("vm"))
            .select_from(PoolGroup).join(Pool, Pool.id == PoolGroup.pool_id)
            .join(Tenant, Tenant.id == Pool.tenant_id)
            .outerjoin(User, and_(User.tenant_id == Pool.tenant_id,
                                  User.directory_groups.any(PoolGroup.name)))
            .where(Pool.id.in_(ids))).mappings():
        row = dict(row)
        rows.append(dict(row, via=f"group {row.pop('group')}"))
    return sorted(rows, key=lambda r: (r["pool"], r["login"] or "", r["via"]))


@verb(group, "members", "Show who may use the pools chosen by -f, and their VMs; "
                        "[add=LOGIN,LOGIN...] [del=LOGIN,...] [add_group=GROUP,...] "
                        "[del_group=GROUP,...] change it first (logins of the pool's tenant; "
                        "directory groups, as the LDAP plugin reads them at each login: "
                        "auth.ldap.attr.groups, auth.ldap.group.filter). Users taken off keep a "
                        "VM they were given; `vm del` takes it.", lists=True)
def members(admin, call):
    check_keys(call.args, CHANGES)
    changes = {key: _listed(call.args[key]) for key in CHANGES if key in call.args}
    with admin.session() as s:
        ids = VIEW.ids(s, call)
        if changes:
            if len(ids) != 1:
                raise DomainError(f"the filter matches {len(ids)} pools; {', '.join(changes)} "
                                  "change one")
            pool = s.get(Pool, ids[0])
            _change_members(admin, s, pool, changes)
            admin.audit(s, "pool", "members", call, ids, pool.tenant_id)
        rows = _member_rows(s, ids)
    show_page(admin, call, MEMBER_FIELDS, rows)


add_delete_verb(group, VIEW, Pool, " and their VMs (all of which must be stopped)",
                before=_refuse_active_vms)
add_list_verb(group, VIEW)
add_block_verbs(group, VIEW, Pool.blocked, "no VM is made or started for them and users "
                "cannot take one (VMs already given keep working)")
