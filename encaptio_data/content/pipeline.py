"""The content pipeline stages as plain functions: extract → chunk → embed, per capsule.

Each stage finds its own work by comparing what it last processed (a sha256 column on
content_extractions) with the content's current sha256, so it is incremental (only
changed content is redone), idempotent (a re-run finds nothing to do) and safe after a
crash (a stage commits per content item; an interrupted item is simply still pending).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data.content.chunking import CHUNKER_VERSION, chunk_extraction
from encaptio_data.content.embedding import Embedder
from encaptio_data.content.extract import EXTRACTOR_VERSION, extract
from encaptio_data.content.files import read_content
from encaptio_data.db.enums import ExtractionStatus
from encaptio_data.db.models import Chunk, Content, ContentExtraction, utcnow
from encaptio_data.db.session import Database
from encaptio_data.keys import KeyStore
from encaptio_data.search.index import chunk_batch, delete_content, open_chunks_table, upsert_content_chunks
from encaptio_data.search.service import capsule_tag, organization_tag
from encaptio_data.stores.cache import Cache
from encaptio_data.stores.objects import ObjectStore
from encaptio_data.stores.vectors import VectorStore

Progress = Callable[[int], None] | None
# Chunks per encode() call across content items (sentence-transformers batches 64 at a time).
EMBED_BATCH = 128


@dataclass
class StageReport:
    processed: int = 0
    skipped: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)
    items: int = 0
    seconds: float = 0.0
    preview: list[dict[str, Any]] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return round(self.items / self.seconds, 2) if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"processed": self.processed, "skipped": self.skipped, "statuses": dict(self.statuses),
                "failures": self.failures, "items": self.items, "seconds": round(self.seconds, 3),
                "per_second": self.per_second}


def _live_content(capsule_id: uuid.UUID | None) -> sa.Select[tuple[Content]]:
    query = sa.select(Content).where(Content.deleted_at.is_(None)).order_by(Content.created_at, Content.id)
    return query.where(Content.capsule_id == capsule_id) if capsule_id else query


def _pending(db: Database, capsule_id: uuid.UUID | None, is_pending: Callable[[Content, ContentExtraction | None], bool]
             ) -> list[uuid.UUID]:
    with db.session() as session:
        rows = session.execute(
            _live_content(capsule_id).add_columns(ContentExtraction)
            .outerjoin(ContentExtraction, ContentExtraction.content_id == Content.id)
        ).all()
        return [content.id for content, extraction in rows if is_pending(content, extraction)]


def _each(db: Database, content_ids: list[uuid.UUID]) -> Iterator[tuple[Session, Content, ContentExtraction | None]]:
    """One transaction per content item: a crash loses at most the item in flight."""
    for content_id in content_ids:
        with db.session() as session:
            content = session.get(Content, content_id)
            if content is None or content.deleted_at is not None:
                continue
            yield session, content, session.get(ContentExtraction, content_id)


def extract_content(db: Database, objects: ObjectStore, *, capsule_id: uuid.UUID | None = None,
                    progress: Progress = None, keys: KeyStore | None = None) -> StageReport:
    """Extract text from every content item whose bytes (or extractor) changed since last time.

    keys opens files sealed with their uploader's data key; without it only plain files can be read.
    """
    report, started = StageReport(), time.monotonic()
    pending = _pending(db, capsule_id, lambda c, e: e is None or e.sha256 != c.sha256
                       or e.extractor_version != EXTRACTOR_VERSION)
    for session, content, previous in _each(db, pending):
        data = read_content(objects, keys, content)
        result = extract(data, content.type, mime_type=content.mime_type, filename=content.filename)
        row = previous or ContentExtraction(content_id=content.id)
        row.sha256 = content.sha256
        row.status = ExtractionStatus(result.status)
        row.reason = result.reason
        row.extractor = result.extractor
        row.extractor_version = EXTRACTOR_VERSION
        row.text = result.text
        row.sections = [{"start": s.start, "end": s.end, "page": s.page, "heading": s.heading} for s in result.sections]
        row.metadata_ = result.metadata
        row.char_count = len(result.text)
        row.page_count = result.metadata.get("pages")
        row.extracted_at = utcnow()
        session.add(row)
        report.processed += 1
        report.items += len(data)
        report.statuses[result.status] += 1
        if result.status == "failed":
            report.failures.append({"content_id": str(content.id), "file": content.filename, "reason": result.reason or ""})
        if progress:
            progress(1)
    report.skipped = _count_live(db, capsule_id) - report.processed
    report.seconds = time.monotonic() - started
    return report


def chunk_content(db: Database, *, capsule_id: uuid.UUID | None = None, tokenizer: Any = None,
                  progress: Progress = None) -> StageReport:
    """Chunk every extraction whose text changed since it was last chunked."""
    from encaptio_data.content.chunking import load_tokenizer
    from encaptio_data.analytics.pii import mask_pii
    from encaptio_data.content.extract import Extraction, Section

    tokenizer = tokenizer or load_tokenizer()
    report, started = StageReport(), time.monotonic()
    masking = _masking_capsules(db)

    def chunker_version(content: Content) -> str:
        return CHUNKER_VERSION + ("+pii-masked" if content.capsule_id in masking else "")

    # A capsule that turns PII masking on or off changes the chunker version of its content,
    # so its chunks are rebuilt (and re-embedded) with or without masking.
    pending = _pending(db, capsule_id, lambda c, e: e is not None and e.sha256 == c.sha256
                       and (e.chunked_sha256 != e.sha256 or e.chunker_version != chunker_version(c)))
    for session, content, extraction in _each(db, pending):
        assert extraction is not None
        mask = content.capsule_id in masking
        sections = tuple(Section(text=extraction.text[s["start"]:s["end"]], **s) for s in extraction.sections)
        restored = Extraction(status=extraction.status.value, reason=extraction.reason, text=extraction.text,
                              sections=sections, metadata=extraction.metadata_, extractor=extraction.extractor)
        chunks = chunk_extraction(restored, content_id=str(content.id), content_sha256=content.sha256,
                                  tokenizer=tokenizer)
        session.execute(sa.delete(Chunk).where(Chunk.content_id == content.id))
        session.add_all(Chunk(id=c.id, content_id=content.id, capsule_id=content.capsule_id,
                              organization_id=content.organization_id, chunk_index=c.index,
                              text=mask_pii(c.text) if mask else c.text,
                              start_char=c.start, end_char=c.end, page=c.page, heading=(c.heading or None) and c.heading[:300],
                              token_count=c.token_count, content_sha256=content.sha256) for c in chunks)
        if extraction.chunker_version != chunker_version(content):
            extraction.embedded_sha256 = None
        extraction.chunked_sha256 = extraction.sha256
        extraction.chunker_version = chunker_version(content)
        extraction.chunk_count = len(chunks)
        report.processed += 1
        report.items += len(chunks)
        if len(report.preview) < 10 and chunks:
            tokens = [c.token_count for c in chunks]
            report.preview.append({"content_id": str(content.id), "type": content.type.value, "chunks": len(chunks),
                                   "tokens_min": min(tokens), "tokens_max": max(tokens),
                                   "pages": len({c.page for c in chunks if c.page})})
        if progress:
            progress(1)
    report.seconds = time.monotonic() - started
    return report


def _masking_capsules(db: Database) -> set[uuid.UUID]:
    """Capsules whose creators asked for PII to be masked before chunks are embedded."""
    from encaptio_data.analytics.pii import masks_pii
    from encaptio_data.db.models import Capsule

    with db.session() as session:
        return {capsule_id for capsule_id, settings in session.execute(sa.select(Capsule.id, Capsule.settings))
                if masks_pii(settings)}


def embed_content(db: Database, vectors: VectorStore, embedder: Embedder, *, capsule_id: uuid.UUID | None = None,
                  cache: Cache | None = None, progress: Progress = None) -> StageReport:
    """Embed the chunks of every item chunked since it was last embedded; drop deleted content.

    Only the changed items' chunks go through the model; LanceDB receives them with
    merge_insert on the chunk id, so unchanged items are never rewritten.
    """
    report, started = StageReport(), time.monotonic()
    table = open_chunks_table(vectors)
    pending = _pending(db, capsule_id, lambda c, e: e is not None and e.chunked_sha256 == c.sha256
                       and (e.embedded_sha256 != c.sha256 or e.embedding_model != embedder.model_name))
    touched: set[tuple[uuid.UUID, uuid.UUID]] = set()
    waiting: list[tuple[uuid.UUID, str, list[dict[str, Any]]]] = []

    def flush() -> None:
        # One encode() for the chunks of several items: the model is several times faster on
        # full batches than on one small document at a time. Each item is still marked
        # embedded only after its own rows are in LanceDB, so a crash redoes unfinished items.
        vectors_ = embedder.encode([row["text"] for _, _, rows in waiting for row in rows])
        offset = 0
        for content_id, sha256, rows in waiting:
            upsert_content_chunks(table, content_id, chunk_batch(rows, vectors_[offset:offset + len(rows)]))
            offset += len(rows)
            with db.session() as session:
                extraction = session.get(ContentExtraction, content_id)
                if extraction is not None and extraction.chunked_sha256 == sha256:
                    extraction.embedded_sha256 = sha256
                    extraction.embedding_model = embedder.model_name
                    extraction.embedded_at = utcnow()
            report.processed += 1
            report.items += len(rows)
            if progress:
                progress(1)
        waiting.clear()

    for session, content, _ in _each(db, pending):
        chunks = session.scalars(sa.select(Chunk).where(Chunk.content_id == content.id).order_by(Chunk.chunk_index))
        rows = [{"id": c.id, "content_id": str(content.id), "capsule_id": str(content.capsule_id),
                 "organization_id": str(content.organization_id), "content_type": content.type.value,
                 "created_at": content.created_at, "chunk_index": c.chunk_index, "page": c.page, "heading": c.heading,
                 "title": content.title, "text": c.text} for c in chunks]
        waiting.append((content.id, content.sha256, rows))
        touched.add((content.organization_id, content.capsule_id))
        if sum(len(item[2]) for item in waiting) >= EMBED_BATCH:
            flush()
    if waiting:
        flush()
    removed = remove_deleted_content(db, table, capsule_id=capsule_id)
    touched |= removed
    report.statuses["removed_deleted"] = len(removed)
    if cache is not None:
        invalidate_search_cache(cache, touched)
    report.seconds = time.monotonic() - started
    return report


def remove_deleted_content(db: Database, table: Any, *, capsule_id: uuid.UUID | None = None
                           ) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Soft-deleted content leaves every search mode at once; its rows stay for the recovery window."""
    with db.session() as session:
        query = (sa.select(Content.id, Content.organization_id, Content.capsule_id)
                 .join(ContentExtraction, ContentExtraction.content_id == Content.id)
                 .where(Content.deleted_at.is_not(None), ContentExtraction.embedded_sha256.is_not(None)))
        if capsule_id:
            query = query.where(Content.capsule_id == capsule_id)
        deleted = session.execute(query).all()
        delete_content(table, [row.id for row in deleted])
        if deleted:
            session.execute(sa.update(ContentExtraction)
                            .where(ContentExtraction.content_id.in_([row.id for row in deleted]))
                            .values(embedded_sha256=None, embedded_at=None))
    return {(row.organization_id, row.capsule_id) for row in deleted}


