"""The shape every `qvd-admin <object> <verb>` command shares, and the one place where every
command is checked against the acting administrator's ACLs before it runs."""
from __future__ import annotations

import functools

import click

from .context import Call
from .grammar import parse_filters, parse_pairs

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
        return super().invoke(ctx)


def verb(group: click.Group, name: str, help: str, lists: bool = False, words: bool = False):
    """Register fn(admin, call) as `<group> <name>` with -f, -t, key=value args and,
    for listing verbs, --json/--csv/-q. With words=True the arguments are bare names
    (`propget key1 key2`), kept as dict keys."""
    def decorate(fn):
        @click.argument("args", nargs=-1)
        @click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE,...",
                      help="Choose objects; * and ? are wildcards.")
        @click.option("-t", "--tenant", help="Tenant name.")
        @click.option("--debug", is_flag=True, hidden=True)
        @functools.wraps(fn)
        def command(filters, tenant, args, fmt="table", quiet=False, debug=False):
            admin = click.get_current_context().obj
            call = Call(filters=parse_filters(filters), tenant=tenant,
                        args=(dict.fromkeys(a.rstrip("=") for a in args) if words
                              else parse_pairs(args, "the arguments")), fmt=fmt, quiet=quiet,
                        only_tenant=admin.actor.visible_tenant)
            return fn(admin, call)
        if lists:
            command = click.option("--json", "fmt", flag_value="json", help="JSON for scripts.")(
                click.option("--csv", "fmt", flag_value="csv", help="CSV for scripts.")(
                    click.option("-q", "--quiet", is_flag=True, help="No header line.")(command)))
        return group.command(name, help=help, context_settings=CONTEXT)(command)
    return decorate


def object_group(name: str, help: str) -> click.Group:
    group = click.Group(name, help=help, context_settings=CONTEXT)
    group.command_class = GuardedCommand
    return group
