"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('audit_log',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=True),
    sa.Column('subject_ref', sa.String(length=64), nullable=True),
    sa.Column('target', sa.String(length=300), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('length(hash) = 64', name=op.f('ck_audit_log_hash_length')),
    sa.CheckConstraint('length(prev_hash) = 64', name=op.f('ck_audit_log_prev_hash_length')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_log_hash'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_subject_ref'), ['subject_ref'], unique=False)

    op.create_table('backups',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('store', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.Enum('full', 'incremental', 'snapshot', name='ck_backupkind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('status', sa.Enum('running', 'succeeded', 'failed', 'verified', 'expired', name='ck_backupstatus', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('location', sa.String(length=1024), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('key_id', sa.String(length=64), nullable=True),
    sa.Column('manifest', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.CheckConstraint('finished_at IS NULL OR finished_at >= started_at', name=op.f('ck_backups_finished_after_started')),
    sa.CheckConstraint('size_bytes IS NULL OR size_bytes >= 0', name=op.f('ck_backups_size_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backups'))
    )
    op.create_table('erasure_ledger',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('subject_hash', sa.String(length=64), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=True),
    sa.Column('request_id', sa.Uuid(), nullable=True),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasure_ledger')),
    sa.UniqueConstraint('subject_hash', name=op.f('uq_erasure_ledger_subject_hash'))
    )
    op.create_table('organizations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('slug', sa.String(length=100), nullable=False),
    sa.Column('tier', sa.Enum('standard', 'enterprise', name='ck_organizationtier', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(slug) > 0', name=op.f('ck_organizations_slug_not_empty')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organizations')),
    sa.UniqueConstraint('slug', name=op.f('uq_organizations_slug'))
    )
    op.create_table('legal_holds',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('scope', sa.Enum('organization', 'user', 'capsule', 'content', name='ck_holdscope', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('scope_id', sa.Uuid(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('placed_by', sa.String(length=320), nullable=False),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('length(reason) > 0', name=op.f('ck_legal_holds_reason_given')),
    sa.CheckConstraint('released_at IS NULL OR released_at >= placed_at', name=op.f('ck_legal_holds_released_after_placed')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_legal_holds_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_legal_holds'))
    )
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_legal_holds_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_legal_holds_scope_id'), ['scope_id'], unique=False)

    op.create_table('retention_policies',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('data_class', sa.String(length=64), nullable=False),
    sa.Column('tier', sa.Enum('standard', 'enterprise', name='ck_organizationtier', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=True),
    sa.Column('retain_days', sa.Integer(), nullable=False),
    sa.Column('action', sa.Enum('delete', 'anonymize', 'archive', 'aggregate', name='ck_retentionaction', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('retain_days > 0', name=op.f('ck_retention_policies_retain_days_positive')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_retention_policies_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_policies')),
    sa.UniqueConstraint('data_class', 'tier', 'organization_id', name='uq_retention_policies_class_tier_org')
    )
    op.create_table('users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.Enum('admin', 'privacy_officer', 'analyst', 'creator', 'viewer', name='ck_userrole', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('data_key_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("email LIKE '%_@_%'", name=op.f('ck_users_email_has_at')),
    sa.CheckConstraint('email = lower(email)', name=op.f('ck_users_email_lower_case')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_users_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('organization_id', 'email', name='uq_users_organization_email')
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_organization_id'), ['organization_id'], unique=False)

    op.create_table('capsules',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('draft', 'published', 'archived', name='ck_capsulestatus', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status != 'published' OR published_at IS NOT NULL", name=op.f('ck_capsules_published_has_timestamp')),
    sa.CheckConstraint('published_at IS NULL OR published_at >= created_at', name=op.f('ck_capsules_published_after_created')),
    sa.CheckConstraint('updated_at >= created_at', name=op.f('ck_capsules_updated_after_created')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_capsules_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_capsules_owner_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_capsules'))
    )
    with op.batch_alter_table('capsules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_capsules_deleted_at'), ['deleted_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_capsules_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_capsules_owner_id'), ['owner_id'], unique=False)

    op.create_table('consents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.Enum('analytics', 'personalization', 'marketing', 'model_improvement', name='ck_consentpurpose', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_consents_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents'))
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consents_user_id'), ['user_id'], unique=False)
        batch_op.create_index('ix_consents_user_purpose_time', ['user_id', 'purpose', 'recorded_at'], unique=False)

    op.create_table('data_subject_requests',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('subject_email', sa.String(length=320), nullable=True),
    sa.Column('subject_hash', sa.String(length=64), nullable=False),
    sa.Column('type', sa.Enum('access', 'erasure', 'rectification', 'restriction', 'objection', name='ck_requesttype', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('status', sa.Enum('received', 'identity_verified', 'approved', 'in_progress', 'completed', 'rejected', 'failed', name='ck_requeststatus', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('jurisdiction', sa.Enum('gdpr', 'ccpa', name='ck_jurisdiction', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('changes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('verification_hash', sa.String(length=128), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('approved_by', sa.Uuid(), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('extended_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('extension_reason', sa.Text(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('duplicate_of', sa.Uuid(), nullable=True),
    sa.Column('steps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('receipt', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.CheckConstraint('completed_at IS NULL OR completed_at >= received_at', name=op.f('ck_data_subject_requests_completed_after_received')),
    sa.CheckConstraint('due_at >= received_at', name=op.f('ck_data_subject_requests_due_after_received')),
    sa.CheckConstraint('extended_due_at IS NULL OR extended_due_at >= due_at', name=op.f('ck_data_subject_requests_extension_after_due')),
    sa.ForeignKeyConstraint(['approved_by'], ['users.id'], name=op.f('fk_data_subject_requests_approved_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['duplicate_of'], ['data_subject_requests.id'], name=op.f('fk_data_subject_requests_duplicate_of_data_subject_requests'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_data_subject_requests_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_data_subject_requests_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_data_subject_requests'))
    )
    with op.batch_alter_table('data_subject_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_data_subject_requests_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_data_subject_requests_subject_hash'), ['subject_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_data_subject_requests_user_id'), ['user_id'], unique=False)

    op.create_table('content',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('capsule_id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('uploaded_by', sa.Uuid(), nullable=True),
    sa.Column('type', sa.Enum('pdf', 'document', 'markdown', 'html', 'text', 'image', 'video', name='ck_contenttype', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('filename', sa.String(length=300), nullable=False),
    sa.Column('object_key', sa.String(length=1024), nullable=False),
    sa.Column('object_version', sa.String(length=128), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mime_type', sa.String(length=127), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('length(object_key) > 0', name=op.f('ck_content_object_key_not_empty')),
    sa.CheckConstraint('length(sha256) = 64', name=op.f('ck_content_sha256_length')),
    sa.CheckConstraint('size_bytes >= 0', name=op.f('ck_content_size_not_negative')),
    sa.ForeignKeyConstraint(['capsule_id'], ['capsules.id'], name=op.f('fk_content_capsule_id_capsules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_content_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['uploaded_by'], ['users.id'], name=op.f('fk_content_uploaded_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content')),
    sa.UniqueConstraint('capsule_id', 'sha256', name='uq_content_capsule_sha256'),
    sa.UniqueConstraint('object_key', 'object_version', name='uq_content_object_version')
    )
    with op.batch_alter_table('content', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_content_capsule_id'), ['capsule_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_content_deleted_at'), ['deleted_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_content_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_content_uploaded_by'), ['uploaded_by'], unique=False)

    op.create_table('interactions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('capsule_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['capsule_id'], ['capsules.id'], name=op.f('fk_interactions_capsule_id_capsules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_interactions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interactions'))
    )
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interactions_capsule_id'), ['capsule_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_interactions_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_interactions_user_id'), ['user_id'], unique=False)

    op.create_table('processing_restrictions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum('restriction', 'objection', name='ck_restrictionkind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('purpose', sa.Enum('analytics', 'personalization', 'marketing', 'model_improvement', name='ck_consentpurpose', native_enum=False, create_constraint=True, length=32), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('request_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('lifted_at IS NULL OR lifted_at >= created_at', name=op.f('ck_processing_restrictions_lifted_after_created')),
    sa.ForeignKeyConstraint(['request_id'], ['data_subject_requests.id'], name=op.f('fk_processing_restrictions_request_id_data_subject_requests'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_processing_restrictions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_processing_restrictions'))
    )
    with op.batch_alter_table('processing_restrictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processing_restrictions_user_id'), ['user_id'], unique=False)

    op.create_table('interaction_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('interaction_id', sa.Uuid(), nullable=False),
    sa.Column('capsule_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.Enum('view', 'search', 'chat_turn', 'dwell', 'completion', name='ck_eventtype', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['capsule_id'], ['capsules.id'], name=op.f('fk_interaction_events_capsule_id_capsules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['interaction_id'], ['interactions.id'], name=op.f('fk_interaction_events_interaction_id_interactions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_interaction_events_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interaction_events'))
    )
    with op.batch_alter_table('interaction_events', schema=None) as batch_op:
        batch_op.create_index('ix_interaction_events_capsule_time', ['capsule_id', 'occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_events_interaction_id'), ['interaction_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_events_user_id'), ['user_id'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('interaction_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interaction_events_user_id'))
        batch_op.drop_index(batch_op.f('ix_interaction_events_interaction_id'))
        batch_op.drop_index('ix_interaction_events_capsule_time')

    op.drop_table('interaction_events')
    with op.batch_alter_table('processing_restrictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_processing_restrictions_user_id'))

    op.drop_table('processing_restrictions')
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interactions_user_id'))
        batch_op.drop_index(batch_op.f('ix_interactions_session_id'))
        batch_op.drop_index(batch_op.f('ix_interactions_capsule_id'))

    op.drop_table('interactions')
    with op.batch_alter_table('content', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_content_uploaded_by'))
        batch_op.drop_index(batch_op.f('ix_content_organization_id'))
        batch_op.drop_index(batch_op.f('ix_content_deleted_at'))
        batch_op.drop_index(batch_op.f('ix_content_capsule_id'))

    op.drop_table('content')
    with op.batch_alter_table('data_subject_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_data_subject_requests_user_id'))
        batch_op.drop_index(batch_op.f('ix_data_subject_requests_subject_hash'))
        batch_op.drop_index(batch_op.f('ix_data_subject_requests_organization_id'))

    op.drop_table('data_subject_requests')
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index('ix_consents_user_purpose_time')
        batch_op.drop_index(batch_op.f('ix_consents_user_id'))

    op.drop_table('consents')
    with op.batch_alter_table('capsules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_capsules_owner_id'))
        batch_op.drop_index(batch_op.f('ix_capsules_organization_id'))
        batch_op.drop_index(batch_op.f('ix_capsules_deleted_at'))

    op.drop_table('capsules')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_organization_id'))

    op.drop_table('users')
    op.drop_table('retention_policies')
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_legal_holds_scope_id'))
        batch_op.drop_index(batch_op.f('ix_legal_holds_organization_id'))

    op.drop_table('legal_holds')
    op.drop_table('organizations')
    op.drop_table('erasure_ledger')
    op.drop_table('backups')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_subject_ref'))
        batch_op.drop_index(batch_op.f('ix_audit_log_organization_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))

    op.drop_table('audit_log')
    
