"""alembic environment: the engine comes from qvd.db.migrate (no alembic.ini needed)."""
from alembic import context

from qvd.db.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      compare_type=True, compare_server_default=True)
    with context.begin_transaction():
        context.run_migrations()
