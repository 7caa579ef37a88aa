"""The VM network across nodes (issue 20): hosts.vm_address, each node's own address on the
VM network (its bridge's address, the gateway of its VMs), unique so that no two nodes put
the same address on the shared network. NULL keeps the single-node behaviour (the network's
first address, or vm.network.gateway).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("vm_address", postgresql.INET(), nullable=True))
    op.create_unique_constraint(op.f("uq_hosts_vm_address"), "hosts", ["vm_address"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_hosts_vm_address"), "hosts", type_="unique")
    op.drop_column("hosts", "vm_address")
