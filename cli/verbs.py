"""qvd-admin's commands, built from the domain layer's REGISTRY: `qvd-admin <object> <verb>
[-f key=value,...] [-t tenant] [key=value ...]`, each checked against the acting
administrator's ACLs before it runs."""
from __future__ import annotations

import click

from qvd.db.ops import OBJECTS, REGISTRY
from qvd.db.ops.context import Request
from qvd.db.ops.errors import BadRequest
from qvd.db.ops.grammar import parse_filters, parse_pairs
from qvd.db.ops.registry import Operation

CONTEXT = {"help_option_names": ["-h", "--help"]}


def operation_name(ctx: click.Context) -> str:
    """`vm start`, `user token del`: the command path without the program's name."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(reversed(names))


def attempted(params: dict) -> dict:
    """What the command line asked, for the audit log, before anything is validated."""
    def pairs(items):
        return dict(item.partition("=")[::2] for item in items)
    arguments = {"filters": pairs(p for f in params.get("filters", ()) for p in f.split(",")
                                  if p.strip()),
                 "args": pairs(params.get("args", ()))}
    arguments["args"].update({key: value for key, value in params.items()
                              if key not in ("filters", "args", "tenant", "debug", "fmt",
                                             "quiet") and value is not None})
    if params.get("tenant"):
        arguments["tenant"] = params["tenant"]
    return arguments


class GuardedCommand(click.Command):
    """Every qvd-admin command: authorized (db/acl/operations.py names what it needs) before
    its callback runs."""

    def invoke(self, ctx: click.Context):
        ctx.obj.authorize(operation_name(ctx), attempted(ctx.params))
        try:
            return super().invoke(ctx)
        except BadRequest as exc:  # the command line was wrong: exit 2, with the command's name
            raise click.UsageError(str(exc), ctx=ctx) from None


def _command(op: Operation) -> click.Command:
    """-f, -t, key=value args and, for listings, --json/--csv/-q. With op.words the
    arguments are bare names (`config get key1 key2`), kept as dict keys."""
    @click.argument("args", nargs=-1)
    @click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE,...",
                  help="Choose objects; * and ? are wildcards.")
    @click.option("-t", "--tenant", help="Tenant name.")
    @click.option("--debug", is_flag=True, hidden=True)
    def command(filters, tenant, args, fmt="table", quiet=False, debug=False):
        admin = click.get_current_context().obj
        admin.fmt, admin.quiet = fmt, quiet
        request = admin.prepare(Request(
            filters=parse_filters(filters), tenant=tenant,
            args=(dict.fromkeys(a.rstrip("=") for a in args) if op.words
                  else parse_pairs(args, "the arguments"))))
        return op.run(admin, request)
    if op.lists:
        command = click.option("--json", "fmt", flag_value="json", help="JSON for scripts.")(
            click.option("--csv", "fmt", flag_value="csv", help="CSV for scripts.")(
                click.option("-q", "--quiet", is_flag=True, help="No header line.")(command)))
    return click.command(op.name.rsplit(" ", 1)[1], cls=GuardedCommand, help=op.help,
                         context_settings=CONTEXT)(command)


def object_group(name: str, help: str) -> click.Group:
    group = click.Group(name, help=help, context_settings=CONTEXT)
    group.command_class = GuardedCommand
    return group


def operation_groups() -> dict[str, click.Group]:
    """One group per object of the domain layer ("user token" nests under "user")."""
    groups: dict[str, click.Group] = {}
    for kind, help in OBJECTS.items():
        parent, _, name = kind.rpartition(" ")
        groups[kind] = object_group(name, help)
        if parent:
            groups[parent].add_command(groups[kind])
    for op in REGISTRY.values():
        groups[op.name.rsplit(" ", 1)[0]].add_command(_command(op))
    return {kind: group for kind, group in groups.items() if " " not in kind}
