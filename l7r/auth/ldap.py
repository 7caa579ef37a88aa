"""The `ldap` plugin: the password is checked by an LDAP server, the user lives in the database.

Either bind directly as auth.ldap.dn_pattern (%u: the login), or search auth.ldap.base with
auth.ldap.filter (as auth.ldap.binddn, or anonymously) and bind as the one entry found.
uid, gid and home from the entry are exported in Identity.extra. The user's groups
(auth.ldap.attr.groups of the entry, and/or the auth.ldap.group.filter search) are kept in
users.directory_groups at each login: pools given to a group go by them. A user unknown to
the tenant is refused unless auth.ldap.autocreate is on (see autocreate.py).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import ldap
import ldap.dn
import ldap.filter

from . import autocreate, database
from .base import AuthFailed, Credentials, Identity

log = logging.getLogger(__name__)

TENANT = "SELECT id, name, blocked FROM tenants WHERE name = %(tenant)s AND id >= 1"

SCOPES = {"base": ldap.SCOPE_BASE, "one": ldap.SCOPE_ONELEVEL, "sub": ldap.SCOPE_SUBTREE}
EXTRA = {"uid": "auth.ldap.attr.uid", "gid": "auth.ldap.attr.gid", "home": "auth.ldap.attr.home"}
# Written only when they changed: each write is a change the WAT is told of.
GROUPS = """
UPDATE users SET directory_groups = %(groups)s
WHERE id = %(user)s AND directory_groups IS DISTINCT FROM %(groups)s"""


@dataclass
class DirectoryUser:
    login: str                      # the directory's own spelling (auth.ldap.attr.login)
    extra: dict[str, str] = field(default_factory=dict)
    groups: list[str] | None = None  # lower-case names, sorted; None: could not be read


def authenticate(db, cfg, creds: Credentials) -> Identity:
    """The login that counts is the directory's own (auth.ldap.attr.login of the entry bound):
    `Alice`, `ALICE` and `alice` bind as the same entry and are one user."""
    if creds.scheme != "basic":
        raise AuthFailed("not a password")
    who = f"{creds.login}@{creds.tenant}"
    # An LDAP simple bind with a DN and no password is an *anonymous* bind that succeeds.
    if not creds.password:
        raise AuthFailed(f"empty password for {who}")
    tenant = db.fetchone(TENANT, {"tenant": creds.tenant})
    if tenant is None:
        raise AuthFailed(f"unknown tenant {creds.tenant}")
    found = check_password(cfg, creds.login, creds.password)  # raises AuthFailed
    login = found.login
    who = f"{login}@{creds.tenant}"
    row = database.find_user(db, cfg, login, creds.tenant)
    if row is None and not cfg.get_bool("auth.ldap.autocreate"):
        raise AuthFailed(f"unknown user {who} (auth.ldap.autocreate is off)")
    if tenant["blocked"] or (row is not None and row["blocked"]):
        raise AuthFailed(f"{who} is blocked")
    if row is None:
        user_id = autocreate.create_user(db, cfg, tenant["id"], login)
    else:
        user_id, login = row["id"], row["login"]
    if found.groups is not None:
        db.execute(GROUPS, {"user": user_id, "groups": found.groups})
    return Identity(user_id, login, tenant["id"], tenant["name"], found.extra)


def server_uris(value: str) -> str:
    """QVD accepted bare host names; libldap wants URIs (space-separated, tried in turn)."""
    uris = [u if "://" in u else f"ldap://{u}" for u in value.replace(",", " ").split()]
    return " ".join(uris)


def check_password(cfg, login: str, password: str) -> DirectoryUser:
    """Bind as the user; return their canonical login (the entry's own auth.ldap.attr.login,
    or the login as given when the entry does not show it), the extra attributes of their
    entry and their groups. AuthFailed says why."""
    uris = server_uris(cfg.get("auth.ldap.host") or "")
    if not uris:
        raise AuthFailed("auth.ldap.host is not set")
    login_attr = cfg.get("auth.ldap.attr.login") or "uid"
    groups_attr = cfg.get("auth.ldap.attr.groups") or ""
    wanted = [cfg.get(name) for name in EXTRA.values()] + [login_attr] + \
        ([groups_attr] if groups_attr else [])
    conn = None
    try:
        conn = ldap.initialize(uris)  # checks the URIs; no traffic yet
        _configure(conn, cfg, uris)
        dn, attrs = _bind_user(conn, cfg, login, password, wanted)
        groups = _groups(conn, cfg, dn, login, _values(attrs, groups_attr))
    except ldap.INVALID_CREDENTIALS:
        raise AuthFailed(f"LDAP refused the password of {login}") from None
    except ldap.SERVER_DOWN:
        raise AuthFailed(f"LDAP server {uris} unreachable") from None
    except ldap.TIMEOUT:
        raise AuthFailed(f"LDAP server {uris} did not answer in time") from None
    except ldap.LDAPError as exc:
        raise AuthFailed(f"LDAP error for {login}: {_describe(exc)}") from None
    finally:
        if conn is not None:
            with contextlib.suppress(ldap.LDAPError):
                conn.unbind_s()
    log.debug("LDAP bind as %s succeeded", dn)
    return DirectoryUser(_canonical(attrs, login_attr, login), _extra(cfg, attrs), groups)


def _values(attrs: dict, name: str) -> list[str]:
    """The values of one attribute of an entry (names compare without case), decoded."""
    values = next((v for k, v in attrs.items() if k.lower() == name.lower()), []) if name \
        else []
    return [v.decode("utf-8", "replace").strip() for v in values]


def _group_name(value: str) -> str:
    """A group DN's first RDN value (cn=Devs,ou=groups,... is `devs`), or a bare name."""
    try:
        rdns = ldap.dn.str2dn(value)
    except ldap.DECODING_ERROR:
        rdns = []
    name = rdns[0][0][1] if rdns and "=" in value else value
    return name.strip().lower()


