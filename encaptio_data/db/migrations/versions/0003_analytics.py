"""analytics

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('analytics_quarantine',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('capsule_id', sa.Uuid(), nullable=True),
    sa.Column('event_type', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('quarantined_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_quarantine'))
    )
    with op.batch_alter_table('analytics_quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_analytics_quarantine_day'), ['day'], unique=False)
        batch_op.create_index(batch_op.f('ix_analytics_quarantine_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_analytics_quarantine_reason'), ['reason'], unique=False)

    op.create_table('daily_engagement_runs',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('materialized_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('events_read', sa.Integer(), nullable=False),
    sa.Column('events_aggregated', sa.Integer(), nullable=False),
    sa.Column('events_quarantined', sa.Integer(), nullable=False),
    sa.Column('events_excluded', sa.Integer(), nullable=False),
    sa.Column('subjects_excluded', sa.Integer(), nullable=False),
    sa.Column('top_query_k', sa.Integer(), nullable=False),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('raw_purged_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('events_read = events_aggregated + events_quarantined + events_excluded', name=op.f('ck_daily_engagement_runs_events_reconcile')),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_daily_engagement_runs'))
    )
    op.create_table('pii_scan_state',
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('source_key', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=False),
    sa.Column('findings', sa.Integer(), nullable=False),
    sa.Column('scanned_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'source_key', name=op.f('pk_pii_scan_state'))
    )
    op.create_table('privacy_budget',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('dataset', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('epsilon', sa.Float(), nullable=False),
    sa.Column('epsilon_budget', sa.Float(), nullable=False),
    sa.Column('epsilon_remaining', sa.Float(), nullable=False),
    sa.Column('mechanism', sa.String(length=32), nullable=False),
    sa.Column('parameters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('object_key', sa.String(length=1024), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('epsilon > 0', name=op.f('ck_privacy_budget_epsilon_positive')),
    sa.CheckConstraint('epsilon_remaining >= 0 AND epsilon_remaining <= epsilon_budget', name=op.f('ck_privacy_budget_within_budget')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_privacy_budget'))
    )
    with op.batch_alter_table('privacy_budget', schema=None) as batch_op:
        batch_op.create_index('ix_privacy_budget_dataset_period', ['dataset', 'period'], unique=False)

    op.create_table('daily_engagement',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('capsule_id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('views', sa.Integer(), nullable=False),
    sa.Column('unique_sessions', sa.Integer(), nullable=False),
    sa.Column('searches', sa.Integer(), nullable=False),
    sa.Column('chat_turns', sa.Integer(), nullable=False),
    sa.Column('dwell_events', sa.Integer(), nullable=False),
    sa.Column('completions', sa.Integer(), nullable=False),
    sa.Column('total_dwell_seconds', sa.Float(), nullable=False),
    sa.Column('median_dwell_seconds', sa.Float(), nullable=True),
    sa.Column('unique_users', sa.Integer(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('events >= 0 AND views >= 0 AND unique_sessions >= 0 AND searches >= 0 AND chat_turns >= 0 AND dwell_events >= 0 AND completions >= 0 AND unique_users >= 0', name=op.f('ck_daily_engagement_counts_not_negative')),
    sa.CheckConstraint('total_dwell_seconds >= 0', name=op.f('ck_daily_engagement_dwell_not_negative')),
    sa.ForeignKeyConstraint(['capsule_id'], ['capsules.id'], name=op.f('fk_daily_engagement_capsule_id_capsules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_daily_engagement_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('day', 'capsule_id', name=op.f('pk_daily_engagement'))
    )
    with op.batch_alter_table('daily_engagement', schema=None) as batch_op:
        batch_op.create_index('ix_daily_engagement_capsule_day', ['capsule_id', 'day'], unique=False)
        batch_op.create_index(batch_op.f('ix_daily_engagement_organization_id'), ['organization_id'], unique=False)

    op.create_table('daily_top_queries',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('capsule_id', sa.Uuid(), nullable=False),
    sa.Column('query_norm', sa.String(length=200), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('subjects', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.CheckConstraint('count >= subjects AND subjects > 0', name=op.f('ck_daily_top_queries_count_covers_subjects')),
    sa.CheckConstraint('rank > 0', name=op.f('ck_daily_top_queries_rank_positive')),
    sa.ForeignKeyConstraint(['capsule_id'], ['capsules.id'], name=op.f('fk_daily_top_queries_capsule_id_capsules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('day', 'capsule_id', 'query_norm', name=op.f('pk_daily_top_queries'))
    )
    op.create_table('pii_findings',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('content_id', sa.Uuid(), nullable=True),
    sa.Column('event_id', sa.Uuid(), nullable=True),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=64), nullable=False),
    sa.Column('start_char', sa.Integer(), nullable=False),
    sa.Column('end_char', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('value_hash', sa.String(length=80), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('content', 'event')", name=op.f('ck_pii_findings_source_known')),
    sa.CheckConstraint('(content_id IS NULL) != (event_id IS NULL)', name=op.f('ck_pii_findings_one_target')),
    sa.CheckConstraint('end_char > start_char AND start_char >= 0', name=op.f('ck_pii_findings_offsets_ordered')),
    sa.ForeignKeyConstraint(['content_id'], ['content.id'], name=op.f('fk_pii_findings_content_id_content'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['interaction_events.id'], name=op.f('fk_pii_findings_event_id_interaction_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pii_findings'))
    )
    with op.batch_alter_table('pii_findings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pii_findings_content_id'), ['content_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pii_findings_entity_type'), ['entity_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_pii_findings_event_id'), ['event_id'], unique=False)

    with op.batch_alter_table('interaction_events', schema=None) as batch_op:
        batch_op.create_index('ix_interaction_events_occurred_at', ['occurred_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('interaction_events', schema=None) as batch_op:
        batch_op.drop_index('ix_interaction_events_occurred_at')

    with op.batch_alter_table('pii_findings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pii_findings_event_id'))
        batch_op.drop_index(batch_op.f('ix_pii_findings_entity_type'))
        batch_op.drop_index(batch_op.f('ix_pii_findings_content_id'))

    op.drop_table('pii_findings')
    op.drop_table('daily_top_queries')
    with op.batch_alter_table('daily_engagement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_daily_engagement_organization_id'))
        batch_op.drop_index('ix_daily_engagement_capsule_day')

    op.drop_table('daily_engagement')
    with op.batch_alter_table('privacy_budget', schema=None) as batch_op:
        batch_op.drop_index('ix_privacy_budget_dataset_period')

    op.drop_table('privacy_budget')
    op.drop_table('pii_scan_state')
    op.drop_table('daily_engagement_runs')
    with op.batch_alter_table('analytics_quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_analytics_quarantine_reason'))
        batch_op.drop_index(batch_op.f('ix_analytics_quarantine_event_id'))
        batch_op.drop_index(batch_op.f('ix_analytics_quarantine_day'))

    op.drop_table('analytics_quarantine')
