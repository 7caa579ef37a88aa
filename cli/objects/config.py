"""qvd-admin config get|set|del|list|ssl."""
import click
import fnmatch

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert

from qvd.db.audit import is_secret
from qvd.db.config import validate
from qvd.db.config_keys import KEYS
from qvd.db.models import GLOBAL_TENANT, ConfigEntry, SslConfig
from qvd.db.tls import TlsError, check_pair

from ..errors import UserError, usage
from ..context import Call
from ..grammar import check_keys
from ..output import print_rows
from ..verbs import CONTEXT, object_group, verb

group = object_group("config", "Configuration: built-in defaults < node file < global < tenant.")


def _scope(admin, s, call) -> int:
    if call.filters:
        raise usage("config verbs take keys, not -f (use -f only with config list)")
    return admin.config_scope(s, call.tenant)


def _shown(admin, key: str, value):
    """Secrets (the database password, LDAP's bind password) are shown to local runs only."""
    return "***" if value and not admin.actor.is_local and is_secret(key) else value


@verb(group, "get", "Print the effective value of each KEY (for a tenant with -t).", words=True)
def get(admin, call):
    if not call.args:
        raise usage("name the key(s) to print")
    with admin.session() as s:
        tenant_id = _scope(admin, s, call)
        cfg = admin.settings(s, tenant_id if tenant_id != GLOBAL_TENANT else None)
        values = {key: _shown(admin, key, cfg.get(key)) for key in call.args}
    for key, value in values.items():
        print(value or "" if len(values) == 1 else f"{key}={value or ''}")


@verb(group, "set", "Set key=value ... globally, or for one tenant with -t.")
def set_(admin, call):
    if not call.args:
        raise usage("give key=value to set")
    values = {}
    for key, value in call.args.items():
        values[key] = validate(key, value)
        if key in {k.name for k in KEYS if k.scope == "node"}:
            raise UserError(f"{key} is read from the node file only (QVD_CONFIG), not the database")
    with admin.session() as s:
        tenant_id = _scope(admin, s, call)
        for key, value in values.items():
            stmt = insert(ConfigEntry).values(tenant_id=tenant_id, key=key, value=value)
            s.execute(stmt.on_conflict_do_update(index_elements=["tenant_id", "key"],
                                                 set_={"value": value}))
        admin.audit(s, "config", "set", call, [], tenant_id)
    print(f"{len(values)} key(s) set " + ("globally" if tenant_id == GLOBAL_TENANT else
                                          f"for tenant '{call.tenant or admin.actor.tenant_name}'"))


@verb(group, "del", "Remove KEY ... from the database (back to node file / default).",
      words=True)
def del_(admin, call):
    if not call.args:
        raise usage("name the key(s) to remove")
    with admin.session() as s:
        tenant_id = _scope(admin, s, call)
        gone = s.execute(delete(ConfigEntry).where(ConfigEntry.tenant_id == tenant_id,
                                                   ConfigEntry.key.in_(list(call.args)))
                         .returning(ConfigEntry.key)).scalars().all()
        missing = sorted(set(call.args) - set(gone))
        if missing:
            raise UserError(f"'{missing[0]}' is not set in the database at that level")
        admin.audit(s, "config", "del", call, [], tenant_id)
    print(f"{len(gone)} key(s) removed")


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
    print_rows(["key", "value", "source"], rows, call.fmt, call.quiet)


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) if ("*" in pattern or "?" in pattern) \
        else name == pattern


@group.command("ssl", context_settings=CONTEXT)
@click.option("--cert", "cert", required=True, type=click.Path(dir_okay=False),
              help="PEM certificate (chain) of the L7R.")
@click.option("--key", "key", required=True, type=click.Path(dir_okay=False),
              help="PEM private key matching the certificate.")
@click.option("--ca", "ca", type=click.Path(dir_okay=False), help="PEM CA bundle (optional).")
@click.option("--debug", is_flag=True, hidden=True)
@click.pass_obj
def ssl(admin, cert, key, ca, debug):
    """Store the L7R's TLS certificate and key (checked to match) in the database."""
    texts = {}
    for name, path in (("l7r.ssl.cert", cert), ("l7r.ssl.key", key), ("l7r.ssl.ca", ca)):
        if path is None:
            continue
        try:
            with open(path, encoding="ascii") as handle:
                texts[name] = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        subject = check_pair(texts["l7r.ssl.cert"], texts["l7r.ssl.key"], texts.get("l7r.ssl.ca"))
    except TlsError as exc:
        raise UserError(str(exc)) from None
    with admin.session() as s:
        for name, value in texts.items():
            stmt = insert(SslConfig).values(key=name, value=value)
            s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
        admin.audit(s, "config", "ssl", Call(args={"cert": cert, "key": "***", "ca": ca or ""}), [])
    print(f"certificate for {subject} stored")

