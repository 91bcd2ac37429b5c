"""Integrity across the stores, and the alert a broken guarantee raises.

The relational database is the truth; the object store holds the bytes it points at and
LanceDB holds a derived copy of its chunks. Each function here checks one promise between
them (every live content row has its exact object version, every vector row belongs to live
content, ...) and returns a ``CheckOutcome``: passed, counts, and a few failing examples
naming ids, never personal data. The Dagster asset checks and ``encaptio quality run`` call
the same functions; this module knows nothing about either.

``record_alert`` appends to the audit trail (``encaptio_data.audit``) and notifies a webhook:
a failed integrity check is an event an auditor may later need to see.
"""

from __future__ import annotations

import json
import logging
import os
import statistics as stats
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from encaptio_data import audit
from encaptio_data.content.files import plain_digest
from encaptio_data.content.uploads import UPLOADS_PREFIX, _parse_upload_key, capsule_upload_prefix, classify
from encaptio_data.db.models import Base, Capsule, Chunk, Content, ContentExtraction
from encaptio_data.db.session import Database
from encaptio_data.errors import NotFoundError, ObjectNotFoundError
from encaptio_data.search.index import open_chunks_table
from encaptio_data.settings import redact_url
from encaptio_data.stores.objects import ObjectStore, ObjectVersion
from encaptio_data.stores.vectors import VectorStore

log = logging.getLogger(__name__)

EXAMPLE_LIMIT = 10
# HEADs are I/O (a stat and a small read locally, a round trip on S3): a few in flight hide the latency.
HEAD_WORKERS = 16
# Bounds the memory of one LanceDB read: 32k rows of 384 float32 are 48 MiB.
SCAN_BATCH_ROWS = 32_768
# Ids per IN (...) list: well under SQLite's 32k bound parameters and PostgreSQL's 65k.
ID_BATCH = 1_000


@dataclass
class CheckOutcome:
    """What one check found: ``statistics`` are counts (and rates), ``examples`` a few failing rows."""

    passed: bool
    statistics: dict[str, int | float] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "statistics": dict(self.statistics), "examples": list(self.examples)}


class Stores(Protocol):
    """The stores a check reads; ``Platform`` is one, the Dagster resources make another."""

    @property
    def db(self) -> Database: ...

    @property
    def objects(self) -> ObjectStore: ...

    @property
    def vectors(self) -> VectorStore: ...


def _scoped(query: sa.Select[Any], column: Any, capsule_id: uuid.UUID | None) -> sa.Select[Any]:
    return query.where(column == capsule_id) if capsule_id else query


