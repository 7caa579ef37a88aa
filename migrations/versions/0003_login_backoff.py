"""Failed-login back-off: auth_failures, host_counters.auth_throttled

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_failures",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_failures")))
    op.add_column("host_counters", sa.Column("auth_throttled", sa.BigInteger(),
                                             server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    op.drop_column("host_counters", "auth_throttled")
    op.drop_table("auth_failures")
