"""Desktop isolation: the agent's per-start secret, trusted DIs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vm_runtimes", sa.Column("vma_secret", sa.Text(), nullable=True))
    op.add_column("dis", sa.Column("trusted", sa.Boolean(), server_default=sa.text("false"),
                                   nullable=False))


def downgrade() -> None:
    op.drop_column("dis", "trusted")
    op.drop_column("vm_runtimes", "vma_secret")
