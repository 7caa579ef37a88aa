"""Administrators who log in (TOTP secret, creation time), denials of whole roles, and an audit
log that says who (an administrator row), from where, through what, and how it ended

The ACL catalogue and the built-in roles are not rows of this migration: qvd.db.acl.seed
writes them after every upgrade (qvd.db.migrate), from the one catalogue in the code. The
L7R's role qvd_l7r gets nothing new: it needs no administrator, role or ACL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("administrators", sa.Column("totp_secret", sa.Text(), nullable=True))
    op.add_column("administrators", sa.Column("created_at", sa.DateTime(timezone=True),
                                              server_default=sa.text("now()"), nullable=False))
    op.create_check_constraint(op.f("ck_administrators_name_not_empty"), "administrators",
                               "name <> ''")
    op.add_column("role_role_relations", sa.Column("positive", sa.Boolean(),
                                                   server_default=sa.text("true"),
                                                   nullable=False))
    op.add_column("admin_log", sa.Column("administrator_id", sa.Integer(), nullable=True))
    op.create_foreign_key(op.f("fk_admin_log_administrator_id"), "admin_log", "administrators",
                          ["administrator_id"], ["id"], ondelete="SET NULL")
    op.add_column("admin_log", sa.Column("source", sa.Text(), nullable=True))
    op.add_column("admin_log", sa.Column("client_address", postgresql.INET(), nullable=True))
    op.add_column("admin_log", sa.Column("status", sa.Text(), server_default=sa.text("'ok'"),
                                         nullable=False))
    op.add_column("admin_log", sa.Column("error", sa.Text(), nullable=True))
    op.create_check_constraint(op.f("ck_admin_log_source_known"), "admin_log",
                               "source IN ('cli', 'api', 'wat', 'l7r')")
    op.create_check_constraint(op.f("ck_admin_log_status_known"), "admin_log",
                               "status IN ('ok', 'refused', 'failed')")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_admin_log_status_known"), "admin_log", type_="check")
    op.drop_constraint(op.f("ck_admin_log_source_known"), "admin_log", type_="check")
    for column in ("error", "status", "client_address", "source"):
        op.drop_column("admin_log", column)
    op.drop_constraint(op.f("fk_admin_log_administrator_id"), "admin_log", type_="foreignkey")
    op.drop_column("admin_log", "administrator_id")
    op.drop_column("role_role_relations", "positive")
    op.drop_constraint(op.f("ck_administrators_name_not_empty"), "administrators", type_="check")
    op.drop_column("administrators", "created_at")
    op.drop_column("administrators", "totp_secret")
