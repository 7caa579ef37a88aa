"""Who runs this qvd-admin: the local superadmin (`local:<unix user>`), or with
`--admin NAME@TENANT` that administrator, whose password comes from QVD_ADMIN_PASSWORD or a
prompt and whose TOTP code, when it has a secret, from QVD_ADMIN_TOTP or a prompt."""
from __future__ import annotations

import os
import sys

import click

from qvd.db import audit
from qvd.db.acl.actor import Actor, local_actor
from qvd.db.acl.login import LoginRefused, authenticate

from .errors import UserError


def _secret(variable: str, prompt: str) -> str | None:
    value = os.environ.get(variable)
    if value is not None:
        return value
    if sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, default="", show_default=False)
    return None


def resolve_actor(admin, login: str | None) -> Actor:
    if login is None:
        return local_actor()
    password = _secret("QVD_ADMIN_PASSWORD", f"Password of {login}")
    if password is None:
        raise UserError(f"--admin {login}: give the password in QVD_ADMIN_PASSWORD "
                        "(no terminal to ask on)")

    def ask_totp() -> str | None:
        code = _secret("QVD_ADMIN_TOTP", f"TOTP code of {login}")
        if code is None:
            raise UserError(f"--admin {login}: this administrator has TOTP; give the code in "
                            "QVD_ADMIN_TOTP (no terminal to ask on)")
        return code

    try:
        with admin.session() as s:
            return authenticate(s, login, password, ask_totp)
    except LoginRefused as exc:
        with admin.session() as s:  # the refusal is recorded, the password never
            audit.record(s, None, "admin", "login", {"login": login}, status="refused",
                         error=exc.reason, who=login)
        raise UserError(str(exc)) from None
