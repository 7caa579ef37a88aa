"""NOTIFY triggers (channels documented in qvd/db/notify.py) and the fixed tenants

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FIXED_TENANTS = """
INSERT INTO tenants (id, name, description) VALUES
    (-1, '_global', 'holds configuration that applies to every tenant'),
    (0, '*', 'supertenant: administrators of every tenant'),
    (1, 'default', 'default tenant');
SELECT setval(pg_get_serial_sequence('tenants', 'id'), 1);
"""

# Every writer (CLI, L7R, psql) wakes the nodes: notifications are sent on commit.
TRIGGERS = r"""
CREATE FUNCTION qvd_notify_vm_runtime() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.vm_cmd IS NOT NULL AND NEW.host_id IS NOT NULL AND (TG_OP = 'INSERT'
       OR NEW.vm_cmd IS DISTINCT FROM OLD.vm_cmd OR NEW.host_id IS DISTINCT FROM OLD.host_id) THEN
        PERFORM pg_notify('qvd_cmd_for_vm_on_host' || NEW.host_id, NEW.vm_id || ':' || NEW.vm_cmd);
    END IF;
    IF NEW.user_cmd IS NOT NULL AND NEW.l7r_host_id IS NOT NULL AND (TG_OP = 'INSERT'
       OR NEW.user_cmd IS DISTINCT FROM OLD.user_cmd) THEN
        PERFORM pg_notify('qvd_cmd_for_user_on_host' || NEW.l7r_host_id,
                          NEW.vm_id || ':' || NEW.user_cmd);
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.vm_state IS DISTINCT FROM OLD.vm_state
       OR NEW.user_state IS DISTINCT FROM OLD.user_state) THEN
        PERFORM pg_notify('qvd_state_of_vm' || NEW.vm_id, NEW.vm_state || ':' || NEW.user_state);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_notify_vm_runtime AFTER INSERT OR UPDATE ON vm_runtimes
    FOR EACH ROW EXECUTE FUNCTION qvd_notify_vm_runtime();

CREATE FUNCTION qvd_notify_host_runtime() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cmd IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.cmd IS DISTINCT FROM OLD.cmd) THEN
        PERFORM pg_notify('qvd_cmd_for_host' || NEW.host_id, NEW.cmd);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.state IS DISTINCT FROM OLD.state THEN
        PERFORM pg_notify('qvd_host_state', NEW.host_id || ':' || NEW.state);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_notify_host_runtime AFTER INSERT OR UPDATE ON host_runtimes
    FOR EACH ROW EXECUTE FUNCTION qvd_notify_host_runtime();

CREATE FUNCTION qvd_notify_config() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    IF TG_TABLE_NAME = 'configs' THEN
        PERFORM pg_notify('qvd_config_changed', changed.tenant_id || ':' || changed.key);
    ELSE
        PERFORM pg_notify('qvd_config_changed', '-1:' || changed.key);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_notify_config AFTER INSERT OR UPDATE OR DELETE ON configs
    FOR EACH ROW EXECUTE FUNCTION qvd_notify_config();
CREATE TRIGGER qvd_notify_ssl_config AFTER INSERT OR UPDATE OR DELETE ON ssl_configs
    FOR EACH ROW EXECUTE FUNCTION qvd_notify_config();
"""

DROP_TRIGGERS = """
DROP TRIGGER qvd_notify_ssl_config ON ssl_configs;
DROP TRIGGER qvd_notify_config ON configs;
DROP FUNCTION qvd_notify_config();
DROP TRIGGER qvd_notify_host_runtime ON host_runtimes;
DROP FUNCTION qvd_notify_host_runtime();
DROP TRIGGER qvd_notify_vm_runtime ON vm_runtimes;
DROP FUNCTION qvd_notify_vm_runtime();
"""


def upgrade() -> None:
    op.execute(FIXED_TENANTS)
    op.execute(TRIGGERS)


def downgrade() -> None:
    op.execute(DROP_TRIGGERS)
    op.execute("DELETE FROM tenants WHERE id IN (-1, 0, 1)")
