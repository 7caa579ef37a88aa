"""An administrator's login: `name@tenant` (`name@*` for the supertenant), an Argon2id
password, a TOTP code when the administrator has a secret; blocked administrators and
administrators of blocked tenants are refused once their password has been proved."""
from __future__ import annotations

from collections.abc import Callable

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from qvd.db.models import Administrator, Tenant
from qvd.db.passwords import verify_password

from .actor import Actor
from .check import administrator_acls

WRONG = "the administrator's name, password or TOTP code is wrong"


class LoginRefused(Exception):
    """str(): what the person is told; `reason`: what the audit log records."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def split_admin_login(login: str) -> tuple[str, str]:
    """name@tenant; without a tenant, the default tenant (as users' logins)."""
    name, at, tenant = login.strip().rpartition("@")
    return (name, tenant) if at else (tenant, "default")


def find_administrator(session: Session, login: str) -> tuple[Administrator, Tenant] | None:
    name, tenant = split_admin_login(login)
    row = session.execute(select(Administrator, Tenant)
                          .join(Tenant, Tenant.id == Administrator.tenant_id)
                          .where(Administrator.name == name, Tenant.name == tenant)).first()
    return tuple(row) if row else None


def verify_totp(secret: str, code: str | None) -> bool:
    # One step either side: a code typed as the 30 s window turns still counts.
    return bool(code) and pyotp.TOTP(secret).verify(code.strip(), valid_window=1)


def authenticate(session: Session, login: str, password: str,
                 ask_totp: Callable[[], str | None]) -> Actor:
    found = find_administrator(session, login)
    if found is None:
        raise LoginRefused(WRONG, "no such administrator")
    admin, tenant = found
    if not verify_password(password, admin.password):
        raise LoginRefused(WRONG, "wrong password")
    if admin.totp_secret and not verify_totp(admin.totp_secret, ask_totp()):
        raise LoginRefused(WRONG, "wrong TOTP code")
    if admin.blocked:
        raise LoginRefused(f"administrator {admin.name}@{tenant.name} is blocked")
    if tenant.blocked:
        raise LoginRefused(f"tenant '{tenant.name}' is blocked")
    return Actor(name=f"{admin.name}@{tenant.name}", tenant_id=tenant.id,
                 tenant_name=tenant.name, administrator_id=admin.id,
                 acls=administrator_acls(session, admin.id))
