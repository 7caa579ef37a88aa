"""Tokens with a lifecycle: the login's own expiry on each token, its use; blocking revokes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Blocking a user (or a whole tenant) revokes their tokens, whoever blocks: unblocking later
# does not bring them back. (A password change revokes them in `qvd-admin user passwd`, not
# here: the L7R's re-hash of a legacy hash writes the column too and must not.)
REVOKE_ON_BLOCK = """
CREATE FUNCTION qvd_revoke_tokens_on_block() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        DELETE FROM user_tokens WHERE user_id = NEW.id;
    ELSE
        DELETE FROM user_tokens WHERE user_id IN (SELECT id FROM users WHERE tenant_id = NEW.id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER qvd_revoke_tokens_on_block AFTER UPDATE OF blocked ON users
    FOR EACH ROW WHEN (NEW.blocked AND NOT OLD.blocked)
    EXECUTE FUNCTION qvd_revoke_tokens_on_block();
CREATE TRIGGER qvd_revoke_tokens_on_block AFTER UPDATE OF blocked ON tenants
    FOR EACH ROW WHEN (NEW.blocked AND NOT OLD.blocked)
    EXECUTE FUNCTION qvd_revoke_tokens_on_block();
"""

DROP_REVOKE_ON_BLOCK = """
DROP TRIGGER qvd_revoke_tokens_on_block ON tenants;
DROP TRIGGER qvd_revoke_tokens_on_block ON users;
DROP FUNCTION qvd_revoke_tokens_on_block();
"""


def upgrade() -> None:
    # login_expires_at: when the password login this token descends from ends; a token minted
    # with a token gets at most that (existing tokens: their own expiry).
    op.add_column("user_tokens", sa.Column("login_expires_at", sa.DateTime(timezone=True),
                                           nullable=True))
    op.execute("UPDATE user_tokens SET login_expires_at = expires_at")
    op.alter_column("user_tokens", "login_expires_at", nullable=False)
    op.add_column("user_tokens", sa.Column("uses", sa.Integer(), server_default=sa.text("0"),
                                           nullable=False))
    op.add_column("user_tokens", sa.Column("last_used_at", sa.DateTime(timezone=True),
                                           nullable=True))
    op.create_check_constraint(op.f("ck_user_tokens_within_login"), "user_tokens",
                               "expires_at <= login_expires_at")
    op.create_index(op.f("ix_user_tokens_expires_at"), "user_tokens", ["expires_at"])
    op.execute(REVOKE_ON_BLOCK)


def downgrade() -> None:
    op.execute(DROP_REVOKE_ON_BLOCK)
    op.drop_index(op.f("ix_user_tokens_expires_at"), table_name="user_tokens")
    op.drop_constraint(op.f("ck_user_tokens_within_login"), "user_tokens", type_="check")
    op.drop_column("user_tokens", "last_used_at")
    op.drop_column("user_tokens", "uses")
    op.drop_column("user_tokens", "login_expires_at")
