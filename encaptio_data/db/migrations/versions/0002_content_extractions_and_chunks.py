"""content extractions and chunks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('chunks',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('content_id', sa.Uuid(), nullable=False),
    sa.Column('capsule_id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('chunk_index', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('start_char', sa.Integer(), nullable=False),
    sa.Column('end_char', sa.Integer(), nullable=False),
    sa.Column('page', sa.Integer(), nullable=True),
    sa.Column('heading', sa.String(length=300), nullable=True),
    sa.Column('token_count', sa.Integer(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.CheckConstraint('end_char > start_char AND start_char >= 0', name=op.f('ck_chunks_offsets_ordered')),
    sa.CheckConstraint('length(text) > 0', name=op.f('ck_chunks_text_not_empty')),
    sa.CheckConstraint('token_count > 0', name=op.f('ck_chunks_token_count_positive')),
    sa.ForeignKeyConstraint(['capsule_id'], ['capsules.id'], name=op.f('fk_chunks_capsule_id_capsules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['content_id'], ['content.id'], name=op.f('fk_chunks_content_id_content'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_chunks_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chunks')),
    sa.UniqueConstraint('content_id', 'chunk_index', name='uq_chunks_content_index')
    )
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chunks_capsule_id'), ['capsule_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chunks_organization_id'), ['organization_id'], unique=False)

    op.create_table('content_extractions',
    sa.Column('content_id', sa.Uuid(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('ok', 'failed', 'metadata_only', name='ck_extractionstatus', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('extractor', sa.String(length=64), nullable=False),
    sa.Column('extractor_version', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('sections', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('char_count', sa.Integer(), nullable=False),
    sa.Column('page_count', sa.Integer(), nullable=True),
    sa.Column('extracted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('chunked_sha256', sa.String(length=64), nullable=True),
    sa.Column('chunker_version', sa.String(length=16), nullable=True),
    sa.Column('chunk_count', sa.Integer(), nullable=False),
    sa.Column('embedded_sha256', sa.String(length=64), nullable=True),
    sa.Column('embedding_model', sa.String(length=128), nullable=True),
    sa.Column('embedded_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status != 'failed' OR reason IS NOT NULL", name=op.f('ck_content_extractions_failure_has_reason')),
    sa.CheckConstraint('char_count >= 0', name=op.f('ck_content_extractions_char_count_not_negative')),
    sa.CheckConstraint('chunk_count >= 0', name=op.f('ck_content_extractions_chunk_count_not_negative')),
    sa.ForeignKeyConstraint(['content_id'], ['content.id'], name=op.f('fk_content_extractions_content_id_content'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('content_id', name=op.f('pk_content_extractions'))
    )
    


def downgrade() -> None:
    
    op.drop_table('content_extractions')
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chunks_organization_id'))
        batch_op.drop_index(batch_op.f('ix_chunks_capsule_id'))

    op.drop_table('chunks')
    
