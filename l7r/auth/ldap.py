"""The `ldap` plugin: the password is checked by an LDAP server, the user lives in the database.

Either bind directly as auth.ldap.dn_pattern (%u: the login), or search auth.ldap.base with
auth.ldap.filter (as auth.ldap.binddn, or anonymously) and bind as the one entry found.
uid, gid and home from the entry are exported in Identity.extra. A user unknown to the
tenant is refused unless auth.ldap.autocreate is on (see autocreate.py).
"""
from __future__ import annotations

import contextlib
import logging

import ldap
import ldap.dn
import ldap.filter

from . import autocreate, database
from .base import AuthFailed, Credentials, Identity

log = logging.getLogger(__name__)

TENANT = "SELECT id, name, blocked FROM tenants WHERE name = %(tenant)s AND id >= 1"

SCOPES = {"base": ldap.SCOPE_BASE, "one": ldap.SCOPE_ONELEVEL, "sub": ldap.SCOPE_SUBTREE}
EXTRA = {"uid": "auth.ldap.attr.uid", "gid": "auth.ldap.attr.gid", "home": "auth.ldap.attr.home"}


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
    login, extra = check_password(cfg, creds.login, creds.password)  # raises AuthFailed
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
    return Identity(user_id, login, tenant["id"], tenant["name"], extra)


def server_uris(value: str) -> str:
    """QVD accepted bare host names; libldap wants URIs (space-separated, tried in turn)."""
    uris = [u if "://" in u else f"ldap://{u}" for u in value.replace(",", " ").split()]
    return " ".join(uris)


def check_password(cfg, login: str, password: str) -> tuple[str, dict[str, str]]:
    """Bind as the user; return their canonical login (the entry's own auth.ldap.attr.login,
    or the login as given when the entry does not show it) and the extra attributes of
    their entry. AuthFailed says why."""
    uris = server_uris(cfg.get("auth.ldap.host") or "")
    if not uris:
        raise AuthFailed("auth.ldap.host is not set")
    login_attr = cfg.get("auth.ldap.attr.login") or "uid"
    wanted = [cfg.get(name) for name in EXTRA.values()] + [login_attr]
    conn = None
    try:
        conn = ldap.initialize(uris)  # checks the URIs; no traffic yet
        _configure(conn, cfg, uris)
        dn, attrs = _bind_user(conn, cfg, login, password, wanted)
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
    return _canonical(attrs, login_attr, login), _extra(cfg, attrs)


def _canonical(attrs: dict, name: str, given: str) -> str:
    """The entry's value of `name` that matches the login given (case and surrounding
    whitespace aside); a multi-valued uid keeps the one the user typed, in the directory's
    spelling."""
    values = next((v for k, v in attrs.items() if k.lower() == name.lower()), [])
    decoded = [v.decode("utf-8", "replace").strip() for v in values]
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
    for field, key in EXTRA.items():
        values = by_lower.get((cfg.get(key) or "").lower())
        if values:
            extra[field] = values[0].decode("utf-8", "replace")
    return extra


def _describe(exc: ldap.LDAPError) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return " ".join(str(info[k]) for k in ("desc", "info") if info.get(k)) or repr(exc)
