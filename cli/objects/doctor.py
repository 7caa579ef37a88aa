"""qvd-admin doctor [run]: this node's prerequisites, one line per check with what to do
(the checks: hkd/doctor.py). Exit status 1 when a check blocks the node (FAIL)."""
import click

from ..errors import UserError
from ..verbs import CONTEXT, object_group

group = object_group("doctor", "Check this node's prerequisites: one line per check, with "
                               "what to do; exit 1 when something blocks the node.")
group.invoke_without_command, group.no_args_is_help = True, False


@group.command("run", context_settings=CONTEXT,
               help="Run every check (also what a bare 'qvd-admin doctor' does).")
@click.option("--clock-tolerance", type=click.FloatRange(min=0), default=1.0, show_default=True,
              metavar="SECONDS", help="Offset to the database's clock that is warned about.")
@click.option("--min-free-gib", type=click.FloatRange(min=0), default=2.0, show_default=True,
              metavar="GIB", help="Free space in path.storage.root below which it blocks.")
@click.option("--debug", is_flag=True, hidden=True)
@click.pass_obj
def run(admin, clock_tolerance, min_free_gib, debug):
    from qvd.hkd.doctor import Limits, run_checks  # not on every qvd-admin command's path
    results = run_checks(admin.cfg, Limits(clock_tolerance, min_free_gib))
    width = max(len(r.name) for r in results)
    for result in results:
        click.echo(f"{result.level:<4}  {result.name:<{width}}  {result.text}")
    blocking = [r.name for r in results if r.blocks]
    if blocking:
        raise UserError(f"{len(blocking)} check(s) block this node: {', '.join(blocking)}")


def _bare(ctx: click.Context) -> None:
    """`qvd-admin doctor` alone runs the checks, through the same guarded command."""
    if ctx.invoked_subcommand is None:
        sub = run.make_context("run", [], parent=ctx)
        with sub:
            run.invoke(sub)


group.callback = click.pass_context(_bare)
