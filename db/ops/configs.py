"""config get|set|del|list: the database layers of the configuration (config ssl, which reads
certificate files, is the CLI's: cli/objects/config.py)."""
import fnmatch

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert

from qvd.db.audit import is_secret
from qvd.db.config import validate
from qvd.db.config_keys import KEYS
from qvd.db.models import GLOBAL_TENANT, ConfigEntry

from .errors import BadRequest, DomainError
from .grammar import check_keys
from .registry import object_kind, verb
from .selection import show_page

group = object_kind("config", "Configuration: built-in defaults < node file < global < tenant.")


def _scope(admin, s, call) -> int:
    if call.filters:
        raise BadRequest("config verbs take keys, not -f (use -f only with config list)")
    return admin.config_scope(s, call.tenant)


def _shown(admin, key: str, value):
    """Secrets (the database password, LDAP's bind password) are shown to local runs only."""
    return "***" if value and not admin.actor.is_local and is_secret(key) else value


@verb(group, "get", "Print the effective value of each KEY (for a tenant with -t).", words=True)
def get(admin, call):
    if not call.args:
        raise BadRequest("name the key(s) to print")
    with admin.session() as s:
        tenant_id = _scope(admin, s, call)
        cfg = admin.settings(s, tenant_id if tenant_id != GLOBAL_TENANT else None)
        values = {key: _shown(admin, key, cfg.get(key)) for key in call.args}
    for key, value in values.items():
        admin.say(value or "" if len(values) == 1 else f"{key}={value or ''}")


@verb(group, "set", "Set key=value ... globally, or for one tenant with -t.")
def set_(admin, call):
    if not call.args:
        raise BadRequest("give key=value to set")
    values = {}
    for key, value in call.args.items():
        values[key] = validate(key, value)
        if key in {k.name for k in KEYS if k.scope == "node"}:
            raise DomainError(f"{key} is read from the node file only (QVD_CONFIG), not the database")
    with admin.session() as s:
        tenant_id = _scope(admin, s, call)
        for key, value in values.items():
            stmt = insert(ConfigEntry).values(tenant_id=tenant_id, key=key, value=value)
            s.execute(stmt.on_conflict_do_update(index_elements=["tenant_id", "key"],
                                                 set_={"value": value}))
        admin.audit(s, "config", "set", call, [], tenant_id)
    admin.say(f"{len(values)} key(s) set " + ("globally" if tenant_id == GLOBAL_TENANT else
                                          f"for tenant '{call.tenant or admin.actor.tenant_name}'"))


@verb(group, "del", "Remove KEY ... from the database (back to node file / default).",
      words=True)
def del_(admin, call):
    if not call.args:
        raise BadRequest("name the key(s) to remove")
    with admin.session() as s:
        tenant_id = _scope(admin, s, call)
        gone = s.execute(delete(ConfigEntry).where(ConfigEntry.tenant_id == tenant_id,
                                                   ConfigEntry.key.in_(list(call.args)))
                         .returning(ConfigEntry.key)).scalars().all()
        missing = sorted(set(call.args) - set(gone))
        if missing:
            raise DomainError(f"'{missing[0]}' is not set in the database at that level")
        admin.audit(s, "config", "del", call, [], tenant_id)
    admin.say(f"{len(gone)} key(s) removed")


@verb(group, "list", "List every key with its effective value and where it comes from "
                     "(-f key=l7r.* to narrow).", lists=True)
def list_(admin, call):
    check_keys(call.filters, ("key",), what="the filter")
    check_keys(call.args, ())
    with admin.session() as s:
        scope = admin.config_scope(s, call.tenant)
        cfg = admin.settings(s, None if scope == GLOBAL_TENANT else scope)
    names = sorted({k.name for k in KEYS} | set(cfg.node) | set(cfg.db_global) | set(cfg.db_tenant))
    pattern = call.filters.get("key")
    rows = []
    for name in names:
        if pattern and not _matches(name, pattern):
            continue
        value, source = cfg.lookup(name)
        rows.append({"key": name, "value": _shown(admin, name, value), "source": source})
    show_page(admin, call, ["key", "value", "source"], rows)


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) if ("*" in pattern or "?" in pattern) \
        else name == pattern
