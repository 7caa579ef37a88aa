"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""

    op.create_table('acls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acls')),
    sa.UniqueConstraint('name', name=op.f('uq_acls_name'))
    )
    op.create_table('admin_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('who', sa.Text(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('object', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('arguments', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('object_ids', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_log'))
    )
    op.create_index(op.f('ix_admin_log_at'), 'admin_log', ['at'], unique=False)
    op.create_table('hosts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('address', postgresql.INET(), nullable=False),
    sa.Column('frontend', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('backend', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.CheckConstraint("name <> ''", name=op.f('ck_hosts_name_not_empty')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hosts')),
    sa.UniqueConstraint('address', name=op.f('uq_hosts_address')),
    sa.UniqueConstraint('name', name=op.f('uq_hosts_name'))
    )
    op.create_table('roles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('fixed', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('internal', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roles')),
    sa.UniqueConstraint('name', name=op.f('uq_roles_name'))
    )
    op.create_table('ssl_configs',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_ssl_configs'))
    )
    op.create_table('tenants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('blocked', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.CheckConstraint("name <> ''", name=op.f('ck_tenants_name_not_empty')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('name', name=op.f('uq_tenants_name'))
    )
    op.create_table('acl_role_relations',
    sa.Column('acl_id', sa.Integer(), nullable=False),
    sa.Column('role_id', sa.Integer(), nullable=False),
    sa.Column('positive', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['acl_id'], ['acls.id'], name=op.f('fk_acl_role_relations_acl_id'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_acl_role_relations_role_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('acl_id', 'role_id', name=op.f('pk_acl_role_relations'))
    )
    op.create_table('administrators',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('password', sa.Text(), nullable=True),
    sa.Column('blocked', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_administrators_tenant_id'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_administrators')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_administrators_tenant_id_name'))
    )
    op.create_table('configs',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.CheckConstraint("key <> ''", name=op.f('ck_configs_key_not_empty')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_configs_tenant_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'key', name=op.f('pk_configs'))
    )
    op.create_table('host_counters',
    sa.Column('host_id', sa.Integer(), nullable=False),
    sa.Column('http_requests', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('auth_attempts', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('auth_ok', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('auth_failed', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('connection_attempts', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('connection_ok', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('short_sessions', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_host_counters_host_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('host_id', name=op.f('pk_host_counters'))
    )
    op.create_table('host_properties',
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.CheckConstraint("key <> ''", name=op.f('ck_host_properties_key_not_empty')),
    sa.ForeignKeyConstraint(['owner_id'], ['hosts.id'], name=op.f('fk_host_properties_owner_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('owner_id', 'key', name=op.f('pk_host_properties'))
    )
    op.create_table('host_runtimes',
    sa.Column('host_id', sa.Integer(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('ok_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('epoch', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('usable_ram', sa.Integer(), nullable=True),
    sa.Column('usable_cpu', sa.Float(), nullable=True),
    sa.Column('state', sa.Text(), server_default='stopped', nullable=False),
    sa.Column('blocked', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('cmd', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("cmd IN ('stop')", name=op.f('ck_host_runtimes_cmd')),
    sa.CheckConstraint("state IN ('stopped', 'starting', 'running', 'stopping', 'lost')", name=op.f('ck_host_runtimes_state')),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_host_runtimes_host_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('host_id', name=op.f('pk_host_runtimes'))
    )
    op.create_table('osfs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('memory', sa.Integer(), nullable=False),
    sa.Column('use_overlay', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('user_storage_size', sa.Integer(), nullable=True),
    sa.Column('is_application', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.CheckConstraint("name <> ''", name=op.f('ck_osfs_name_not_empty')),
    sa.CheckConstraint('memory > 0', name=op.f('ck_osfs_memory_positive')),
    sa.CheckConstraint('user_storage_size >= 0', name=op.f('ck_osfs_storage_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_osfs_tenant_id'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_osfs')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_osfs_tenant_id_name'))
    )
    op.create_table('role_role_relations',
    sa.Column('inheritor_id', sa.Integer(), nullable=False),
    sa.Column('inherited_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('inheritor_id <> inherited_id', name=op.f('ck_role_role_relations_no_self_inheritance')),
    sa.ForeignKeyConstraint(['inherited_id'], ['roles.id'], name=op.f('fk_role_role_relations_inherited_id'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inheritor_id'], ['roles.id'], name=op.f('fk_role_role_relations_inheritor_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('inheritor_id', 'inherited_id', name=op.f('pk_role_role_relations'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('login', sa.Text(), nullable=False),
    sa.Column('password', sa.Text(), nullable=True),
    sa.Column('blocked', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("login <> ''", name=op.f('ck_users_login_not_empty')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_users_tenant_id'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('tenant_id', 'login', name=op.f('uq_users_tenant_id_login'))
    )
    op.create_table('dis',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('osf_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('blocked', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("version <> ''", name=op.f('ck_dis_version_not_empty')),
    sa.ForeignKeyConstraint(['osf_id'], ['osfs.id'], name=op.f('fk_dis_osf_id'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dis')),
    sa.UniqueConstraint('id', 'osf_id', name=op.f('uq_dis_id_osf_id')),
    sa.UniqueConstraint('osf_id', 'version', name=op.f('uq_dis_osf_id_version')),
    sa.UniqueConstraint('path', name=op.f('uq_dis_path'))
    )
    op.create_table('osf_properties',
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.CheckConstraint("key <> ''", name=op.f('ck_osf_properties_key_not_empty')),
    sa.ForeignKeyConstraint(['owner_id'], ['osfs.id'], name=op.f('fk_osf_properties_owner_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('owner_id', 'key', name=op.f('pk_osf_properties'))
    )
    op.create_table('role_administrator_relations',
    sa.Column('role_id', sa.Integer(), nullable=False),
    sa.Column('administrator_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['administrator_id'], ['administrators.id'], name=op.f('fk_role_administrator_relations_administrator_id'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_role_administrator_relations_role_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('role_id', 'administrator_id', name=op.f('pk_role_administrator_relations'))
    )
    op.create_table('user_properties',
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.CheckConstraint("key <> ''", name=op.f('ck_user_properties_key_not_empty')),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_user_properties_owner_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('owner_id', 'key', name=op.f('pk_user_properties'))
    )
    op.create_table('user_tokens',
    sa.Column('token_hash', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('expires_at > created_at', name=op.f('ck_user_tokens_expires_after_creation')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_tokens_user_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_user_tokens'))
    )
    op.create_index(op.f('ix_user_tokens_user_id'), 'user_tokens', ['user_id'], unique=False)
    op.create_table('vms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('osf_id', sa.Integer(), nullable=False),
    sa.Column('di_tag', sa.Text(), server_default='default', nullable=False),
    sa.Column('ip', postgresql.INET(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("name <> ''", name=op.f('ck_vms_name_not_empty')),
    sa.ForeignKeyConstraint(['osf_id'], ['osfs.id'], name=op.f('fk_vms_osf_id'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_vms_user_id'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vms')),
    sa.UniqueConstraint('ip', name=op.f('uq_vms_ip')),
    sa.UniqueConstraint('user_id', 'name', name=op.f('uq_vms_user_id_name'))
    )
    op.create_table('di_properties',
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.CheckConstraint("key <> ''", name=op.f('ck_di_properties_key_not_empty')),
    sa.ForeignKeyConstraint(['owner_id'], ['dis.id'], name=op.f('fk_di_properties_owner_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('owner_id', 'key', name=op.f('pk_di_properties'))
    )
    op.create_table('di_tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('di_id', sa.Integer(), nullable=False),
    sa.Column('osf_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.Text(), nullable=False),
    sa.Column('fixed', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.CheckConstraint("tag ~ '^[A-Za-z0-9._-]+$'", name=op.f('ck_di_tags_tag_format')),
    sa.ForeignKeyConstraint(['di_id', 'osf_id'], ['dis.id', 'dis.osf_id'], name=op.f('fk_di_tags_di_id_osf_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_di_tags')),
    sa.UniqueConstraint('osf_id', 'tag', name=op.f('uq_di_tags_osf_id_tag'))
    )
    op.create_table('sessions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('login', sa.Text(), nullable=False),
    sa.Column('vm_id', sa.Integer(), nullable=True),
    sa.Column('vm_name', sa.Text(), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=True),
    sa.Column('host_name', sa.Text(), nullable=False),
    sa.Column('client_address', postgresql.INET(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('bytes_from_client', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('bytes_to_client', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('end_reason', sa.Text(), nullable=True),
    sa.CheckConstraint('ended_at IS NULL OR ended_at >= started_at', name=op.f('ck_sessions_ends_after_start')),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_sessions_host_id'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sessions_user_id'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['vm_id'], ['vms.id'], name=op.f('fk_sessions_vm_id'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions'))
    )
    op.create_index(op.f('ix_sessions_user_id'), 'sessions', ['user_id'], unique=False)
    op.create_index(op.f('ix_sessions_vm_id'), 'sessions', ['vm_id'], unique=False)
    op.create_table('vm_counters',
    sa.Column('vm_id', sa.Integer(), nullable=False),
    sa.Column('run_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('run_ok', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('run_failed', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('connections', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('short_sessions', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.ForeignKeyConstraint(['vm_id'], ['vms.id'], name=op.f('fk_vm_counters_vm_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vm_id', name=op.f('pk_vm_counters'))
    )
    op.create_table('vm_properties',
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.CheckConstraint("key <> ''", name=op.f('ck_vm_properties_key_not_empty')),
    sa.ForeignKeyConstraint(['owner_id'], ['vms.id'], name=op.f('fk_vm_properties_owner_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('owner_id', 'key', name=op.f('pk_vm_properties'))
    )
    op.create_table('vm_runtimes',
    sa.Column('vm_id', sa.Integer(), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=True),
    sa.Column('vm_state', sa.Text(), server_default='stopped', nullable=False),
    sa.Column('vm_state_ts', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('vm_cmd', sa.Text(), nullable=True),
    sa.Column('vm_pid', sa.Integer(), nullable=True),
    sa.Column('user_state', sa.Text(), server_default='disconnected', nullable=False),
    sa.Column('user_state_ts', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('user_cmd', sa.Text(), nullable=True),
    sa.Column('l7r_host_id', sa.Integer(), nullable=True),
    sa.Column('l7r_pid', sa.Integer(), nullable=True),
    sa.Column('vm_address', postgresql.INET(), nullable=True),
    sa.Column('vm_vma_port', sa.Integer(), nullable=True),
    sa.Column('vm_x_port', sa.Integer(), nullable=True),
    sa.Column('vm_vnc_port', sa.Integer(), nullable=True),
    sa.Column('vm_serial_port', sa.Integer(), nullable=True),
    sa.Column('blocked', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('current_osf_id', sa.Integer(), nullable=True),
    sa.Column('current_di_id', sa.Integer(), nullable=True),
    sa.Column('expiration_soft', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expiration_hard', sa.DateTime(timezone=True), nullable=True),
    sa.Column('vma_ok_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_starts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("user_cmd IN ('abort')", name=op.f('ck_vm_runtimes_user_cmd')),
    sa.CheckConstraint("user_state = 'disconnected' OR l7r_pid IS NOT NULL", name=op.f('ck_vm_runtimes_connection_has_l7r')),
    sa.CheckConstraint("user_state IN ('disconnected', 'connecting', 'connected')", name=op.f('ck_vm_runtimes_user_state')),
    sa.CheckConstraint("vm_cmd IN ('start', 'stop')", name=op.f('ck_vm_runtimes_vm_cmd')),
    sa.CheckConstraint("vm_cmd IS DISTINCT FROM 'start' OR host_id IS NOT NULL", name=op.f('ck_vm_runtimes_start_has_host')),
    sa.CheckConstraint("vm_state = 'stopped' OR host_id IS NOT NULL", name=op.f('ck_vm_runtimes_active_has_host')),
    sa.CheckConstraint("vm_state IN ('stopped', 'starting', 'running', 'stopping', 'zombie', 'debugging')", name=op.f('ck_vm_runtimes_vm_state')),
    sa.ForeignKeyConstraint(['current_di_id'], ['dis.id'], name=op.f('fk_vm_runtimes_current_di_id'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['current_osf_id'], ['osfs.id'], name=op.f('fk_vm_runtimes_current_osf_id'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_vm_runtimes_host_id'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['l7r_host_id'], ['hosts.id'], name=op.f('fk_vm_runtimes_l7r_host_id'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['vm_id'], ['vms.id'], name=op.f('fk_vm_runtimes_vm_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vm_id', name=op.f('pk_vm_runtimes'))
    )
    op.create_index(op.f('ix_vm_runtimes_host_id'), 'vm_runtimes', ['host_id'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""

    op.drop_index(op.f('ix_vm_runtimes_host_id'), table_name='vm_runtimes')
    op.drop_table('vm_runtimes')
    op.drop_table('vm_properties')
    op.drop_table('vm_counters')
    op.drop_index(op.f('ix_sessions_vm_id'), table_name='sessions')
    op.drop_index(op.f('ix_sessions_user_id'), table_name='sessions')
    op.drop_table('sessions')
    op.drop_table('di_tags')
    op.drop_table('di_properties')
    op.drop_table('vms')
    op.drop_index(op.f('ix_user_tokens_user_id'), table_name='user_tokens')
    op.drop_table('user_tokens')
    op.drop_table('user_properties')
    op.drop_table('role_administrator_relations')
    op.drop_table('osf_properties')
    op.drop_table('dis')
    op.drop_table('users')
    op.drop_table('role_role_relations')
    op.drop_table('osfs')
    op.drop_table('host_runtimes')
    op.drop_table('host_properties')
    op.drop_table('host_counters')
    op.drop_table('configs')
    op.drop_table('administrators')
    op.drop_table('acl_role_relations')
    op.drop_table('tenants')
    op.drop_table('ssl_configs')
    op.drop_table('roles')
    op.drop_table('hosts')
    op.drop_index(op.f('ix_admin_log_at'), table_name='admin_log')
    op.drop_table('admin_log')
    op.drop_table('acls')

