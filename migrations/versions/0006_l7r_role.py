"""The L7R's own database role, qvd_l7r: not a superuser, not the owner; it reads what a
desktop connection needs and writes only the rows a connection changes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ROLE = "qvd_l7r"

# The role is cluster-wide (several QVD databases on one server share it); the grants are
# this database's. Creating it needs CREATEROLE: without it, say what to do.
CREATE_ROLE = f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RAISE EXCEPTION 'the L7R''s database role {ROLE} does not exist and % may not '
                'create it: CREATE ROLE {ROLE} LOGIN PASSWORD ''...'' as an administrator of '
                'the server, then upgrade again', current_user;
        END IF;
        CREATE ROLE {ROLE} NOLOGIN;
    END IF;
END $$"""

# Not granted at all: administrators, roles and ACLs, the node's TLS key (ssl_configs).
READS = ("hosts", "host_runtimes", "host_properties", "host_counters", "tenants", "users",
         "user_properties", "user_tokens", "osfs", "osf_properties", "dis", "di_tags",
         "di_properties", "vms", "vm_runtimes", "vm_properties", "vm_counters", "sessions",
         "configs", "auth_failures", "admin_log")
WRITES = {
    "INSERT": ("users", "vms", "vm_runtimes", "vm_counters", "sessions", "user_tokens",
               "auth_failures", "admin_log"),        # auto-created users, logins, sessions
    "UPDATE": ("users", "vm_runtimes", "vm_counters", "host_counters", "sessions",
               "user_tokens", "auth_failures"),     # re-hash, connection state, counters
    "DELETE": ("user_tokens", "auth_failures"),      # expiry and back-off bookkeeping
}


def upgrade() -> None:
    op.execute(CREATE_ROLE)
    op.execute(f"GRANT SELECT ON {', '.join(READS)} TO {ROLE}")
    for privilege, tables in WRITES.items():
        op.execute(f"GRANT {privilege} ON {', '.join(tables)} TO {ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ROLE}")
