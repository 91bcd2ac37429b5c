"""Every quality check, once: its name, the asset it guards, its severity and what it evaluates.

The Dagster asset checks (``checks.py``) and ``encaptio quality run`` (``runner.py``) are both
built from ``CHECKS``, so the UI and the command report the same checks with the same
results. Severity decides the rest: an ERROR check guards integrity, is blocking (a failure
stops the assets downstream in the same run) and raises an alert; a WARN check only reports.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

import pandas as pd
from great_expectations.data_context import AbstractDataContext

from encaptio_data import integrity
from encaptio_data.content.chunking import MODEL_MAX_TOKENS
from encaptio_data.content.embedding import DIMENSION
from encaptio_data.db.session import Database
from encaptio_data.integrity import Alert, CheckOutcome, Stores, VectorScan, record_alert
from encaptio_data.quality import suites
from encaptio_data.stores.objects import ObjectVersion

CONTENT_SUITE = "content_suite"
CONTENT_OBJECTS = "content_objects_match"
UPLOADS_REGISTERED = "uploads_registered"
USERS_SUITE = "users_suite"
CAPSULES_SUITE = "capsules_suite"
INTERACTION_EVENTS_SUITE = "interaction_events_suite"
CHUNKS_SUITE = "chunks_suite"
EMBEDDINGS_SUITE = "embeddings_suite"
VECTOR_ROWS_MATCH_CHUNKS = "vector_rows_match_chunks"
NEAR_DUPLICATE_CONTENT = "near_duplicate_content"
DELETED_CONTENT_UNSEARCHABLE = "deleted_content_unsearchable"
FOREIGN_KEYS_INTACT = "foreign_keys_intact"
CONTENT_VOLUME = "content_volume"

# Example fields safe to copy into the audit log, which outlives erasure: ids and names of
# things, never object keys (they carry file names) or column values.
_ALERT_REF_FIELDS = ("content_id", "duplicate_of", "capsule_id", "id", "table", "row", "metric", "expectation",
                     "problem")


VOLUME = integrity.VolumePolicy()


class Severity(StrEnum):
    ERROR = "ERROR"
    WARN = "WARN"


class CheckRun:
    """The inputs of one pass of checks: the stores, the scope, and what several checks share.

    The GX context, the vector scan and the upload listing are built on first use and reused.
    Over the whole store, one pass over the uploads and one over the vectors answer several
    checks (``shared_*``). For one capsule the checks read less on their own: a HEAD per
    content row beats listing the local store (which reads every key to filter by prefix), and
    counting one column beats reading the vectors.
    """

    def __init__(self, stores: Stores, *, capsule_id: uuid.UUID | None = None,
                 gx_context: Callable[[], AbstractDataContext] = suites.ephemeral_context,
                 volume_history: Callable[[], list[dict[str, int]]] = list) -> None:
        self.stores = stores
        self.capsule_id = capsule_id
        self._gx_context = gx_context
        self._volume_history = volume_history

    @cached_property
    def gx(self) -> AbstractDataContext:
        return self._gx_context()

    @cached_property
    def vector_scan(self) -> VectorScan:
        return integrity.scan_vectors(self.stores.vectors, capsule_id=self.capsule_id)

    @cached_property
    def upload_listing(self) -> dict[str, ObjectVersion]:
        return integrity.upload_listing(self.stores.db, self.stores.objects, capsule_id=self.capsule_id)

    @property
    def shared_listing(self) -> dict[str, ObjectVersion] | None:
        return self.upload_listing if self.capsule_id is None else None

    @property
    def shared_rows_per_content(self) -> dict[str, int] | None:
        return self.vector_scan.rows_per_content if self.capsule_id is None else None

    def volume_history(self) -> list[dict[str, int]]:
        return self._volume_history()

    def validate(self, suite: suites.Suite,
                 frame_of: Callable[[Database, uuid.UUID | None], pd.DataFrame]) -> CheckOutcome:
        return suites.validate(self.gx, suite, frame_of(self.stores.db, self.capsule_id))


@dataclass(frozen=True)
class QualityCheck:
    name: str
    asset: str
    severity: Severity
    description: str
    evaluate: Callable[[CheckRun], CheckOutcome]

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.ERROR


CHECKS: tuple[QualityCheck, ...] = (
    QualityCheck(CONTENT_SUITE, "content", Severity.ERROR,
                 "GX: sha256 is 64 lowercase hex digits, size_bytes > 0, a MIME type registration accepts, "
                 "a known content type.",
                 lambda run: run.validate(suites.CONTENT, suites.content_frame)),
    QualityCheck(CONTENT_OBJECTS, "content", Severity.ERROR,
                 "Every live content row's object version exists in the object store with the same sha256 and size.",
                 lambda run: integrity.content_objects(run.stores.db, run.stores.objects, capsule_id=run.capsule_id,
                                                      listing=run.shared_listing)),
    QualityCheck(UPLOADS_REGISTERED, "content", Severity.WARN,
                 "Every upload is registered, a duplicate of registered bytes, or rejected by registration's rules; "
                 "an orphan (capsule exists, type supported, no row) wastes storage but harms nothing downstream.",
                 lambda run: integrity.uploads_registered(run.stores.db, run.stores.objects, capsule_id=run.capsule_id,
                                                         listing=run.shared_listing)),
    QualityCheck(USERS_SUITE, "content", Severity.WARN,
                 "GX on the users of the capsule's organization: email format, (organization, email) unique, "
                 "known role.",
                 lambda run: run.validate(suites.USERS, suites.users_frame)),
    QualityCheck(CAPSULES_SUITE, "content", Severity.WARN,
                 "GX on the capsule: known status, updated_at not before created_at.",
                 lambda run: run.validate(suites.CAPSULES, suites.capsules_frame)),
    QualityCheck(INTERACTION_EVENTS_SUITE, "content", Severity.WARN,
                 "GX on the capsule's interaction events: the columns analytics reads exist, known event type, "
                 "occurred_at present and not in the future.",
                 lambda run: run.validate(suites.INTERACTION_EVENTS, suites.interaction_events_frame)),
    QualityCheck(CHUNKS_SUITE, "chunks", Severity.ERROR,
                 f"GX: chunk text not blank, 1..{MODEL_MAX_TOKENS} tokens, 0 <= start_char < end_char.",
                 lambda run: run.validate(suites.CHUNKS, suites.chunks_frame)),
    QualityCheck(EMBEDDINGS_SUITE, "chunk_embeddings", Severity.ERROR,
                 f"GX on every LanceDB vector: {DIMENSION} dimensions, no NaN, unit norm within "
                 f"{suites.NORM_TOLERANCE}.",
                 lambda run: suites.validate(run.gx, suites.EMBEDDINGS, suites.embeddings_frame(run.vector_scan))),
    QualityCheck(VECTOR_ROWS_MATCH_CHUNKS, "chunk_embeddings", Severity.ERROR,
                 "Every LanceDB row belongs to live content, and embedded content has as many rows as chunks.",
                 lambda run: integrity.vector_rows_match_chunks(run.stores.db, run.stores.vectors,
                                                                capsule_id=run.capsule_id,
                                                                rows_per_content=run.shared_rows_per_content)),
    QualityCheck(NEAR_DUPLICATE_CONTENT, "chunk_embeddings", Severity.WARN,
                 f"No two content items in one capsule have mean embeddings with cosine above "
                 f"{integrity.NEAR_DUPLICATE_COSINE}.",
                 lambda run: integrity.near_duplicate_content(run.vector_scan)),
    QualityCheck(DELETED_CONTENT_UNSEARCHABLE, "search_indexes", Severity.ERROR,
                 "No chunk of soft-deleted content is left in the LanceDB table the indexes serve.",
                 lambda run: integrity.deleted_content_unsearchable(run.stores.db, run.stores.vectors,
                                                                    capsule_id=run.capsule_id,
                                                                    rows_per_content=run.shared_rows_per_content)),
    # Whole-store checks sit on the one unpartitioned asset at the end of the content graph,
    # so they run once per pipeline pass rather than once per capsule.
    QualityCheck(FOREIGN_KEYS_INTACT, "search_indexes", Severity.ERROR,
                 "No row of the relational store references a parent row that does not exist.",
                 lambda run: integrity.foreign_keys_intact(run.stores.db)),
    QualityCheck(CONTENT_VOLUME, "search_indexes", Severity.WARN,
                 f"Live content, extractions, chunks and LanceDB rows each within -{VOLUME.max_drop:.0%}.."
                 f"+{VOLUME.max_growth:.0%} of their median over the last {VOLUME.window} evaluations of this check.",
                 lambda run: integrity.volume_anomaly(integrity.row_counts(run.stores.db, run.stores.vectors),
                                                      run.volume_history(), VOLUME)),
)

CHECKS_BY_NAME = {check.name: check for check in CHECKS}


def alert_details(check: QualityCheck, outcome: CheckOutcome, capsule_id: uuid.UUID | None,
                  **context: str) -> dict[str, Any]:
    """What an alert carries: the check, its scope, its counts and the ids of a few failing rows."""
    refs = [{field: example[field] for field in _ALERT_REF_FIELDS if field in example} for example in outcome.examples]
    return {"check": check.name, "asset": check.asset, "severity": check.severity.value,
            "capsule_id": str(capsule_id) if capsule_id else None, "statistics": outcome.statistics,
            "failing": [ref for ref in refs if ref][:integrity.EXAMPLE_LIMIT], **context}


def raise_alert(run: CheckRun, check: QualityCheck, outcome: CheckOutcome, **context: str) -> Alert:
    organization_id = suites.organization_of(run.stores.db, run.capsule_id) if run.capsule_id else None
    return record_alert(run.stores, check.name, alert_details(check, outcome, run.capsule_id, **context),
                        organization_id=organization_id)