def invalidate_search_cache(cache: Cache, touched: set[tuple[uuid.UUID, uuid.UUID]]) -> int:
    removed = 0
    for organization_id, capsule_id in touched:
        removed += cache.invalidate_tag(organization_tag(organization_id))
        removed += cache.invalidate_tag(capsule_tag(capsule_id))
    return removed


def _count_live(db: Database, capsule_id: uuid.UUID | None) -> int:
    with db.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(_live_content(capsule_id).subquery())) or 0


def soft_delete_content(db: Database, vectors: VectorStore, cache: Cache | None, content_id: uuid.UUID | str) -> None:
    """Delete a content item for its users now; the row and object stay for the recovery window.

    Search stops returning it immediately (its LanceDB rows and cached result lists go), and
    the purge job removes the rest once the window has passed.
    """
    from encaptio_data.accounts import parse_uuid
    from encaptio_data.errors import NotFoundError

    content_uuid = parse_uuid(content_id, "content")
    with db.session() as session:
        content = session.get(Content, content_uuid)
        if content is None:
            raise NotFoundError(f"content {content_id} does not exist")
        if content.deleted_at is None:
            content.deleted_at = utcnow()
        touched = {(content.organization_id, content.capsule_id)}
    remove_deleted_content(db, open_chunks_table(vectors), capsule_id=content.capsule_id)
    if cache is not None:
        invalidate_search_cache(cache, touched)


def chunk_token_counts(db: Database, capsule_id: uuid.UUID) -> list[int]:
    """Tokens per chunk of the capsule's live content, for the chunks asset's histogram."""
    with db.session() as session:
        return list(session.scalars(
            sa.select(Chunk.token_count).join(Content, Content.id == Chunk.content_id)
            .where(Chunk.capsule_id == capsule_id, Content.deleted_at.is_(None))))
