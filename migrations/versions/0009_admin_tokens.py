"""qvd-api's bearer tokens for administrators (only their SHA-256 is stored)

The L7R's role qvd_l7r gets nothing: it never sees administrators.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("administrator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_address", postgresql.INET(), nullable=True),
        sa.ForeignKeyConstraint(["administrator_id"], ["administrators.id"],
                                name=op.f("fk_admin_tokens_administrator_id"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_admin_tokens")))
    op.create_index(op.f("ix_admin_tokens_administrator_id"), "admin_tokens",
                    ["administrator_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_admin_tokens_administrator_id"), table_name="admin_tokens")
    op.drop_table("admin_tokens")
