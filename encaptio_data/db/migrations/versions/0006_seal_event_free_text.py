"""seal the free text of interaction events and the clients of interactions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

interaction_events.payload keeps its JSON type: its ``query`` and ``question`` fields become
sealed under the user's data key, each beside a blind index (``query_index``,
``question_index``) the daily aggregation counts by; every field of interactions.client is
sealed. Rows of anonymous sessions keep plain text and get the index only (db/sealing.py).
Rows are rewritten in batches, each batch's new keys created with one flush to disk.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from encaptio_data.db import sealing

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_FREE_TEXT = ('query', 'question')
_PAYLOAD = sealing.SealedFields('interaction_events.payload', fields=_FREE_TEXT, indexed=_FREE_TEXT)
_CLIENT = sealing.SealedFields('interactions.client')


def _keys() -> Any:
    keys = context.config.attributes.get('keys')
    if keys is None:
        raise RuntimeError('migration 0006 seals event payloads and needs the key store: '
                           'run it with `encaptio migrate` (Database(url, keys=...))')
    return keys


def _rewrite(name: str, column: str, change: Callable[[Any, Any, Any], Any], *, sealing_keys: bool) -> None:
    bind = op.get_bind()
    if bind.execute(sa.text(f'SELECT count(*) FROM {name}')).scalar() == 0:
        return
    sealing.rewrite_json_rows(bind, _keys(), name, column, change, create_keys=sealing_keys)


def _sealed(kind: sealing.SealedFields) -> Callable[[Any, Any, Any], Any]:
    indexer: list[Callable[[str], str]] = []  # the secret is read once, not per row

    def change(keys: Any, subject: Any, value: Any) -> Any:
        if not indexer:
            indexer.append(sealing.text_indexer(keys))
        return kind.seal_with(keys, subject, value, indexer=indexer[0])
    return change


def upgrade() -> None:
    _rewrite('interaction_events', 'payload', _sealed(_PAYLOAD), sealing_keys=True)
    _rewrite('interactions', 'client', _sealed(_CLIENT), sealing_keys=True)


def downgrade() -> None:
    _rewrite('interaction_events', 'payload', lambda keys, _subject, value: _PAYLOAD.open_with(keys, value),
             sealing_keys=False)
    _rewrite('interactions', 'client', lambda keys, _subject, value: _CLIENT.open_with(keys, value),
             sealing_keys=False)
