"""Users an external directory vouched for, created at their first login (auth.ldap.autocreate),
with a VM of auth.ldap.autocreate.osf: the same rows `qvd-admin user add` and `vm add` write.

One transaction per attempt, so a user never exists without the VM it was promised. Two first
logins of the same user at once meet on users' unique (tenant_id, login): the second waits for
the first and finds its user (and VM). Addresses are picked under an advisory lock shared by
every L7R; a clash with a concurrent `qvd-admin vm add` (vms.ip is unique) is retried.
"""
from __future__ import annotations

import logging

import psycopg.errors
from psycopg.types.json import Jsonb

from qvd.db.names import BadName, check_name
from qvd.db.vm_network import AddressError, free_addresses

from .base import AuthFailed

log = logging.getLogger(__name__)
ATTEMPTS = 3

# password NULL: no password the `default` plugin could ever verify (external auth only).
USER = """
INSERT INTO users (tenant_id, login, password) VALUES (%(tenant)s, %(login)s, NULL)
ON CONFLICT (tenant_id, login) DO NOTHING RETURNING id"""
EXISTING = "SELECT id FROM users WHERE tenant_id = %(tenant)s AND login = %(login)s"
OSF = "SELECT id FROM osfs WHERE tenant_id = %(tenant)s AND name = %(name)s"
# Auto-creation is capped per tenant (auth.ldap.autocreate.max_per_hour): a directory that
# vouches for anyone (or a flood of made-up logins against a permissive one) cannot fill the
# tenant with users and VMs. Counted from the audit rows, under a per-tenant lock.
TENANT_LOCK = "SELECT pg_advisory_xact_lock(hashtext('qvd: autocreate'), %(tenant)s)"
CREATED_LATELY = """
SELECT count(*) AS n FROM admin_log
WHERE who = 'qvd-l7r' AND object = 'user' AND action = 'add' AND tenant_id = %(tenant)s
  AND at > now() - interval '1 hour'"""
VM = """
INSERT INTO vms (name, user_id, osf_id, di_tag, ip)
VALUES (%(name)s, %(user)s, %(osf)s, 'default', %(ip)s) RETURNING id"""
VM_ROWS = ("INSERT INTO vm_runtimes (vm_id) VALUES (%(vm)s)",
           "INSERT INTO vm_counters (vm_id) VALUES (%(vm)s)")
AUDIT = """
INSERT INTO admin_log (who, tenant_id, object, action, arguments, object_ids)
VALUES ('qvd-l7r', %(tenant)s, %(object)s, 'add', %(arguments)s, %(ids)s)"""


def create_user(db, cfg, tenant_id: int, login: str) -> int:
    """The user's id: created now (with its VM), or by a concurrent first login. A login the
    directory accepts but QVD's names do not (db/names.py: it becomes the VM's name too) is
    refused like a wrong password."""
    try:
        check_name("login", login)
    except BadName as exc:
        raise AuthFailed(f"{exc}; user not created") from None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with db.conn.transaction():
                return _create(db, cfg, tenant_id, login)
        except psycopg.errors.UniqueViolation as exc:  # an address taken meanwhile by the CLI
            if attempt == ATTEMPTS:
                raise AuthFailed(f"cannot create {login}: {exc.diag.message_primary}") from None
            log.info("creating user %s of tenant %d: %s; retrying", login, tenant_id,
                     exc.diag.message_primary)
    raise AssertionError("unreachable")


def _create(db, cfg, tenant_id: int, login: str) -> int:
    db.execute(TENANT_LOCK, {"tenant": tenant_id})
    existing = db.fetchone(EXISTING, {"tenant": tenant_id, "login": login})
    if existing is not None:  # a concurrent first login committed it (its VM too)
        return existing["id"]
    cap = cfg.get_int("auth.ldap.autocreate.max_per_hour")
    if db.fetchone(CREATED_LATELY, {"tenant": tenant_id})["n"] >= cap:
        log.warning("user %s of tenant %d not created: %d users were auto-created in the last "
                    "hour (auth.ldap.autocreate.max_per_hour)", login, tenant_id, cap)
        raise AuthFailed(f"auth.ldap.autocreate.max_per_hour ({cap}) reached in tenant "
                         f"{tenant_id}; user {login} not created")
    created = db.fetchone(USER, {"tenant": tenant_id, "login": login})
    if created is None:  # a concurrent first login committed it (its VM too)
        return db.fetchone(EXISTING, {"tenant": tenant_id, "login": login})["id"]
    user_id = created["id"]
    _audit(db, tenant_id, "user", user_id, {"login": login})
    osf_name = cfg.get("auth.ldap.autocreate.osf")
    vm_id = None
    if osf_name:
        osf = db.fetchone(OSF, {"tenant": tenant_id, "name": osf_name})
        if osf is None:  # rolls the user back too: the next login, once fixed, gets both
            raise AuthFailed(f"auth.ldap.autocreate.osf: no OSF '{osf_name}' in tenant "
                             f"{tenant_id}; user {login} not created")
        try:
            (ip,) = free_addresses(db, cfg.get("vm.network.ip.start"),
                                   cfg.get("vm.network.netmask"), 1)
        except AddressError as exc:
            raise AuthFailed(str(exc)) from None
        vm_id = db.fetchone(VM, {"name": login, "user": user_id, "osf": osf["id"],
                                 "ip": ip})["id"]
        for sql in VM_ROWS:
            db.execute(sql, {"vm": vm_id})
        _audit(db, tenant_id, "vm", vm_id, {"name": login, "user": login, "osf": osf_name,
                                            "ip": ip})
    log.info("user %d (%s, tenant %d) created at first LDAP login, vm %s", user_id, login,
             tenant_id, vm_id)
    return user_id


def _audit(db, tenant_id: int, obj: str, object_id: int, args: dict) -> None:
    db.execute(AUDIT, {"tenant": tenant_id, "object": obj, "ids": Jsonb([object_id]),
                       "arguments": Jsonb({"filters": {}, "args": args,
                                           "via": "auth.ldap.autocreate"})})
