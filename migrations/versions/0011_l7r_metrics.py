"""The L7R's counters for qvd-hkd's metrics: takeovers, tunnel bytes each way and session
seconds on host_counters; logins checked by plugin (host_auth_counters); ended sessions by
reason class and duration bucket (host_session_ends: qvd-hkd builds the histogram from it)

All are cumulative per node and written by the L7R's children (a request's counters, a
session's end), so the L7R's role qvd_l7r may insert and update the two new tables.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = {"takeovers": sa.BigInteger(), "bytes_from_client": sa.BigInteger(),
           "bytes_to_client": sa.BigInteger(), "session_seconds": sa.Float()}


def _host_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], ondelete="CASCADE",
                                   name=op.f(f"fk_{table}_host_id"))


def upgrade() -> None:
    for name, kind in COLUMNS.items():
        op.add_column("host_counters", sa.Column(name, kind, server_default=sa.text("0"),
                                                 nullable=False))
    op.create_table(
        "host_auth_counters",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("plugin", sa.Text(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("failures", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _host_fk("host_auth_counters"),
        sa.PrimaryKeyConstraint("host_id", "plugin", name=op.f("pk_host_auth_counters")))
    op.create_table(
        "host_session_ends",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("le", sa.Float(), nullable=False),  # the bucket's upper bound, seconds
        sa.Column("sessions", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _host_fk("host_session_ends"),
        sa.PrimaryKeyConstraint("host_id", "reason", "le", name=op.f("pk_host_session_ends")))
    op.execute("GRANT SELECT, INSERT, UPDATE ON host_auth_counters, host_session_ends "
               "TO qvd_l7r")


def downgrade() -> None:
    op.drop_table("host_session_ends")
    op.drop_table("host_auth_counters")
    for name in reversed(COLUMNS):
        op.drop_column("host_counters", name)
