"""Load the demo corpus into the stores, idempotently.

Every id in the corpus is deterministic, so a re-run (after a crash, or on purpose) inserts
only what is missing and puts only files whose bytes are not already the latest version:
it converges to the same state instead of duplicating it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from encaptio_data.content.files import put_file_if_changed
from encaptio_data.content.uploads import encode_metadata, upload_key
from encaptio_data.corpus import Corpus, CorpusSpec, generate
from encaptio_data.db import sealing
from encaptio_data.db.models import Base, Capsule, Consent, Interaction, InteractionEvent, Organization, User
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform

_CONSENT_NAMESPACE = uuid.UUID("6f1c3f0e-8a0d-4a53-9d55-2f0b7d3c9e41")
_BATCH = 2_000


class ProgressSink(Protocol):
    """The part of rich.progress.Progress we use; the CLI passes one, tests pass none."""

    def add_task(self, description: str, total: float | None = ...) -> Any: ...
    def advance(self, task_id: Any, advance: float = ...) -> None: ...


def _rows(corpus: Corpus) -> list[tuple[type[Base], list[dict[str, Any]]]]:
    def capsule_row(c: Any) -> dict[str, Any]:
        updated = max(c.created_at, c.published_at or c.created_at)
        return {"id": c.id, "organization_id": c.organization_id, "owner_id": c.owner_id, "title": c.title,
                "description": c.description, "status": c.status, "settings": {**c.settings, "topic": c.topic},
                "created_at": c.created_at, "updated_at": updated, "published_at": c.published_at}

    return [
        (Organization, [{"id": o.id, "name": o.name, "slug": o.slug, "tier": o.tier} for o in corpus.organizations]),
        (User, [{"id": u.id, "organization_id": u.organization_id, "email": u.email, "name": u.name, "role": u.role,
                 "metadata_": u.metadata, "created_at": u.created_at, "updated_at": u.created_at} for u in corpus.users]),
        (Capsule, [capsule_row(c) for c in corpus.capsules]),
        (Interaction, [{"id": i.id, "capsule_id": i.capsule_id, "user_id": i.user_id, "session_id": i.session_id,
                        "started_at": i.started_at} for i in corpus.interactions]),
        (InteractionEvent, [{"id": e.id, "interaction_id": e.interaction_id, "capsule_id": e.capsule_id,
                             "user_id": e.user_id, "session_id": e.session_id, "event_type": e.event_type,
                             "payload": e.payload, "occurred_at": e.occurred_at} for e in corpus.events]),
        (Consent, [{"id": uuid.uuid5(_CONSENT_NAMESPACE, f"{c.user_id}/{c.purpose}/{c.recorded_at.isoformat()}"),
                    "user_id": c.user_id, "purpose": c.purpose, "granted": c.granted, "version": c.version,
                    "recorded_at": c.recorded_at} for c in corpus.consents]),
    ]


def _batches(rows: Sequence[dict[str, Any]], size: int = _BATCH) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def seed_demo(platform: Platform, spec: CorpusSpec | None = None, *, progress: ProgressSink | None = None) -> dict[str, Any]:
    spec = spec or CorpusSpec()
    corpus = generate(spec)
    inserted: dict[str, int] = {}
    for model, rows in _rows(corpus):
        task = progress.add_task(f"rows: {model.__tablename__}", total=len(rows)) if progress else None
        inserted[model.__tablename__] = 0
        # One transaction per batch: a crash loses at most the batch in flight, and the
        # re-run skips every id already present.
        for batch in _batches(rows):
            with platform.db.session() as session:
                ids = [row["id"] for row in batch]
                present = set(session.scalars(sa.select(model.id).where(model.id.in_(ids))))
                missing = [row for row in batch if row["id"] not in present]
                if missing:
                    sealing.insert_rows(session, model, missing)
                inserted[model.__tablename__] += len(missing)
            if progress:
                progress.advance(task, len(batch))

    uploaded = unchanged = 0
    keys = KeyStore(platform.settings.keys_dir)
    task = progress.add_task("files: uploads", total=len(corpus.files)) if progress else None
    for file in corpus.files:
        key = upload_key(file.organization_id, file.capsule_id, file.filename)
        metadata = {"title": file.title, "topic": file.topic, **file.metadata}
        _, new = put_file_if_changed(platform.objects, keys, key, file.data, uploaded_by=file.uploaded_by,
                                     content_type=file.mime_type, metadata=encode_metadata(metadata))
        uploaded, unchanged = uploaded + new, unchanged + (not new)
        if progress:
            progress.advance(task, 1)
    return {"spec": {k: str(v) for k, v in dataclasses.asdict(spec).items()},
            "rows_inserted": inserted, "files_uploaded": uploaded, "files_unchanged": unchanged,
            "corpus": corpus.summary()}