def _groups(conn, cfg, dn: str, login: str, named: list[str]) -> list[str] | None:
    """The user's groups: those their entry names, and those auth.ldap.group.filter finds
    (searched as the user, who is bound now). None when the search failed: the groups of
    their last login stay (the password was right; the login goes on)."""
    found = list(named)
    query = cfg.get("auth.ldap.group.filter") or ""
    if query:
        query = query.replace("%u", ldap.filter.escape_filter_chars(login)).replace(
            "%d", ldap.filter.escape_filter_chars(dn))
        base = cfg.get("auth.ldap.group.base") or cfg.get("auth.ldap.base") or ""
        try:
            results = conn.search_s(base, ldap.SCOPE_SUBTREE, query, ["cn"])
        except ldap.LDAPError as exc:
            log.warning("LDAP group search %s under '%s' for %s failed: %s; the groups of "
                        "the last login stay", query, base, login, _describe(exc))
            return None
        found += [value for group_dn, attrs in results if group_dn
                  for value in (_values(attrs, "cn") or [group_dn])]
    return sorted({name for name in map(_group_name, found) if name})


def _canonical(attrs: dict, name: str, given: str) -> str:
    """The entry's value of `name` that matches the login given (case and surrounding
    whitespace aside); a multi-valued uid keeps the one the user typed, in the directory's
    spelling."""
    decoded = _values(attrs, name)
    for value in decoded:
        if value.casefold() == given.strip().casefold():
            return value
    if len(decoded) == 1 and decoded[0]:
        return decoded[0]  # a search filter on another attribute (mail=%u) found this entry
    log.info("LDAP entry of %s shows no single %s; the login stays as given", given, name)
    return given.strip()


def _configure(conn, cfg, uris: str) -> None:
    timeout = cfg.get_float("auth.ldap.timeout") or 5.0
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)  # connect
    conn.set_option(ldap.OPT_TIMEOUT, timeout)          # each synchronous operation
    conn.timeout = timeout                              # python-ldap's own wait for results
    conn.set_option(ldap.OPT_REFERRALS, 0)  # chasing referrals would bind anonymously elsewhere
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
    starttls = cfg.get_bool("auth.ldap.starttls")
    if starttls or "ldaps://" in uris.lower():
        cacert = cfg.get("auth.ldap.cacert")
        if cacert:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, cacert)
        # Always check the certificate, whatever /etc/ldap/ldap.conf says.
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # makes the per-connection options effective
    if starttls:
        conn.start_tls_s()


def _bind_user(conn, cfg, login: str, password: str, wanted: list[str]):
    pattern = cfg.get("auth.ldap.dn_pattern")
    if pattern:
        dn = pattern.replace("%u", ldap.dn.escape_dn_chars(login))
        conn.simple_bind_s(dn, password)
        try:  # the entry's attributes, read as the user; some directories do not allow it
            found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", wanted)
        except ldap.LDAPError as exc:
            log.info("LDAP entry %s not readable by its user: %s", dn, _describe(exc))
            found = []
        return dn, found[0][1] if found else {}
    binddn = cfg.get("auth.ldap.binddn") or ""
    try:
        conn.simple_bind_s(binddn, cfg.get("auth.ldap.bindpass") or "")
    except ldap.INVALID_CREDENTIALS:  # not the user's fault: say so in the log
        raise AuthFailed(f"LDAP refused the search bind as '{binddn}' "
                         "(auth.ldap.binddn, auth.ldap.bindpass)") from None
    query = (cfg.get("auth.ldap.filter") or "(uid=%u)").replace(
        "%u", ldap.filter.escape_filter_chars(login))
    results = conn.search_s(cfg.get("auth.ldap.base") or "",
                            SCOPES[cfg.get("auth.ldap.scope") or "sub"], query, wanted)
    entries = [(dn, attrs) for dn, attrs in results if dn]  # dn None: a search reference
    if len(entries) != 1:
        raise AuthFailed(f"LDAP search {query} found {len(entries)} entries, not one")
    dn, attrs = entries[0]
    conn.simple_bind_s(dn, password)
    return dn, attrs


def _extra(cfg, attrs: dict) -> dict[str, str]:
    by_lower = {name.lower(): values for name, values in attrs.items()}
    extra = {}
    for name, key in EXTRA.items():
        values = by_lower.get((cfg.get(key) or "").lower())
        if values:
            extra[name] = values[0].decode("utf-8", "replace")
    return extra


def _describe(exc: ldap.LDAPError) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return " ".join(str(info[k]) for k in ("desc", "info") if info.get(k)) or repr(exc)
