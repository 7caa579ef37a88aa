"""An administrator's login: `name@tenant` (`name@*` for the supertenant), an Argon2id
password, a TOTP code when the administrator has a secret; blocked administrators and
administrators of blocked tenants are refused once their password has been proved."""
from __future__ import annotations

from collections.abc import Callable

import hmac
import time
from datetime import datetime, timezone

import pyotp
from sqlalchemy import select, update
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


def totp_step(secret: str, code: str | None, now: float | None = None) -> int | None:
    """The 30 s step the code belongs to, or None when it is wrong. One step either side: a
    code typed as the window turns still counts."""
    if not code:
        return None
    totp, moment = pyotp.TOTP(secret), time.time() if now is None else now
    current = totp.timecode(datetime.fromtimestamp(moment, timezone.utc))
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code.strip()):
            return step
    return None


def _spend_totp(session: Session, admin: Administrator, code: str | None) -> None:
    """Accept the code once: its step must be later than the last one accepted, and the
    conditional UPDATE makes two logins racing with one code let only one through."""
    step = totp_step(admin.totp_secret, code)
    if step is None:
        raise LoginRefused(WRONG, "wrong TOTP code")
    spent = session.execute(
        update(Administrator)
        .where(Administrator.id == admin.id, (Administrator.totp_last_step.is_(None))
               | (Administrator.totp_last_step < step))
        .values(totp_last_step=step).returning(Administrator.id)).first()
    if spent is None:
        raise LoginRefused(WRONG, "TOTP code used already")


def authenticate(session: Session, login: str, password: str,
                 ask_totp: Callable[[], str | None]) -> Actor:
    found = find_administrator(session, login)
    if found is None:
        raise LoginRefused(WRONG, "no such administrator")
    admin, tenant = found
    if not verify_password(password, admin.password):
        raise LoginRefused(WRONG, "wrong password")
    if admin.totp_secret:
        _spend_totp(session, admin, ask_totp())
    if admin.blocked:
        raise LoginRefused(f"administrator {admin.name}@{tenant.name} is blocked")
    if tenant.blocked:
        raise LoginRefused(f"tenant '{tenant.name}' is blocked")
    return actor_of(session, admin, tenant)


def actor_of(session: Session, admin: Administrator, tenant: Tenant) -> Actor:
    """The administrator as it acts now: its roles' ACLs read afresh."""
    return Actor(name=f"{admin.name}@{tenant.name}", tenant_id=tenant.id,
                 tenant_name=tenant.name, administrator_id=admin.id,
                 acls=administrator_acls(session, admin.id))
