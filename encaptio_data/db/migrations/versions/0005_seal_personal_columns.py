"""seal personal columns with the subject's data key

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

users.email, users.name, users.metadata, data_subject_requests.subject_email and
data_subject_requests.changes become sealed text (db/sealing.py); users get a blind index
of the email, which takes over the per-organization uniqueness the plaintext had. The
checks on the email's form move to accounts.py: the database only sees ciphertext.
"""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from encaptio_data.db import sealing
from encaptio_data.keys import KeyDestroyedError

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_USERS = sa.table('users', sa.column('id', sa.Uuid()), sa.column('email', sa.Text()), sa.column('name', sa.Text()),
                  sa.column('metadata', sa.Text()), sa.column('email_index', sa.String(64)))
_REQUESTS = sa.table('data_subject_requests', sa.column('id', sa.Uuid()), sa.column('user_id', sa.Uuid()),
                     sa.column('subject_email', sa.Text()), sa.column('changes', sa.Text()))


def _keys(rows: int) -> Any:
    keys = context.config.attributes.get('keys')
    if keys is None and rows:
        raise RuntimeError('migration 0005 seals personal columns and needs the key store: '
                           'run it with `encaptio migrate` (Database(url, keys=...))')
    return keys


def _to_text(batch_op: Any, column: str, existing: Any, *, json_column: bool) -> None:
    batch_op.alter_column(column, type_=sa.Text(), existing_type=existing,
                          postgresql_using=f'{column}::text' if json_column else None)


def _json_type() -> Any:
    from sqlalchemy.dialects import postgresql
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_index', sa.String(length=64), nullable=True))
        batch_op.drop_constraint('uq_users_organization_email', type_='unique')
        batch_op.drop_constraint(batch_op.f('ck_users_email_has_at'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_users_email_lower_case'), type_='check')
        _to_text(batch_op, 'email', sa.String(length=320), json_column=False)
        _to_text(batch_op, 'name', sa.String(length=200), json_column=False)
        _to_text(batch_op, 'metadata', _json_type(), json_column=True)
    with op.batch_alter_table('data_subject_requests', schema=None) as batch_op:
        _to_text(batch_op, 'subject_email', sa.String(length=320), json_column=False)
        _to_text(batch_op, 'changes', _json_type(), json_column=True)

    bind = op.get_bind()
    users = bind.execute(sa.select(_USERS.c.id, _USERS.c.email, _USERS.c.name, _USERS.c.metadata)).all()
    requests = bind.execute(sa.select(_REQUESTS.c.id, _REQUESTS.c.user_id, _REQUESTS.c.subject_email,
                                      _REQUESTS.c.changes).where(_REQUESTS.c.user_id.is_not(None))).all()
    keys = _keys(len(users) + len(requests))
    users = [user for user in users if not sealing.is_sealed(user.email)]
    if keys is not None:
        # One flush to disk for every new key, not two fsyncs per user.
        keys.ensure_data_keys(str(user.id) for user in users)
    sealed_users = [{
        'user_id': user.id,
        'email_index': sealing.email_index(keys, user.email),
        'email': sealing.seal(keys, user.id, 'users.email', user.email),
        'name': sealing.seal(keys, user.id, 'users.name', user.name),
        'metadata': sealing.seal(keys, user.id, 'users.metadata', json.loads(user.metadata or '{}'), json_value=True),
    } for user in users]
    if sealed_users:
        bind.execute(sa.update(_USERS).where(_USERS.c.id == sa.bindparam('user_id')).values(
            email_index=sa.bindparam('email_index'), email=sa.bindparam('email'), name=sa.bindparam('name'),
            metadata=sa.bindparam('metadata')), sealed_users)
    for request in requests:
        values = {}
        if request.subject_email and not sealing.is_sealed(request.subject_email):
            values['subject_email'] = sealing.seal(keys, request.user_id, 'data_subject_requests.subject_email',
                                                   request.subject_email)
        if request.changes and not sealing.is_sealed(request.changes):
            values['changes'] = sealing.seal(keys, request.user_id, 'data_subject_requests.changes',
                                             json.loads(request.changes), json_value=True)
        if values:
            bind.execute(sa.update(_REQUESTS).where(_REQUESTS.c.id == request.id).values(**values))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('email_index', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint('uq_users_organization_email_index', ['organization_id', 'email_index'])


def _opened(keys: Any, field_name: str, value: str | None) -> str | None:
    if not sealing.is_sealed(value):
        return value
    try:
        return sealing.open_sealed(keys, field_name, value)
    except KeyDestroyedError:
        return sealing.ERASED


def downgrade() -> None:
    bind = op.get_bind()
    users = bind.execute(sa.select(_USERS.c.id, _USERS.c.email, _USERS.c.name, _USERS.c.metadata)).all()
    requests = bind.execute(sa.select(_REQUESTS.c.id, _REQUESTS.c.subject_email, _REQUESTS.c.changes)).all()
    keys = _keys(len(users) + len(requests))
    for user in users:
        metadata = _opened(keys, 'users.metadata', user.metadata)
        bind.execute(sa.update(_USERS).where(_USERS.c.id == user.id).values(
            email=_opened(keys, 'users.email', user.email), name=_opened(keys, 'users.name', user.name),
            metadata='{}' if metadata == sealing.ERASED else metadata))
    for request in requests:
        changes = _opened(keys, 'data_subject_requests.changes', request.changes)
        bind.execute(sa.update(_REQUESTS).where(_REQUESTS.c.id == request.id).values(
            subject_email=_opened(keys, 'data_subject_requests.subject_email', request.subject_email),
            changes='{}' if changes == sealing.ERASED else changes))

    with op.batch_alter_table('data_subject_requests', schema=None) as batch_op:
        batch_op.alter_column('subject_email', type_=sa.String(length=320), existing_type=sa.Text())
        batch_op.alter_column('changes', type_=_json_type(), existing_type=sa.Text(),
                              postgresql_using='changes::jsonb')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('uq_users_organization_email_index', type_='unique')
        batch_op.drop_column('email_index')
        batch_op.alter_column('email', type_=sa.String(length=320), existing_type=sa.Text())
        batch_op.alter_column('name', type_=sa.String(length=200), existing_type=sa.Text())
        batch_op.alter_column('metadata', type_=_json_type(), existing_type=sa.Text(), postgresql_using='metadata::jsonb')
        batch_op.create_unique_constraint('uq_users_organization_email', ['organization_id', 'email'])
        batch_op.create_check_constraint(batch_op.f('ck_users_email_has_at'), "email LIKE '%_@_%'")
        batch_op.create_check_constraint(batch_op.f('ck_users_email_lower_case'), 'email = lower(email)')
