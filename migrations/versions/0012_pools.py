"""Desktop pools (issue 17): pools and pool_members; a VM belongs to a tenant of its own
(vms.tenant_id, from its user until now), may have no user yet (a pool's spare) and may
belong to a pool

The WAT's triggers (0010) took a VM's tenant from its user: they take vms.tenant_id now. A
VM inserted without a tenant (scripts, the L7R's LDAP autocreate) gets its user's.
qvd_pools (payload: the pool's id) wakes the pool keepers of every node when a pool's sizes
change, one of its VMs comes, goes, is given to a user or changes state, or a DI tag it
uses moves.
vms.discard_home: a throw-away pool VM given back after its user left; the node that
starts it next discards its home (and overlay) first.
The L7R hands pool VMs out: it may read pools and members, give a VM its user, count the
names it makes and say why it refused (last_reason).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TRIGGERS = r"""
CREATE FUNCTION qvd_vm_tenant_of_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tenant_id IS NULL THEN
        NEW.tenant_id := (SELECT tenant_id FROM users WHERE id = NEW.user_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER qvd_vm_tenant_of_user BEFORE INSERT ON vms
    FOR EACH ROW EXECUTE FUNCTION qvd_vm_tenant_of_user();

CREATE OR REPLACE FUNCTION qvd_vm_tenant(vm bigint) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT tenant_id FROM vms WHERE id = vm
$$;

CREATE OR REPLACE FUNCTION qvd_changes_vm() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM qvd_change('vm', changed.id, changed.tenant_id, '{}', lower(TG_OP));
    RETURN NULL;
END $$;

CREATE FUNCTION qvd_pools_pool() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- last_reason and the name counter are the keepers' and L7Rs' own writes: no wake-up
    IF TG_OP = 'INSERT' OR (NEW.min, NEW.max, NEW.spare, NEW.blocked, NEW.osf_id, NEW.di_tag)
            IS DISTINCT FROM (OLD.min, OLD.max, OLD.spare, OLD.blocked, OLD.osf_id, OLD.di_tag)
    THEN
        PERFORM pg_notify('qvd_pools', NEW.id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_pools_pool AFTER INSERT OR UPDATE ON pools
    FOR EACH ROW EXECUTE FUNCTION qvd_pools_pool();

CREATE FUNCTION qvd_pools_vm() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    IF changed.pool_id IS NOT NULL
       AND (TG_OP <> 'UPDATE' OR NEW.user_id IS DISTINCT FROM OLD.user_id) THEN
        PERFORM pg_notify('qvd_pools', changed.pool_id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_pools_vm AFTER INSERT OR UPDATE OR DELETE ON vms
    FOR EACH ROW EXECUTE FUNCTION qvd_pools_vm();

CREATE FUNCTION qvd_pools_vm_runtime() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pool bigint;
BEGIN
    IF NEW.vm_state IS DISTINCT FROM OLD.vm_state THEN
        SELECT pool_id INTO pool FROM vms WHERE id = NEW.vm_id;
        IF pool IS NOT NULL THEN
            PERFORM pg_notify('qvd_pools', pool::text);
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_pools_vm_runtime AFTER UPDATE ON vm_runtimes
    FOR EACH ROW EXECUTE FUNCTION qvd_pools_vm_runtime();

-- a tag moved to another DI: the pools using it roll out to it
CREATE FUNCTION qvd_pools_di_tag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('qvd_pools', p.id::text) FROM pools p
    WHERE p.osf_id = NEW.osf_id AND p.di_tag = NEW.tag;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_pools_di_tag AFTER INSERT OR UPDATE ON di_tags
    FOR EACH ROW EXECUTE FUNCTION qvd_pools_di_tag();
"""

DROP_TRIGGERS = """
DROP TRIGGER qvd_pools_di_tag ON di_tags;
DROP FUNCTION qvd_pools_di_tag();
DROP TRIGGER qvd_pools_vm_runtime ON vm_runtimes;
DROP FUNCTION qvd_pools_vm_runtime();
DROP TRIGGER qvd_pools_vm ON vms;
DROP FUNCTION qvd_pools_vm();
DROP TRIGGER qvd_pools_pool ON pools;
DROP FUNCTION qvd_pools_pool();
DROP TRIGGER qvd_vm_tenant_of_user ON vms;
DROP FUNCTION qvd_vm_tenant_of_user();
CREATE OR REPLACE FUNCTION qvd_vm_tenant(vm bigint) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT qvd_user_tenant(user_id) FROM vms WHERE id = vm
$$;
CREATE OR REPLACE FUNCTION qvd_changes_vm() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM qvd_change('vm', changed.id, qvd_user_tenant(changed.user_id), '{}',
                       lower(TG_OP));
    RETURN NULL;
END $$;
"""

L7R = "qvd_l7r"


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("osf_id", sa.Integer(), nullable=False),
        sa.Column("di_tag", sa.Text(), server_default="default", nullable=False),
        sa.Column("min", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max", sa.Integer(), nullable=False),
        sa.Column("spare", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("assignment", sa.Text(), server_default="persistent", nullable=False),
        sa.Column("vm_names", sa.Text(), server_default="{pool}-{n}", nullable=False),
        sa.Column("vms_made", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("last_reason", sa.Text(), nullable=True),
        sa.Column("last_reason_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("name <> ''", name=op.f("ck_pools_name_not_empty")),
        sa.CheckConstraint("assignment IN ('persistent', 'throwaway')",
                           name=op.f("ck_pools_assignment")),
        sa.CheckConstraint("min >= 0 AND spare >= 0 AND max >= 1 AND min <= max "
                           "AND spare <= max", name=op.f("ck_pools_sizes")),
        sa.ForeignKeyConstraint(["osf_id"], ["osfs.id"], name=op.f("fk_pools_osf_id"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_pools_tenant_id"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_pools_tenant_id_name")))
    op.create_table(
        "pool_members",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_pool_members_pool_id"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_pool_members_user_id"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pool_id", "user_id", name=op.f("pk_pool_members")))
    op.create_index(op.f("ix_pool_members_user_id"), "pool_members", ["user_id"])

    op.add_column("vms", sa.Column("tenant_id", sa.Integer(), nullable=True))
    op.execute("UPDATE vms SET tenant_id = u.tenant_id FROM users u WHERE u.id = vms.user_id")
    op.alter_column("vms", "tenant_id", nullable=False)
    op.create_foreign_key(op.f("fk_vms_tenant_id"), "vms", "tenants", ["tenant_id"], ["id"],
                          ondelete="RESTRICT")
    op.create_index(op.f("ix_vms_tenant_id"), "vms", ["tenant_id"])
    op.add_column("vms", sa.Column("pool_id", sa.Integer(), nullable=True))
    op.add_column("vms", sa.Column("discard_home", sa.Boolean(), server_default=sa.text("false"),
                                   nullable=False))
    op.create_foreign_key(op.f("fk_vms_pool_id"), "vms", "pools", ["pool_id"], ["id"],
                          ondelete="CASCADE")
    op.create_index(op.f("ix_vms_pool_id"), "vms", ["pool_id"])
    op.alter_column("vms", "user_id", nullable=True)
    op.create_unique_constraint(op.f("uq_vms_pool_id_name"), "vms", ["pool_id", "name"])
    op.create_unique_constraint(op.f("uq_vms_pool_id_user_id"), "vms", ["pool_id", "user_id"])
    op.create_check_constraint(op.f("ck_vms_owned_or_pooled"), "vms",
                               "pool_id IS NOT NULL OR user_id IS NOT NULL")
    op.execute(TRIGGERS)
    op.execute(f"GRANT SELECT ON pools, pool_members TO {L7R}")
    op.execute(f"GRANT UPDATE (user_id) ON vms TO {L7R}")
    op.execute(f"GRANT UPDATE (vms_made, last_reason, last_reason_at) ON pools TO {L7R}")


def downgrade() -> None:
    op.execute(DROP_TRIGGERS)
    op.execute("DELETE FROM vms WHERE user_id IS NULL")
    op.drop_constraint(op.f("ck_vms_owned_or_pooled"), "vms", type_="check")
    op.drop_constraint(op.f("uq_vms_pool_id_user_id"), "vms", type_="unique")
    op.drop_constraint(op.f("uq_vms_pool_id_name"), "vms", type_="unique")
    op.alter_column("vms", "user_id", nullable=False)
    op.drop_index(op.f("ix_vms_pool_id"), table_name="vms")
    op.drop_constraint(op.f("fk_vms_pool_id"), "vms", type_="foreignkey")
    op.drop_column("vms", "discard_home")
    op.drop_column("vms", "pool_id")
    op.drop_index(op.f("ix_vms_tenant_id"), table_name="vms")
    op.drop_constraint(op.f("fk_vms_tenant_id"), "vms", type_="foreignkey")
    op.drop_column("vms", "tenant_id")
    op.drop_index(op.f("ix_pool_members_user_id"), table_name="pool_members")
    op.drop_table("pool_members")
    op.drop_table("pools")
