"""`encaptio bench quality`: every quality check, timed at scale on synthetic data.

The data has the shape the pipeline leaves behind (content rows pointing at real object
versions, extractions marked chunked and embedded, chunks, LanceDB rows with unit
vectors), built directly rather than through extraction and the embedding model, which at
~20 chunks/s on a laptop would take most of a day for a million chunks. The same builder
gives the quality tests their small, model-free corpora.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from bench._common import (
    ProgressCallback,
    default_data_dir,
    finish_machine_info,
    machine_info,
    peak_rss_mib,
    ratio,
    say,
    stopwatch,
)
from encaptio_data.bootstrap import initialize
from encaptio_data.content.chunking import CHUNKER_VERSION, chunk_id
from encaptio_data.content.embedding import DIMENSION, MODEL_NAME
from encaptio_data.content.uploads import UPLOADS_PREFIX, upload_key
from encaptio_data.db import sealing
from encaptio_data.db.enums import CapsuleStatus, ContentType, EventType, ExtractionStatus, OrganizationTier, UserRole
from encaptio_data.db.models import (
    Capsule,
    Chunk,
    Content,
    ContentExtraction,
    Interaction,
    InteractionEvent,
    Organization,
    User,
)
from encaptio_data.platform import Platform
from encaptio_data.search.index import chunk_batch, open_chunks_table
from encaptio_data.settings import get_settings

# Bump when the builder changes what it writes, so cached stores are rebuilt.
DATASET_VERSION = 1
TARGET_SECONDS = 60
_NAMESPACE = uuid.UUID("a3f1c9e2-5b7d-4e08-9c61-2d4f8b0e7a15")
_ROW_BATCH = 20_000
_VECTOR_BATCH = 50_000
_PUT_WORKERS = 16
_EVENT_TYPES = list(EventType)


def _id(kind: str, *parts: object) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, "/".join([kind, *map(str, parts)]))


@dataclass
class SyntheticStores:
    organization_id: uuid.UUID
    capsule_ids: list[uuid.UUID]
    content_ids: list[uuid.UUID]
    chunks: int
    events: int
    seconds: dict[str, float] = field(default_factory=dict)


def _batches(rows: list[dict[str, Any]], size: int = _ROW_BATCH) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def build_synthetic_stores(platform: Platform, *, capsules: int, content_per_capsule: int, chunks_per_content: int,
                    events_per_capsule: int = 10, seed: int = 0, embed: bool = True) -> SyntheticStores:
    """One organization with ``capsules`` capsules of plain-text uploads, registered, chunked and embedded.

    Every object is really put (so versions and digests are the store's own), every row goes
    through the ORM's tables (so the constraints hold), and every vector is a random unit
    vector: clean data by construction, which tests then damage one way at a time.
    """
    initialize(platform)
    rng = np.random.default_rng(seed)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    now = datetime.now(UTC).replace(microsecond=0)
    created = now - timedelta(days=30)
    organization_id = _id("organization", seed)
    users = [{"id": _id("user", seed, role), "organization_id": organization_id,
              "email": f"{role.value}.{seed}@bench.example", "name": f"Bench {role.value}", "role": role,
              "metadata_": {}, "created_at": created, "updated_at": created}
             for role in (UserRole.ADMIN, UserRole.CREATOR, UserRole.VIEWER)]
    creator = users[1]["id"]
    capsule_rows = [{"id": _id("capsule", seed, c), "organization_id": organization_id, "owner_id": creator,
                     "title": f"Capsule {c}", "description": "", "status": CapsuleStatus.PUBLISHED, "settings": {},
                     "created_at": created, "updated_at": created, "published_at": created} for c in range(capsules)]

    files = [(capsule["id"], index) for capsule in capsule_rows for index in range(content_per_capsule)]

    def put(item: tuple[uuid.UUID, int]) -> dict[str, Any]:
        capsule_id, index = item
        key = upload_key(organization_id, capsule_id, f"document-{index}.txt")
        version = platform.objects.put(key, f"Synthetic document {index} of capsule {capsule_id}.\n".encode(),
                                       content_type="text/plain")
        return {"id": _id("content", capsule_id, index), "capsule_id": capsule_id, "organization_id": organization_id,
                "uploaded_by": creator, "type": ContentType.TEXT, "title": f"Document {index}",
                "filename": f"document-{index}.txt", "object_key": key, "object_version": version.version_id,
                "sha256": version.sha256, "size_bytes": version.size, "mime_type": "text/plain", "metadata_": {},
                "created_at": created}

    with ThreadPoolExecutor(max_workers=_PUT_WORKERS) as pool:
        content_rows = list(pool.map(put, files))
    seconds["objects"] = round(time.monotonic() - started, 1)

    mark = time.monotonic()
    chunk_rows: list[dict[str, Any]] = []
    extraction_rows = []
    for content in content_rows:
        texts = [f"Chunk {i} of document {content['filename']} in capsule {content['capsule_id']}."
                 for i in range(chunks_per_content)]
        offset = 0
        for index, text in enumerate(texts):
            chunk_rows.append({"id": chunk_id(content["id"], content["sha256"], index), "content_id": content["id"],
                               "capsule_id": content["capsule_id"], "organization_id": organization_id,
                               "chunk_index": index, "text": text, "start_char": offset, "end_char": offset + len(text),
                               "page": None, "heading": None, "token_count": 12,
                               "content_sha256": content["sha256"]})
            offset += len(text) + 1
        extraction_rows.append({"content_id": content["id"], "sha256": content["sha256"], "status": ExtractionStatus.OK,
                                "reason": None, "extractor": "synthetic", "extractor_version": "1", "text": "",
                                "sections": [], "metadata_": {}, "char_count": offset, "page_count": None,
                                "extracted_at": now, "chunked_sha256": content["sha256"],
                                "chunker_version": CHUNKER_VERSION, "chunk_count": len(texts),
                                "embedded_sha256": content["sha256"] if embed else None,
                                "embedding_model": MODEL_NAME if embed else None,
                                "embedded_at": now if embed else None})
    interactions, events = [], []
    for capsule in capsule_rows:
        if not events_per_capsule:
            continue
        interaction_id = _id("interaction", capsule["id"])
        interactions.append({"id": interaction_id, "capsule_id": capsule["id"], "user_id": users[2]["id"],
                             "session_id": interaction_id.hex, "started_at": now - timedelta(days=1), "client": {}})
        events += [{"id": _id("event", capsule["id"], e), "interaction_id": interaction_id, "capsule_id": capsule["id"],
                    "user_id": users[2]["id"], "session_id": interaction_id.hex,
                    "event_type": _EVENT_TYPES[e % len(_EVENT_TYPES)], "payload": {},
                    "occurred_at": now - timedelta(days=1) + timedelta(seconds=e)} for e in range(events_per_capsule)]

    for model, rows in ((Organization, [{"id": organization_id, "name": f"Bench {seed}", "slug": f"bench-{seed}",
                                         "tier": OrganizationTier.STANDARD}]),
                        (User, users), (Capsule, capsule_rows), (Content, content_rows),
                        (ContentExtraction, extraction_rows), (Chunk, chunk_rows), (Interaction, interactions),
                        (InteractionEvent, events)):
        for batch in _batches(rows):
            with platform.db.session() as session:
                sealing.insert_rows(session, model, batch)
    seconds["rows"] = round(time.monotonic() - mark, 1)

    mark = time.monotonic()
    if embed:
        table = open_chunks_table(platform.vectors)
        by_content = {content["id"]: content for content in content_rows}
        for start in range(0, len(chunk_rows), _VECTOR_BATCH):
            batch = chunk_rows[start:start + _VECTOR_BATCH]
            vectors = rng.standard_normal((len(batch), DIMENSION), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            rows = [{"id": c["id"], "content_id": str(c["content_id"]), "capsule_id": str(c["capsule_id"]),
                     "organization_id": str(organization_id), "content_type": ContentType.TEXT.value,
                     "created_at": by_content[c["content_id"]]["created_at"], "chunk_index": c["chunk_index"],
                     "page": None, "heading": None, "title": by_content[c["content_id"]]["title"], "text": c["text"]}
                    for c in batch]
            table.add(chunk_batch(rows, vectors))
    seconds["vectors"] = round(time.monotonic() - mark, 1)
    return SyntheticStores(organization_id=organization_id, capsule_ids=[c["id"] for c in capsule_rows],
                           content_ids=[c["id"] for c in content_rows], chunks=len(chunk_rows), events=len(events),
                           seconds=seconds)


def bench_platform(data_dir: Path) -> Platform:
    """The embedded stores in ``data_dir`` whatever ENCAPTIO_* says: SQLite, local objects, LanceDB."""
    return Platform(get_settings(data_dir=data_dir, database_url=None, object_store=None, lancedb_uri=None,
                                 redis_url=None))


def _bare_reads(platform: Platform) -> dict[str, float]:
    """The floor under the checks: reading once, with no checking, what they read.

    The upload listing, the content and chunk columns the suites take (through the DBAPI, no
    ORM), and every vector from LanceDB; the checks cannot cost less than this.
    """
    seconds = {}
    cpu_started = time.process_time()
    with stopwatch() as t:
        sum(1 for _ in platform.objects.list(UPLOADS_PREFIX))
    seconds["list_uploads"] = t["seconds"]
    with stopwatch() as t, platform.db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT id, sha256, size_bytes, mime_type, type FROM content").fetchall()
        conn.exec_driver_sql("SELECT id, length(text), token_count, start_char, end_char FROM chunks").fetchall()
    seconds["read_rows"] = t["seconds"]
    with stopwatch() as t:
        for batch in open_chunks_table(platform.vectors).to_lance().to_batches(columns=["id", "content_id", "vector"]):
            batch.column("vector").flatten().to_numpy(zero_copy_only=False).sum()
    seconds["read_vectors"] = t["seconds"]
    seconds["total"] = round(sum(seconds.values()), 3)
    seconds["cpu_total"] = round(time.process_time() - cpu_started, 3)
    return seconds


def run_quality_bench(chunks: int = 1_000_000, content_rows: int = 100_000, data_dir: str | Path | None = None, *,
                      content_per_capsule: int = 100, progress: ProgressCallback = None,
                      rebuild: bool = False) -> dict[str, Any]:
    """Every quality check over ``content_rows`` items and ``chunks`` chunks, against bare reads of the same data.

    The synthetic stores are built once under ``<data dir>/quality`` (default: the bench
    dir beside the platform's data) and reused while the sizes stay the same; ``rebuild``
    starts over. Building a million chunks takes a few minutes, the checks well under one.
    """
    from encaptio_data.quality.runner import run_all

    if content_rows < 1 or chunks < content_rows:
        raise ValueError("need at least one content row and at least one chunk per content row")
    machine = machine_info()
    spec = {"chunks": chunks, "content_rows": content_rows, "content_per_capsule": content_per_capsule,
            "version": DATASET_VERSION}
    root = (Path(data_dir) if data_dir else default_data_dir()) / "quality"
    marker = root / "dataset.json"
    cached = json.loads(marker.read_text()) if marker.exists() else None
    if rebuild or (cached is not None and cached["spec"] != spec) or (cached is None and root.exists()):
        shutil.rmtree(root, ignore_errors=True)
        cached = None
    with bench_platform(root) as platform:
        if cached is None:
            say(progress, f"building {content_rows} content items and {chunks} chunks in {root}")
            with stopwatch() as t:
                stores = build_synthetic_stores(platform, capsules=max(1, content_rows // content_per_capsule),
                                                content_per_capsule=min(content_per_capsule, content_rows),
                                                chunks_per_content=chunks // content_rows)
            dataset = {"seconds": t["seconds"], "stages": stores.seconds, "capsules": len(stores.capsule_ids),
                       "content_rows": len(stores.content_ids), "chunks": stores.chunks, "events": stores.events}
            marker.write_text(json.dumps({"spec": spec, "dataset": dataset}))
        else:
            dataset = cached["dataset"]
        say(progress, "bare reads (the baseline)")
        baseline = _bare_reads(platform)
        say(progress, "every quality check")
        result = run_all(platform)
    return {
        "benchmark": "quality",
        "machine": finish_machine_info(machine),
        "dataset": {**dataset, "built_now": cached is None, "data_dir": str(root)},
        "baseline_seconds": baseline,
        "checks_seconds": result["seconds"],
        "checks_cpu_seconds": result["cpu_seconds"],
        "checks_over_baseline": ratio(result["seconds"], baseline["total"]),
        "checks_over_baseline_cpu": ratio(result["cpu_seconds"], baseline["cpu_total"]),
        "per_check_seconds": {check["name"]: check["seconds"] for check in result["checks"]},
        "per_check_cpu_seconds": {check["name"]: check["cpu_seconds"] for check in result["checks"]},
        "target_seconds": TARGET_SECONDS,
        "within_target": result["seconds"] <= TARGET_SECONDS,
        "checks_passed": result["passed"],
        "failed": result["failed"],
        "peak_rss_mib": peak_rss_mib(),
    }
