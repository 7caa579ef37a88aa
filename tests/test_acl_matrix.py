"""Built-in roles against operations: what each role may do is computed from the role
definitions (db/acl/roles.py) and checked against the database's computation, the check
every command passes, and the real CLI run with --admin."""
from contextlib import nullcontext

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

from admins import AdminRun, make_admin
from cli_inprocess import cheap_password_hashes

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


def _refused_attempts(env) -> list[str]:
    """The audit log's records of refused attempts (their errors), removed, as
    take_failed_changes does for failed ones."""
    return [error for error, in env.sql(
        "DELETE FROM admin_log WHERE status = 'refused' RETURNING error")]


def test_the_cli_refuses_what_each_role_lacks(demo):
    """Each pair runs qvd-admin's entry in this process (tests/cli_inprocess.py: no
    interpreter start and imports each time), logged in with --admin as each run is, but the
    first pair of each outcome (done, refused for an ACL, refused as the node's own) runs the
    real qvd-admin. The first role's administrator has a password hash of the real cost; the
    others' are cheap to check (cheap_password_hashes), the check was most of a run's time.
    A refusal is one line, no traceback, and changes nothing but the audit log's record."""
    binary_ran = set()
    for n, role in enumerate(VISIBLE):
        with cheap_password_hashes() if n else nullcontext():
            login = make_admin(demo, f"a{n}@acme", role).login
        state = demo.snapshot()
        for args, keys in SAMPLE:
            args = tuple(a.format(n=n) for a in args)
            operation = " ".join(args[:2])
            if expected(role, operation, keys):
                outcome = "done"
            elif OPERATIONS[operation] is LOCAL:
                outcome = "local"
            else:
                outcome = "refused"
            env = demo if outcome in binary_ran else demo.real
            binary_ran.add(outcome)
            result = AdminRun(env, login).cli(*args)
            where = (role, args, env is not demo, result.stderr)
            assert "Traceback" not in result.stderr, where
            if outcome == "done":
                assert result.returncode == 0, where
                state = demo.snapshot()
                continue
            assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, where
            if outcome == "local":
                assert "run it without --admin" in result.stderr, where
            else:
                assert "may not run" in result.stderr, where
                missing = [acl for acl in OPERATIONS[operation].for_arguments(keys)
                           if acl not in definition_acls(role) or acl in CLUSTER_WIDE][0]
                assert f"needs the ACL {missing}" in result.stderr, where
            assert [f"qvd-admin: {error}" for error in _refused_attempts(demo)] == [
                result.stderr.strip()], where
            assert demo.snapshot() == state, where
    assert binary_ran == {"done", "local", "refused"}


def _commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))
        else:
            yield " ".join(path + (name,))


def test_every_command_is_in_the_catalogue():
    assert sorted(_commands(cli)) == sorted(OPERATIONS)
