"""The WAT's live changes: triggers that NOTIFY qvd_changes (documented in qvd/db/notify.py)
with the listing fields of a VM, node or session that a commit changed

Payload: {"k": kind, "id": N, "t": tenant id or null, "f": {field: new value}} plus
"op": "insert" | "delete" for rows that come or go. Only fields whose value changed are
sent, under the listings' names (db/ops/vms.py, hosts.py, sessions.py), and a node's VM
count when a VM moves to or from it; last_error is cut to 1000 characters so that a payload
stays far below pg_notify's 8000 bytes (one that would not, from very long names, is sent
without its fields).

The functions run with the writer's rights: every table they read (vms, users, hosts) is
one the L7R's role qvd_l7r may already read (migration 0006), and it writes vm_runtimes
and sessions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TRIGGERS = r"""
-- A payload pg_notify would refuse (8000 bytes) would fail the writer's transaction: such a
-- change goes without its fields (the pages still refetch on "<kind>-changed").
CREATE FUNCTION qvd_change(kind text, id bigint, tenant bigint, fields jsonb,
                           operation text DEFAULT NULL) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    head jsonb := jsonb_strip_nulls(jsonb_build_object('k', kind, 'id', id, 'op', operation))
                  || jsonb_build_object('t', tenant);
    payload text := (head || jsonb_build_object('f', fields))::text;
BEGIN
    IF octet_length(payload) > 7900 THEN
        payload := (head || jsonb_build_object('f', '{}'::jsonb))::text;
    END IF;
    PERFORM pg_notify('qvd_changes', payload);
END $$;

CREATE FUNCTION qvd_short_error(error text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN length(error) > 1000 THEN left(error, 999) || '…' ELSE error END
$$;

CREATE FUNCTION qvd_user_tenant(account bigint) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT tenant_id FROM users WHERE id = account
$$;

CREATE FUNCTION qvd_vm_tenant(vm bigint) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT qvd_user_tenant(user_id) FROM vms WHERE id = vm
$$;

CREATE FUNCTION qvd_host_vms(host bigint) RETURNS void LANGUAGE sql AS $$
    SELECT qvd_change('host', host, NULL, jsonb_build_object('vms', count(*)))
    FROM vm_runtimes WHERE host_id = host HAVING host IS NOT NULL
$$;

CREATE FUNCTION qvd_changes_vm_runtime() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fields jsonb := '{}';
BEGIN
    IF NEW.vm_state IS DISTINCT FROM OLD.vm_state THEN
        fields := fields || jsonb_build_object('state', NEW.vm_state);
    END IF;
    IF NEW.user_state IS DISTINCT FROM OLD.user_state THEN
        fields := fields || jsonb_build_object('user_state', NEW.user_state);
    END IF;
    IF NEW.host_id IS DISTINCT FROM OLD.host_id THEN
        fields := fields || jsonb_build_object(
            'host', (SELECT name FROM hosts WHERE id = NEW.host_id));
        PERFORM qvd_host_vms(OLD.host_id);  -- both nodes' VM counts changed
        PERFORM qvd_host_vms(NEW.host_id);
    END IF;
    IF NEW.last_error IS DISTINCT FROM OLD.last_error THEN
        fields := fields || jsonb_build_object('last_error', qvd_short_error(NEW.last_error));
    END IF;
    IF NEW.blocked IS DISTINCT FROM OLD.blocked THEN
        fields := fields || jsonb_build_object('blocked', NEW.blocked);
    END IF;
    IF fields <> '{}' THEN  -- a lease or heartbeat column alone costs no lookup
        PERFORM qvd_change('vm', NEW.vm_id, qvd_vm_tenant(NEW.vm_id), fields);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_changes_vm_runtime AFTER UPDATE ON vm_runtimes
    FOR EACH ROW EXECUTE FUNCTION qvd_changes_vm_runtime();

-- vms rows come and go (their runtime rows with them); the user outlives the VM (RESTRICT)
CREATE FUNCTION qvd_changes_vm() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM qvd_change('vm', changed.id, qvd_user_tenant(changed.user_id), '{}',
                       lower(TG_OP));
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_changes_vm AFTER INSERT OR DELETE ON vms
    FOR EACH ROW EXECUTE FUNCTION qvd_changes_vm();

-- Nodes belong to no tenant: "t" is null.
CREATE FUNCTION qvd_changes_host_runtime() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fields jsonb := '{}';
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        fields := fields || jsonb_build_object('state', NEW.state);
    END IF;
    IF NEW.blocked IS DISTINCT FROM OLD.blocked THEN
        fields := fields || jsonb_build_object('blocked', NEW.blocked);
    END IF;
    IF NEW.last_error IS DISTINCT FROM OLD.last_error THEN
        fields := fields || jsonb_build_object('last_error', qvd_short_error(NEW.last_error));
    END IF;
    IF fields <> '{}' THEN  -- lease renewals (ok_ts) send nothing
        PERFORM qvd_change('host', NEW.host_id, NULL, fields);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_changes_host_runtime AFTER UPDATE ON host_runtimes
    FOR EACH ROW EXECUTE FUNCTION qvd_changes_host_runtime();

CREATE FUNCTION qvd_changes_host() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM qvd_change('host', OLD.id, NULL, '{}', 'delete');
    ELSE
        PERFORM qvd_change('host', NEW.id, NULL, '{}', 'insert');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_changes_host AFTER INSERT OR DELETE ON hosts
    FOR EACH ROW EXECUTE FUNCTION qvd_changes_host();

-- A session starts (insert) and ends (ended_at set); byte counters alone send nothing.
CREATE FUNCTION qvd_changes_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM qvd_change('session', NEW.id, qvd_user_tenant(NEW.user_id),
            jsonb_build_object('user', NEW.login, 'vm', NEW.vm_name, 'vm_id', NEW.vm_id,
                               'host', NEW.host_name), 'insert');
    ELSIF NEW.ended_at IS DISTINCT FROM OLD.ended_at
          OR NEW.end_reason IS DISTINCT FROM OLD.end_reason THEN
        PERFORM qvd_change('session', NEW.id, qvd_user_tenant(NEW.user_id),
            jsonb_build_object('ended', NEW.ended_at, 'end_reason', NEW.end_reason));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_changes_session AFTER INSERT OR UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION qvd_changes_session();
"""

DROP_TRIGGERS = """
DROP TRIGGER qvd_changes_session ON sessions;
DROP FUNCTION qvd_changes_session();
DROP TRIGGER qvd_changes_host ON hosts;
DROP FUNCTION qvd_changes_host();
DROP TRIGGER qvd_changes_host_runtime ON host_runtimes;
DROP FUNCTION qvd_changes_host_runtime();
DROP TRIGGER qvd_changes_vm ON vms;
DROP FUNCTION qvd_changes_vm();
DROP TRIGGER qvd_changes_vm_runtime ON vm_runtimes;
DROP FUNCTION qvd_changes_vm_runtime();
DROP FUNCTION qvd_host_vms(bigint);
DROP FUNCTION qvd_vm_tenant(bigint);
DROP FUNCTION qvd_user_tenant(bigint);
DROP FUNCTION qvd_short_error(text);
DROP FUNCTION qvd_change(text, bigint, bigint, jsonb, text);
"""


def upgrade() -> None:
    op.execute(TRIGGERS)


def downgrade() -> None:
    op.execute(DROP_TRIGGERS)
