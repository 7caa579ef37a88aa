"""qvd-admin db start|stop|status|init|upgrade: the embedded cluster, or the configured server."""
import click
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError

from qvd.db.engine import (configured_l7r_password, connection_params, describe,
                           embedded_cluster, enable_l7r_role, make_engine, uses_embedded)

from ..errors import UserError
from ..verbs import CONTEXT, object_group

group = object_group("db", "The database: the embedded PostgreSQL under $QVD_HOME/pg "
                           "unless database.host is set.")


def _command(name, help):
    def decorate(fn):
        def command(admin, debug):
            return fn(admin)
        command = click.option("--debug", is_flag=True, hidden=True)(click.pass_obj(command))
        return group.command(name, help=help, context_settings=CONTEXT)(command)
    return decorate


def ensure_embedded_running(admin) -> str:
    cluster = embedded_cluster(admin.cfg)
    created = not cluster.exists()
    cluster.create()
    started = cluster.start()
    state = "created and started" if created else "started" if started else "already running"
    return f"embedded PostgreSQL {state} ({cluster.root}, port {cluster.port})"


def create_database(admin) -> bool:
    """CREATE DATABASE when missing (through the server's `postgres` database)."""
    params = connection_params(admin.cfg)
    try:
        with make_engine(params).connect() as conn:
            conn.execute(text("SELECT 1"))
            return False
    except OperationalError as exc:
        if "does not exist" not in str(exc.orig):
            raise
    maintenance = make_engine(dict(params, dbname="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with maintenance.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{params["dbname"]}"'))
    except ProgrammingError as exc:
        raise UserError(f"cannot create database {params['dbname']}: "
                        f"{str(exc.orig).strip()}") from None
    return True


def enable_l7r_login(admin) -> None:
    password = configured_l7r_password(admin.cfg)
    if password is not None:
        enable_l7r_role(admin.engine, password)


def init_database(admin) -> list[str]:
    from qvd.db import migrate  # alembic is slow to import: only the db verbs need it
    said = []
    if uses_embedded(admin.cfg):
        said.append(ensure_embedded_running(admin))
    if create_database(admin):
        said.append(f"database {describe(connection_params(admin.cfg))} created")
    before = migrate.current_revision(admin.engine)
    migrate.upgrade(admin.engine)
    enable_l7r_login(admin)
    after = migrate.current_revision(admin.engine)
    said.append(f"schema at revision {after}" + (f" (was {before})" if before != after else ""))
    return said


@_command("start", "Start the embedded PostgreSQL (created on first use).")
def start(admin):
    if not uses_embedded(admin.cfg):
        raise UserError(f"database.host is set: {describe(connection_params(admin.cfg))} "
                        "is not managed by qvd-admin")
    click.echo(ensure_embedded_running(admin))


@_command("stop", "Stop the embedded PostgreSQL.")
def stop(admin):
    if not uses_embedded(admin.cfg):
        raise UserError(f"database.host is set: {describe(connection_params(admin.cfg))} "
                        "is not managed by qvd-admin")
    cluster = embedded_cluster(admin.cfg)
    click.echo("embedded PostgreSQL " + ("stopped" if cluster.stop() else "was not running"))


@_command("status", "Say where the database is, whether it answers and its schema revision; "
                    "exit 1 when it does not answer or needs an upgrade.")
def status(admin):
    from qvd.db import migrate
    if uses_embedded(admin.cfg):
        cluster = embedded_cluster(admin.cfg)
        if not cluster.running():
            raise UserError(f"embedded PostgreSQL under {cluster.root} is not running "
                            "(qvd-admin db start)")
        click.echo(f"embedded PostgreSQL running, pid {cluster.server_pid()}, "
                   f"port {cluster.port}, socket {cluster.socket_dir}")
    where = describe(connection_params(admin.cfg))
    current, head = migrate.current_revision(admin.engine), migrate.head_revision(admin.engine)
    click.echo(f"database {where}: schema revision {current or 'none'}, latest {head}")
    if current != head:
        raise UserError("the schema is not up to date: run 'qvd-admin db upgrade'")


@_command("init", "Create the database if needed and bring its schema to the latest revision.")
def init(admin):
    for line in init_database(admin):
        click.echo(line)


@_command("upgrade", "Bring the schema to the latest revision.")
def upgrade(admin):
    from qvd.db import migrate
    before = migrate.current_revision(admin.engine)
    migrate.upgrade(admin.engine)
    enable_l7r_login(admin)
    click.echo(f"schema at revision {migrate.current_revision(admin.engine)} (was {before})")
