"""Schema migrations with alembic; the scripts live in the qvd.migrations package."""
from __future__ import annotations

import os

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import qvd.migrations


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", os.path.dirname(qvd.migrations.__file__))
    cfg.attributes["engine"] = engine  # env.py connects through it
    return cfg


def head_revision(engine: Engine | None = None) -> str:
    """The newest revision the installed migration scripts know."""
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate, then write the ACL catalogue and built-in roles the code defines."""
    command.upgrade(alembic_config(engine), revision)
    if revision == "head":
        from qvd.db.acl import seed
        with Session(engine) as session, session.begin():
            seed.sync(session)
