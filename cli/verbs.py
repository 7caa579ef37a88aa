"""The shape every `qvd-admin <object> <verb>` command shares."""
from __future__ import annotations

import functools

import click

from .context import Call
from .grammar import parse_filters, parse_pairs

CONTEXT = {"help_option_names": ["-h", "--help"]}


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
            call = Call(filters=parse_filters(filters), tenant=tenant,
                        args=(dict.fromkeys(a.rstrip("=") for a in args) if words
                              else parse_pairs(args, "the arguments")), fmt=fmt, quiet=quiet)
            return fn(click.get_current_context().obj, call)
        if lists:
            command = click.option("--json", "fmt", flag_value="json", help="JSON for scripts.")(
                click.option("--csv", "fmt", flag_value="csv", help="CSV for scripts.")(
                    click.option("-q", "--quiet", is_flag=True, help="No header line.")(command)))
        return group.command(name, help=help, context_settings=CONTEXT)(command)
    return decorate


def object_group(name: str, help: str) -> click.Group:
    return click.Group(name, help=help, context_settings=CONTEXT)