def _batched(items: Sequence[Any], size: int = ID_BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- content rows ↔ object store ----------------------------------------------------------


def upload_listing(db: Database, objects: ObjectStore, *,
                   capsule_id: uuid.UUID | None = None) -> dict[str, ObjectVersion]:
    """The latest version of every upload (of one capsule, or all), by key."""
    prefix = capsule_upload_prefix(db, capsule_id) if capsule_id else UPLOADS_PREFIX
    return {version.key: version for version in objects.list(prefix)}


def content_objects(db: Database, objects: ObjectStore, *, capsule_id: uuid.UUID | None = None,
                    listing: Mapping[str, ObjectVersion] | None = None) -> CheckOutcome:
    """Every live content row's object version exists, with the sha256 and size the row records.

    HEAD, not GET: the store records each version's sha256 when it is written and verifies the
    bytes on every read, so comparing the recorded digest catches a row and an object that
    disagree without reading every byte. A ``listing`` already taken (``upload_listing``)
    answers for every row that points at its key's latest version; only the others need a HEAD.
    """
    query = _scoped(sa.select(Content.id, Content.object_key, Content.object_version, Content.sha256,
                              Content.size_bytes).where(Content.deleted_at.is_(None)), Content.capsule_id, capsule_id)
    with db.session() as session:
        rows = session.execute(query).all()
    listing = listing or {}

    def head(row: sa.Row[Any]) -> ObjectVersion | None:
        try:
            return objects.head(row.object_key, row.object_version)
        except ObjectNotFoundError:
            return None

    def problem(row: sa.Row[Any], found: ObjectVersion | None) -> dict[str, Any] | None:
        example = {"content_id": str(row.id), "object_key": row.object_key, "object_version": row.object_version}
        if found is None:
            return example | {"problem": "object version missing"}
        sha256, size = plain_digest(found)  # of the uploaded bytes, also when stored sealed
        if sha256 != row.sha256:
            return example | {"problem": "sha256 differs", "row_sha256": row.sha256, "object_sha256": sha256}
        if size != row.size_bytes:
            return example | {"problem": "size differs", "row_size": row.size_bytes, "object_size": size}
        return None

    def listed(row: sa.Row[Any]) -> ObjectVersion | None:
        version = listing.get(row.object_key)
        return version if version is not None and version.version_id == row.object_version else None

    answered = [(row, version) for row in rows if (version := listed(row)) is not None]
    unanswered = [row for row in rows if listed(row) is None]
    with ThreadPoolExecutor(max_workers=HEAD_WORKERS) as pool:
        answered += zip(unanswered, pool.map(head, unanswered), strict=True)
    problems = [p for row, version in answered if (p := problem(row, version)) is not None]
    kinds = Counter(p["problem"] for p in problems)
    return CheckOutcome(
        passed=not problems,
        statistics={"content_rows": len(rows), "missing_versions": kinds["object version missing"],
                    "sha256_mismatches": kinds["sha256 differs"], "size_mismatches": kinds["size differs"]},
        examples=problems[:EXAMPLE_LIMIT],
    )


def uploads_registered(db: Database, objects: ObjectStore, *, capsule_id: uuid.UUID | None = None,
                       listing: Mapping[str, ObjectVersion] | None = None) -> CheckOutcome:
    """Every upload is accounted for: registered, a duplicate of registered bytes, or rejected.

    Registration's own rules decide what is rejected (a malformed key, a capsule that does not
    exist in the key's organization, an unsupported type): those uploads stay in the store by
    design and are reported when registration runs. An orphan is an upload whose capsule
    exists and whose type is supported, yet whose latest bytes no content row records: the
    registration missed it, or a row was lost.
    """
    if listing is None:
        listing = upload_listing(db, objects, capsule_id=capsule_id)
    with db.session() as session:
        capsules = dict(session.execute(sa.select(Capsule.id, Capsule.organization_id)).all())
        rows = session.execute(_scoped(sa.select(Content.object_key, Content.object_version, Content.capsule_id,
                                                 Content.sha256, Content.deleted_at),
                                       Content.capsule_id, capsule_id)).all()
    by_key = {row.object_key: row for row in rows}
    registered_bytes = {(row.capsule_id, row.sha256) for row in rows}

    counts: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    for version in listing.values():
        counts["uploads"] += 1
        parsed = _parse_upload_key(version.key)
        if (isinstance(parsed, str) or capsules.get(parsed[1]) != parsed[0]
                or classify(version.content_type, parsed[2])[0] is None):
            counts["rejected"] += 1
            continue
        row = by_key.get(version.key)
        if row is not None and (row.object_version == version.version_id or row.deleted_at is not None):
            counts["registered"] += 1
        elif (parsed[1], plain_digest(version)[0]) in registered_bytes:
            counts["duplicates"] += 1
        else:
            problem = "no content row" if row is None else "latest version not registered"
            counts["orphans" if row is None else "unregistered_versions"] += 1
            failures.append({"object_key": version.key, "version_id": version.version_id, "problem": problem})
    return CheckOutcome(
        passed=not failures,
        statistics={name: counts[name] for name in
                    ("uploads", "registered", "duplicates", "rejected", "orphans", "unregistered_versions")},
        examples=failures[:EXAMPLE_LIMIT],
    )


# --- relational chunks ↔ LanceDB -----------------------------------------------------------


def _chunk_table(vectors: VectorStore) -> Any | None:
    """The LanceDB chunk table, opened fresh so a scan sees every committed row; None before the first embedding."""
    try:
        return open_chunks_table(vectors, create=False)
    except NotFoundError:
        return None


def _scan(vectors: VectorStore, columns: list[str], capsule_id: uuid.UUID | None) -> Iterator[pa.RecordBatch]:
    table = _chunk_table(vectors)
    if table is None:
        return
    # capsule_id is a UUID, so the filter cannot carry anything but hex digits and dashes.
    where = f"capsule_id = '{capsule_id}'" if capsule_id else None
    yield from table.to_lance().to_batches(columns=columns, filter=where, batch_size=SCAN_BATCH_ROWS)


def _vector_rows_per_content(vectors: VectorStore, capsule_id: uuid.UUID | None) -> Counter[str]:
    counts: Counter[str] = Counter()
    for batch in _scan(vectors, ["content_id"], capsule_id):
        grouped = pa.table(batch).group_by("content_id").aggregate([("content_id", "count")])
        counts.update(dict(zip(grouped.column("content_id").to_pylist(),
                               grouped.column("content_id_count").to_pylist(), strict=True)))
    return counts


@dataclass(frozen=True)
class _ContentState:
    deleted: bool
    embedded: bool


def _content_states(db: Database, capsule_id: uuid.UUID | None, extra_ids: Iterable[str]) -> dict[str, _ContentState]:
    """Deleted/embedded state of the content in scope, and of any other ids asked for (by id)."""
    base = (sa.select(Content.id, Content.deleted_at.is_not(None).label("deleted"),
                      (ContentExtraction.embedded_sha256 == Content.sha256).label("embedded"))
            .outerjoin(ContentExtraction, ContentExtraction.content_id == Content.id))
    states: dict[str, _ContentState] = {}
    with db.session() as session:
        for row in session.execute(_scoped(base, Content.capsule_id, capsule_id)):
            states[str(row.id)] = _ContentState(bool(row.deleted), bool(row.embedded))
        others = []
        for value in extra_ids:
            if value not in states:
                try:
                    others.append(uuid.UUID(value))
                except ValueError:  # not even an id: certainly no content row
                    continue
        for batch in _batched(others):
            for row in session.execute(base.where(Content.id.in_(batch))):
                states[str(row.id)] = _ContentState(bool(row.deleted), bool(row.embedded))
    return states


def vector_rows_match_chunks(db: Database, vectors: VectorStore, *, capsule_id: uuid.UUID | None = None,
                             rows_per_content: Mapping[str, int] | None = None) -> CheckOutcome:
    """Every LanceDB row belongs to live content, and embedded content has as many rows as chunks.

    "Embedded" is the pipeline's own record (the extraction's embedded_sha256 equals the
    content's sha256); content still waiting for its embedding is not compared.
    ``rows_per_content`` may come from a ``VectorScan`` already taken.
    """
    in_index = _vector_rows_per_content(vectors, capsule_id) if rows_per_content is None else rows_per_content
    states = _content_states(db, capsule_id, in_index)
    per_content = _scoped(sa.select(Chunk.content_id, sa.func.count()), Chunk.capsule_id, capsule_id)
    with db.session() as session:
        chunk_counts = {str(content_id): count
                        for content_id, count in session.execute(per_content.group_by(Chunk.content_id))}
    failures: list[dict[str, Any]] = []
    unknown = deleted = 0
    for content_id, rows in in_index.items():
        state = states.get(content_id)
        if state is None or state.deleted:
            unknown += state is None
            deleted += state is not None
            failures.append({"content_id": content_id, "vector_rows": rows,
                             "problem": "no content row" if state is None else "content soft-deleted"})
    embedded = [content_id for content_id, state in states.items() if state.embedded and not state.deleted]
    mismatched = 0
    for content_id in embedded:
        expected, found = chunk_counts.get(content_id, 0), in_index.get(content_id, 0)
        if expected != found:
            mismatched += 1
            failures.append({"content_id": content_id, "chunks": expected, "vector_rows": found,
                             "problem": "row count differs"})
    return CheckOutcome(
        passed=not failures,
        statistics={"vector_rows": sum(in_index.values()), "content_in_index": len(in_index),
                    "embedded_content": len(embedded), "content_without_row": unknown,
                    "deleted_content_in_index": deleted, "count_mismatches": mismatched},
        examples=failures[:EXAMPLE_LIMIT],
    )


def deleted_content_unsearchable(db: Database, vectors: VectorStore, *, capsule_id: uuid.UUID | None = None,
                                 rows_per_content: Mapping[str, int] | None = None) -> CheckOutcome:
    """No chunk of soft-deleted content is left in LanceDB, where every search mode would still find it."""
    in_index = _vector_rows_per_content(vectors, capsule_id) if rows_per_content is None else rows_per_content
    states = _content_states(db, capsule_id, in_index)
    leaks = [{"content_id": content_id, "vector_rows": rows} for content_id, rows in in_index.items()
             if (state := states.get(content_id)) is not None and state.deleted]
    return CheckOutcome(
        passed=not leaks,
        statistics={"vector_rows": sum(in_index.values()), "deleted_content_in_index": len(leaks),
                    "rows_of_deleted_content": sum(leak["vector_rows"] for leak in leaks)},
        examples=leaks[:EXAMPLE_LIMIT],
    )


# --- relational integrity ------------------------------------------------------------------


def foreign_keys_intact(db: Database) -> CheckOutcome:
    """No row references a parent row that does not exist.

    SQLite enforces foreign keys only on connections that ask (ours do), so a file written
    by another tool can hold dangling references: ``PRAGMA foreign_key_check`` finds them.
    PostgreSQL always enforces them, but a bulk load with triggers disabled or a NOT VALID
    constraint can still leave some, so each foreign key of the model is checked by an anti-join.
    """
    if db.dialect == "sqlite":
        with db.engine.connect() as conn:
            found = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            examples = []
            for table, rowid, parent, _ in found[:EXAMPLE_LIMIT]:
                key = conn.exec_driver_sql(f'SELECT * FROM "{table}" WHERE rowid = ?', (rowid,)).first()
                examples.append({"table": table, "row": str(key[0]) if key else rowid, "references": parent})
        return CheckOutcome(passed=not found, statistics={"dangling_references": len(found)}, examples=examples)

    dangling = 0
    examples = []
    with db.engine.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table in Base.metadata.sorted_tables:
            if table.name not in present:
                continue
            for fk in table.foreign_key_constraints:
                (column,), (referred,) = fk.columns, [element.column for element in fk.elements]
                orphan = sa.and_(column.is_not(None), ~sa.exists().where(referred == column))
                count = conn.execute(sa.select(sa.func.count()).select_from(table).where(orphan)).scalar_one()
                if count:
                    dangling += count
                    pk = list(table.primary_key.columns)[0]
                    for (key,) in conn.execute(sa.select(pk).where(orphan).limit(EXAMPLE_LIMIT)):
                        examples.append({"table": table.name, "row": str(key), "references": referred.table.name})
    return CheckOutcome(passed=not dangling, statistics={"dangling_references": dangling},
                        examples=examples[:EXAMPLE_LIMIT])


# --- volume --------------------------------------------------------------------------------

VOLUME_METRICS = ("content", "content_extractions", "chunks", "vector_rows")


def row_counts(db: Database, vectors: VectorStore) -> dict[str, int]:
    """The sizes the volume check follows: live content, extractions, chunks, LanceDB rows."""
    count = sa.select(sa.func.count())
    with db.session() as session:
        counts = {
            "content": session.scalar(count.select_from(Content).where(Content.deleted_at.is_(None))),
            "content_extractions": session.scalar(count.select_from(ContentExtraction)),
            "chunks": session.scalar(count.select_from(Chunk)),
        }
    table = _chunk_table(vectors)
    counts["vector_rows"] = table.count_rows() if table is not None else 0
    return {name: int(value or 0) for name, value in counts.items()}


@dataclass(frozen=True)
class VolumePolicy:
    """How far a count may move from its recent median before it is an anomaly.

    Asymmetric on purpose: stores grow in bursts when creators upload, while a sudden drop
    almost always means lost rows. ``min_change`` keeps tiny stores from alarming on a handful
    of rows; below ``min_history`` earlier runs there is no baseline to judge against.
    """

    window: int = 10
    min_history: int = 3
    max_drop: float = 0.3
    max_growth: float = 2.0
    min_change: int = 10


def volume_anomaly(counts: Mapping[str, int], history: Sequence[Mapping[str, int]],
                   policy: VolumePolicy = VolumePolicy()) -> CheckOutcome:
    """Each count against the median of the same count in the last ``policy.window`` runs."""
    recent = list(history)[: policy.window]
    anomalies = []
    judged = 0
    for metric, current in counts.items():
        previous = [run[metric] for run in recent if metric in run]
        if len(previous) < policy.min_history:
            continue
        judged += 1
        baseline = stats.median(previous)
        low, high = baseline * (1 - policy.max_drop), baseline * (1 + policy.max_growth)
        if (current < low or current > high) and abs(current - baseline) >= policy.min_change:
            change = (current - baseline) / baseline * 100 if baseline else float("inf")
            anomalies.append({"metric": metric, "current": current, "baseline": baseline,
                              "change_percent": round(change, 1), "allowed": f"{low:.0f}..{high:.0f}"})
    return CheckOutcome(passed=not anomalies,
                        statistics={**counts, "history_runs": len(recent), "metrics_judged": judged},
                        examples=anomalies)


# --- vectors: one scan for the embeddings suite and near-duplicate detection ----------------


@dataclass
class VectorScan:
    """Per-row facts about the stored vectors, and per content item its row count and mean direction."""

    ids: np.ndarray
    content_ids: np.ndarray
    dimensions: np.ndarray
    norms: np.ndarray
    nan_counts: np.ndarray
    rows_per_content: dict[str, int]
    centroid_content_ids: list[str]
    centroid_capsule_ids: list[str]
    centroids: np.ndarray  # unit rows, one per content item, over its NaN-free vectors

    @property
    def rows(self) -> int:
        return len(self.ids)


def _vector_values(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(rows x width float32 matrix, per-row length); a variable-length column is padded with NaN."""
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_fixed_size_list(column.type):
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.astype(np.float32, copy=False).reshape(-1, column.type.list_size), lengths
    width = int(lengths.max()) if len(lengths) else 0
    matrix = np.full((len(column), width), np.nan, dtype=np.float32)
    for row, values in enumerate(column.to_pylist()):
        matrix[row, :len(values or ())] = values or ()
    return matrix, lengths


class _Centroids:
    """Running per-content sums of vectors, fed one batch at a time."""

    def __init__(self) -> None:
        self.position: dict[str, int] = {}
        self.capsules: list[str] = []
        self.sums: list[np.ndarray] = []
        self.counts: list[int] = []

    def add(self, batch: pa.RecordBatch, matrix: np.ndarray, usable: np.ndarray) -> None:
        encoded = batch.column("content_id").dictionary_encode()
        keys = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        rows = np.bincount(codes, minlength=len(keys))
        first = np.full(len(keys), len(codes))
        np.minimum.at(first, codes, np.arange(len(codes)))
        capsules = batch.column("capsule_id").take(pa.array(first)).to_pylist()
        totals = np.zeros((len(keys), matrix.shape[1]), dtype=np.float32)
        used, values = codes[usable], matrix[usable] if not usable.all() else matrix
        if used.size:
            # Rows of one content item arrive together (they are written together), so the
            # sort is usually skipped.
            if np.any(used[1:] < used[:-1]):
                order = np.argsort(used, kind="stable")
                used, values = used[order], values[order]
            starts = np.flatnonzero(np.r_[True, used[1:] != used[:-1]])
            totals[used[starts]] = np.add.reduceat(values, starts, axis=0)
        for key, capsule, count, total in zip(keys, capsules, rows, totals, strict=True):
            index = self.position.setdefault(key, len(self.sums))
            if index == len(self.sums):
                self.sums.append(total)
                self.capsules.append(capsule)
                self.counts.append(int(count))
            else:
                self.sums[index] = self.sums[index] + total
                self.counts[index] += int(count)

    def unit(self) -> np.ndarray:
        if not self.sums:
            return np.zeros((0, 0), dtype=np.float32)
        matrix = np.vstack(self.sums)
        lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
        return np.divide(matrix, lengths, out=np.zeros_like(matrix), where=lengths > 0)


def scan_vectors(vectors: VectorStore, *, capsule_id: uuid.UUID | None = None) -> VectorScan:
    """Read every vector once, in batches: dimension, norm and NaNs per row; rows and centroid per content."""
    ids, content_ids, dimensions, norms, nan_counts = [], [], [], [], []
    centroids = _Centroids()
    for batch in _scan(vectors, ["id", "content_id", "capsule_id", "vector"], capsule_id):
        matrix, lengths = _vector_values(batch.column("vector"))
        missing = np.isnan(matrix).sum(axis=1)
        nans = missing - (matrix.shape[1] - lengths)  # a variable-length row's padding is not a NaN it holds
        norm = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        if missing.any():
            norm[missing > 0] = np.linalg.norm(np.nan_to_num(matrix[missing > 0]), axis=1)
        ids.append(batch.column("id").to_numpy(zero_copy_only=False))
        content_ids.append(batch.column("content_id").to_numpy(zero_copy_only=False))
        dimensions.append(lengths)
        norms.append(norm)
        nan_counts.append(nans)
        centroids.add(batch, matrix, missing == 0)

    def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return VectorScan(ids=joined(ids, object), content_ids=joined(content_ids, object),
                      dimensions=joined(dimensions, np.int64), norms=joined(norms, np.float64),
                      nan_counts=joined(nan_counts, np.int64),
                      rows_per_content=dict(zip(centroids.position, centroids.counts, strict=True)),
                      centroid_content_ids=list(centroids.position), centroid_capsule_ids=centroids.capsules,
                      centroids=centroids.unit())


NEAR_DUPLICATE_COSINE = 0.98


def near_duplicate_content(scan: VectorScan, *, threshold: float = NEAR_DUPLICATE_COSINE,
                           block: int = 2_048) -> CheckOutcome:
    """Pairs of different content items in one capsule whose mean embeddings have cosine above ``threshold``.

    Identical bytes in a capsule are already refused by a unique constraint; this finds the
    same document uploaded twice in another format or with a trivial edit. Distinct
    documents on one topic score up to about 0.95 with all-MiniLM-L6-v2, which is why the
    threshold sits at 0.98.
    """
    by_capsule: dict[str, list[int]] = {}
    for index, capsule in enumerate(scan.centroid_capsule_ids):
        by_capsule.setdefault(capsule, []).append(index)
    pairs = []
    for capsule, members in by_capsule.items():
        if len(members) < 2:
            continue
        matrix = scan.centroids[members]
        # Row blocks keep a capsule with many thousands of items from allocating its full similarity matrix.
        for start in range(0, len(members), block):
            similarity = matrix[start:start + block] @ matrix.T
            rows, cols = np.nonzero(similarity > threshold)
            for row, col in zip(rows, cols, strict=True):
                if start + row < col:
                    pairs.append({"capsule_id": capsule, "content_id": scan.centroid_content_ids[members[start + row]],
                                  "duplicate_of": scan.centroid_content_ids[members[col]],
                                  "cosine": round(float(similarity[row, col]), 4)})
    pairs.sort(key=lambda pair: -pair["cosine"])
    return CheckOutcome(passed=not pairs,
                        statistics={"content_compared": len(scan.centroid_content_ids),
                                    "near_duplicate_pairs": len(pairs)},
                        examples=pairs[:EXAMPLE_LIMIT])


# --- alerts: the audit chain and a webhook --------------------------------------------------

ALERT_ACTION = "quality.check_failed"
ALERT_ACTOR = "system:quality"
WEBHOOK_ENV = "ENCAPTIO_ALERT_WEBHOOK"
WEBHOOK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Alert:
    seq: int
    webhook: str  # "sent", "failed: <reason>" or "not configured"


def record_alert(stores: Stores, check_name: str, details: Mapping[str, Any], *,
                 organization_id: uuid.UUID | None = None, actor: str = ALERT_ACTOR) -> Alert:
    """Append a failed-check entry to the audit chain, then POST it to ENCAPTIO_ALERT_WEBHOOK if set.

    The audit log outlives erasure, so ``details`` must hold ids and counts only. The webhook
    is best effort: the audit entry is the record, and a notifier that is down must not turn
    a failed check into a crashed one. Logging is the caller's: Dagster logs to the run, the
    CLI to the console.
    """
    details = json.loads(json.dumps(details, default=str))
    seq = audit.append(stores.db, actor=actor, action=ALERT_ACTION, organization_id=organization_id,
                       target=check_name, details=details)
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        return Alert(seq=seq, webhook="not configured")
    payload = {"event": ALERT_ACTION, "check": check_name, "organization_id": str(organization_id) if organization_id
               else None, "details": details, "audit_seq": seq}
    return Alert(seq=seq, webhook=_post_webhook(url, payload))


def _post_webhook(url: str, payload: Mapping[str, Any]) -> str:
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "encaptio-quality"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            response.read()
        return "sent"
    except Exception as exc:  # noqa: BLE001 - any failure to notify is logged, never raised
        log.warning("alert webhook %s failed: %s", redact_url(url.split("?")[0]), exc)
        return f"failed: {type(exc).__name__}"
