"""qvd-admin: `qvd-admin <object> <verb> [-f key=value,...] [-t tenant] [key=value ...]`.

Exit status: 0 done, 1 the operation failed, 2 the command line was wrong. Errors are one line
on stderr; --debug (or QVD_DEBUG=1) adds the traceback.
"""
from __future__ import annotations

import os
import sys
import traceback

import click
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from qvd.db.config import ConfigError
from qvd.db.embedded import EmbeddedError
from qvd.db.images import TagError

from qvd.db.acl.check import AccessDenied
from qvd.db.ops.errors import DomainError, describe_db_error

from .context import Admin
from .objects import ALL_GROUPS
from .verbs import CONTEXT

PROG = "qvd-admin"
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


@click.group(context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("--admin", "login", metavar="NAME@TENANT",
              help="Act as this administrator, with its roles' ACLs and only its tenant "
                   "(password: QVD_ADMIN_PASSWORD or a prompt; TOTP code: QVD_ADMIN_TOTP or "
                   "a prompt). Without it: the local superadmin, recorded as local:<unix user>.")
@click.pass_context
def cli(ctx, debug, login):
    """Administer a QVD cluster: tenants, users, OSFs, DIs, VMs, hosts and configuration."""
    if ctx.obj is None:
        ctx.obj = Admin()
    ctx.obj.login = login


for _group in ALL_GROUPS:
    cli.add_command(_group)


def _fail(message: str, status: int) -> int:
    for line in message.splitlines() or [""]:
        click.echo(f"{PROG}: {line}", err=True)
    return status


def run(argv: list[str]) -> int:
    debug = "--debug" in argv or os.environ.get("QVD_DEBUG") == "1"
    admin = Admin()

    def failed(message: str) -> int:
        admin.record_failure(message)
        return _fail(message, 1)

    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False, obj=admin)
        return result if isinstance(result, int) else 0
    except NO_ARGS_IS_HELP as exc:  # `qvd-admin vm` alone: show what can follow
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return 2
    except click.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx and exc.ctx.command_path != PROG else ""
        return _fail(f"{where}{exc.format_message()} (see --help)", 2)
    except click.Abort:
        return _fail("aborted", 1)
    except AccessDenied as exc:  # recorded as refused by Admin.authorize
        return _fail(str(exc), 1)
    except (DomainError, ConfigError, EmbeddedError, TagError) as exc:
        if debug:
            traceback.print_exc()
        return failed(str(exc))
    except OperationalError as exc:
        if debug:
            traceback.print_exc()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return _fail(f"cannot use the database: {reason}", 1)
    except (IntegrityError, DBAPIError) as exc:
        if debug:
            traceback.print_exc()
        return failed(describe_db_error(exc) or str(exc.orig or exc).strip().splitlines()[0])
    except click.ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback only on --debug
        if debug:
            traceback.print_exc()
        return _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
                     1)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
