"""The CLI's Context: the acting administrator comes from --admin (or is the local
superadmin), output is printed, a new password is read from the terminal or stdin."""
from __future__ import annotations

import ipaddress
import os
import sys

import click

from qvd.db.acl.actor import Actor
from qvd.db.ops.context import Context

from .acting import resolve_actor
from .output import print_rows


def ssh_client_address() -> str | None:
    """Where the person typing is, for the audit log: the far end of the SSH session that
    runs qvd-admin (SSH_CONNECTION), None on the node's own console."""
    far_end = os.environ.get("SSH_CONNECTION", "").split(" ")[0]
    try:
        return str(ipaddress.ip_address(far_end))
    except ValueError:
        return None


class Admin(Context):
    def __init__(self, login: str | None = None) -> None:
        super().__init__(source="cli", client_address=ssh_client_address(), local_files=True)
        self.login = login  # --admin NAME@TENANT, or None: the local superadmin
        self.fmt, self.quiet = "table", False

    def resolve_actor(self) -> Actor:
        """Resolved on first use (a login needs the database; the local superadmin does not)."""
        return resolve_actor(self, self.login)

    def say(self, line: str) -> None:
        print(line)

    def show(self, fields, rows, total=None) -> None:
        print_rows(fields, rows, self.fmt, self.quiet)

    def read_new_password(self) -> str:
        """From the terminal (asked twice) or, when stdin is not a terminal, its first line."""
        if sys.stdin.isatty():
            return click.prompt("New password", hide_input=True, confirmation_prompt=True)
        return sys.stdin.readline().rstrip("\r\n")
