"""Pools by directory group (issue 17): pool_groups names the LDAP groups entitled to a pool;
users.directory_groups keeps the groups the LDAP plugin read at the user's last password
login (so a token login, which asks the directory nothing, is entitled the same way).

Both are lower-case: LDAP compares group names without case. The L7R reads pool_groups and
writes a user's directory_groups.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

L7R = "qvd_l7r"


def upgrade() -> None:
    op.create_table(
        "pool_groups",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.CheckConstraint("name <> '' AND name = lower(name)",
                           name=op.f("ck_pool_groups_name_lower")),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_pool_groups_pool_id"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pool_id", "name", name=op.f("pk_pool_groups")))
    op.add_column("users", sa.Column("directory_groups", postgresql.ARRAY(sa.Text()),
                                     server_default="{}", nullable=False))
    op.execute(f"GRANT SELECT ON pool_groups TO {L7R}")
    op.execute(f"GRANT UPDATE (directory_groups) ON users TO {L7R}")


def downgrade() -> None:
    op.drop_column("users", "directory_groups")
    op.drop_table("pool_groups")
