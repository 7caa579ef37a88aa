"""Errors the CLI reports as one line: the domain layer's (exit 1; BadRequest exit 2) and
its own usage errors (exit 2)."""
from __future__ import annotations

import click

from qvd.db.ops.errors import DomainError

UserError = DomainError  # what the CLI's own commands (db, system, config ssl) raise


def usage(message: str) -> click.UsageError:
    return click.UsageError(message)
