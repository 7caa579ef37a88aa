"""Built-in roles against operations: what each role may do is computed from the role
definitions (db/acl/roles.py) and checked against the database's computation, the check
every command passes, and the real CLI run with --admin."""
import click
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from qvd.cli.main import cli
from qvd.db.acl.actor import Actor
from qvd.db.acl.check import AccessDenied, effective_acls, require
from qvd.db.acl.names import CLUSTER_WIDE
from qvd.db.acl.operations import LOCAL, OPERATIONS
from qvd.db.acl.roles import BUILTIN_ROLES, definition_acls
from qvd.db.models import SUPERTENANT, Role

from admins import make_admin

VISIBLE = [name for name, role in BUILTIN_ROLES.items() if not role.internal]


def expected(role: str, operation: str, keys=(), supertenant=False) -> bool:
    need = OPERATIONS[operation]
    if need is LOCAL:
        return False
    held = definition_acls(role)
    return all(acl in held and (supertenant or acl not in CLUSTER_WIDE)
               for acl in need.for_arguments(keys))


def allowed(actor: Actor, operation: str, keys=()) -> bool:
    try:
        require(actor, operation, keys)
        return True
    except AccessDenied:
        return False


def test_the_visible_roles_are_qvds():
    assert set(VISIBLE) == {"Root", "Operator L1", "Operator L2", "Operator L3"}


def test_the_database_computes_what_the_definitions_say(qvd):
    with Session(qvd.engine) as s:
        ids = dict(s.execute(select(Role.name, Role.id)).tuples().all())
        for name in BUILTIN_ROLES:
            assert effective_acls(s, [ids[name]]) == definition_acls(name), name


@pytest.mark.parametrize("role", VISIBLE)
def test_every_operation_against_each_builtin_role(qvd, role):
    with Session(qvd.engine) as s:
        role_id = s.scalar(select(Role.id).where(Role.name == role))
        acls = effective_acls(s, [role_id])
    tenant_admin = Actor("t@acme", 2, "acme", administrator_id=1, acls=acls)
    super_admin = Actor("s@*", SUPERTENANT, "*", administrator_id=2, acls=acls)
    for operation, need in OPERATIONS.items():
        keys = list(need.by_argument) if need else []
        for actor, supertenant in ((tenant_admin, False), (super_admin, True)):
            assert allowed(actor, operation, keys) == expected(role, operation, keys,
                                                               supertenant), (operation, actor)
    if role != "Root":  # a role is more than nothing and less than everything
        assert 0 < len(acls) < len(definition_acls("Root"))


# Representative operations, run for real: (command line, argument keys it gives).
SAMPLE = [
    (("vm", "list"), ()),
    (("vm", "block", "-f", "name=desk"), ()),
    (("vm", "edit", "-f", "name=desk", "description=edited"), ("description",)),
    (("vm", "edit", "-f", "name=desk", "name=desk"), ("name",)),
    (("user", "add", "login=u-{n}"), ("login",)),
    (("host", "list"), ()),
    (("admin", "list"), ()),
    (("config", "ssl", "--cert", "c.pem", "--key", "k.pem"), ()),  # not a verb(): guarded too
    (("db", "status"), ()),
]


def test_the_cli_refuses_what_each_role_lacks(demo):
    for n, role in enumerate(VISIBLE):
        run = make_admin(demo, f"a{n}@acme", role)
        for args, keys in SAMPLE:
            args = tuple(a.format(n=n) for a in args)
            operation = " ".join(args[:2])
            result = run.cli(*args)
            if expected(role, operation, keys):
                assert result.returncode == 0, (role, args, result.stderr)
            elif OPERATIONS[operation] is LOCAL:
                assert result.returncode == 1 and "run it without --admin" in result.stderr
            else:
                assert result.returncode == 1 and "may not run" in result.stderr, (role, args)
                missing = [acl for acl in OPERATIONS[operation].for_arguments(keys)
                           if acl not in definition_acls(role) or acl in CLUSTER_WIDE][0]
                assert f"needs the ACL {missing}" in result.stderr


def _commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))
        else:
            yield " ".join(path + (name,))


def test_every_command_is_in_the_catalogue():
    assert sorted(_commands(cli)) == sorted(OPERATIONS)
