"""Integrity across the stores: each check fails on the damage it guards against, and only on it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from great_expectations.data_context import AbstractDataContext

from bench.quality import SyntheticStores
from encaptio_data import integrity
from encaptio_data.content.pipeline import remove_deleted_content
from encaptio_data.content.uploads import upload_key
from encaptio_data.db.models import AuditEntry, Chunk, Content
from encaptio_data.audit import GENESIS, verify_chain
from encaptio_data.integrity import VolumePolicy, record_alert, volume_anomaly
from encaptio_data.platform import Platform
from encaptio_data.quality import catalog
from encaptio_data.search.index import SCHEMA, open_chunks_table
from tests.quality.conftest import evaluate


def _content(platform: Platform, content_id: uuid.UUID) -> Content:
    with platform.db.session() as session:
        return session.get(Content, content_id)


def test_content_objects_fail_on_a_missing_version_or_a_different_digest(
        platform: Platform, corpus: SyntheticStores, gx_context: AbstractDataContext) -> None:
    assert evaluate(platform, catalog.CONTENT_OBJECTS, gx_context).passed
    lost, altered = (_content(platform, content_id) for content_id in corpus.content_ids[:2])
    platform.objects.delete(lost.object_key, lost.object_version)
    with platform.db.session() as session:
        session.execute(sa.update(Content).where(Content.id == altered.id).values(sha256="0" * 64))

    outcome = evaluate(platform, catalog.CONTENT_OBJECTS, gx_context)
    assert not outcome.passed
    assert outcome.statistics["missing_versions"] == 1 and outcome.statistics["sha256_mismatches"] == 1
    assert {(e["content_id"], e["problem"]) for e in outcome.examples} == {
        (str(lost.id), "object version missing"), (str(altered.id), "sha256 differs")}
    # The same damage, seen one capsule at a time (by HEAD, without a listing).
    first_capsule = evaluate(platform, catalog.CONTENT_OBJECTS, gx_context, capsule_id=corpus.capsule_ids[0])
    assert first_capsule.statistics["content_rows"] == 3 and first_capsule.statistics["missing_versions"] == 1
    assert evaluate(platform, catalog.CONTENT_OBJECTS, gx_context, capsule_id=corpus.capsule_ids[1]).passed


def test_soft_deleted_content_needs_no_object(platform: Platform, corpus: SyntheticStores,
                                              gx_context: AbstractDataContext) -> None:
    content = _content(platform, corpus.content_ids[0])
    platform.objects.delete_all_versions(content.object_key)
    with platform.db.session() as session:
        session.execute(sa.update(Content).where(Content.id == content.id).values(deleted_at=datetime.now(UTC)))
    assert evaluate(platform, catalog.CONTENT_OBJECTS, gx_context).passed


def test_uploads_without_a_row_are_orphans_unless_registration_would_reject_them(
        platform: Platform, corpus: SyntheticStores, gx_context: AbstractDataContext) -> None:
    capsule_id = corpus.capsule_ids[0]
    registered = _content(platform, corpus.content_ids[0])
    orphan = upload_key(corpus.organization_id, capsule_id, "never-registered.txt")
    platform.objects.put(orphan, b"bytes no content row records", content_type="text/plain")
    # Rejected by registration's own rules, and left in place on purpose: not orphans.
    platform.objects.put(upload_key(corpus.organization_id, uuid.uuid4(), "no-such-capsule.txt"), b"x",
                         content_type="text/plain")
    platform.objects.put(upload_key(corpus.organization_id, capsule_id, "tool.exe"), b"MZ",
                         content_type="application/x-msdownload")
    # The same bytes as a registered file, under another name: a duplicate, recorded once.
    same_bytes = platform.objects.get(registered.object_key, registered.object_version)
    platform.objects.put(upload_key(corpus.organization_id, capsule_id, "copy.txt"), same_bytes,
                         content_type="text/plain")

    outcome = evaluate(platform, catalog.UPLOADS_REGISTERED, gx_context)
    assert not outcome.passed
    assert outcome.statistics == {"uploads": 10, "registered": 6, "duplicates": 1, "rejected": 2, "orphans": 1,
                                  "unregistered_versions": 0}
    assert [e["object_key"] for e in outcome.examples] == [orphan]

    # A new version of a registered file that registration has not seen yet.
    platform.objects.put(registered.object_key, b"an edited document", content_type="text/plain")
    scoped = evaluate(platform, catalog.UPLOADS_REGISTERED, gx_context, capsule_id=capsule_id)
    assert scoped.statistics["unregistered_versions"] == 1 and scoped.statistics["orphans"] == 1
    assert evaluate(platform, catalog.UPLOADS_REGISTERED, gx_context, capsule_id=corpus.capsule_ids[1]).passed


def _vector_rows(platform: Platform, content_id: uuid.UUID) -> pa.Table:
    return open_chunks_table(platform.vectors).to_lance().to_table(filter=f"content_id = '{content_id}'")


def test_vector_rows_must_belong_to_live_content_and_match_its_chunks(
        platform: Platform, corpus: SyntheticStores, gx_context: AbstractDataContext) -> None:
    assert evaluate(platform, catalog.VECTOR_ROWS_MATCH_CHUNKS, gx_context).passed
    stray_content = uuid.uuid4()
    stray = _vector_rows(platform, corpus.content_ids[0]).slice(0, 1)
    stray = stray.set_column(SCHEMA.get_field_index("content_id"), "content_id", pa.array([str(stray_content)]))
    stray = stray.set_column(SCHEMA.get_field_index("id"), "id", pa.array(["stray-chunk"]))
    open_chunks_table(platform.vectors).add(stray)
    short = corpus.content_ids[4]
    with platform.db.session() as session:
        session.execute(sa.delete(Chunk).where(Chunk.content_id == short, Chunk.chunk_index == 2))

    outcome = evaluate(platform, catalog.VECTOR_ROWS_MATCH_CHUNKS, gx_context)
    assert not outcome.passed
    assert outcome.statistics["content_without_row"] == 1 and outcome.statistics["count_mismatches"] == 1
    assert {(e["content_id"], e["problem"]) for e in outcome.examples} == {
        (str(stray_content), "no content row"), (str(short), "row count differs")}
    # Scoped to the capsule of the stray row, the unknown content is still caught.
    scoped = evaluate(platform, catalog.VECTOR_ROWS_MATCH_CHUNKS, gx_context, capsule_id=corpus.capsule_ids[0])
    assert scoped.statistics["content_without_row"] == 1 and scoped.statistics["count_mismatches"] == 0


def test_content_awaiting_its_embedding_is_not_compared(platform: Platform, corpus: SyntheticStores,
                                                        gx_context: AbstractDataContext) -> None:
    from encaptio_data.db.models import ContentExtraction

    pending = corpus.content_ids[1]
    with platform.db.session() as session:
        session.execute(sa.update(ContentExtraction).where(ContentExtraction.content_id == pending)
                        .values(embedded_sha256=None))
        session.execute(sa.delete(Chunk).where(Chunk.content_id == pending))
    outcome = evaluate(platform, catalog.VECTOR_ROWS_MATCH_CHUNKS, gx_context)
    assert outcome.passed and outcome.statistics["embedded_content"] == 5


def test_soft_deleted_content_must_leave_the_index(platform: Platform, corpus: SyntheticStores,
                                                   gx_context: AbstractDataContext) -> None:
    deleted = corpus.content_ids[2]
    with platform.db.session() as session:
        session.execute(sa.update(Content).where(Content.id == deleted).values(deleted_at=datetime.now(UTC)))

    outcome = evaluate(platform, catalog.DELETED_CONTENT_UNSEARCHABLE, gx_context)
    assert not outcome.passed
    assert outcome.examples == [{"content_id": str(deleted), "vector_rows": 3}]
    assert not evaluate(platform, catalog.VECTOR_ROWS_MATCH_CHUNKS, gx_context).passed

    remove_deleted_content(platform.db, open_chunks_table(platform.vectors))
    assert evaluate(platform, catalog.DELETED_CONTENT_UNSEARCHABLE, gx_context).passed
    assert evaluate(platform, catalog.VECTOR_ROWS_MATCH_CHUNKS, gx_context).passed


def test_dangling_foreign_keys_are_found(platform: Platform, corpus: SyntheticStores,
                                         gx_context: AbstractDataContext) -> None:
    assert evaluate(platform, catalog.FOREIGN_KEYS_INTACT, gx_context).passed
    gone = uuid.uuid4()
    with platform.db.engine.connect() as conn:
        # Step past the engine's own enforcement, as a bulk load or another tool could.
        if platform.db.dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        else:
            conn.exec_driver_sql("SET session_replication_role = replica")
        conn.execute(sa.update(Chunk).where(Chunk.id == sa.select(Chunk.id).order_by(Chunk.id).limit(1)
                                            .scalar_subquery()).values(content_id=gone))
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys = ON" if platform.db.dialect == "sqlite"
                             else "SET session_replication_role = DEFAULT")
        conn.commit()

    outcome = evaluate(platform, catalog.FOREIGN_KEYS_INTACT, gx_context)
    assert not outcome.passed
    assert outcome.statistics["dangling_references"] == 1
    assert outcome.examples[0]["table"] == "chunks" and outcome.examples[0]["references"] == "content"


def test_near_duplicate_content_in_a_capsule_is_flagged(embedded: Platform, embedded_corpus: SyntheticStores,
                                                        gx_context: AbstractDataContext) -> None:
    assert evaluate(embedded, catalog.NEAR_DUPLICATE_CONTENT, gx_context).passed
    original, copy, _, elsewhere = embedded_corpus.content_ids[:4]
    table = open_chunks_table(embedded.vectors)
    source = _vector_rows(embedded, original).sort_by("chunk_index")
    vectors = np.stack(source.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    noisy = vectors + np.random.default_rng(1).normal(0, 0.005, vectors.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    for target, values in ((copy, noisy), (elsewhere, vectors)):
        rows = _vector_rows(embedded, target).sort_by("chunk_index")
        flat = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        table.delete(f"content_id = '{target}'")
        table.add(rows.set_column(SCHEMA.get_field_index("vector"), SCHEMA.field("vector"), flat))

    outcome = evaluate(embedded, catalog.NEAR_DUPLICATE_CONTENT, gx_context)
    assert not outcome.passed
    # The identical vectors in the other capsule are not compared: duplicates only matter within one.
    [pair] = outcome.examples
    assert {pair["content_id"], pair["duplicate_of"]} == {str(original), str(copy)}
    assert pair["cosine"] > 0.98 and pair["capsule_id"] == str(embedded_corpus.capsule_ids[0])


@pytest.mark.parametrize(("current", "history", "passed"), [
    (100, [100, 98, 102], True),
    (140, [100, 98, 102], True),            # growth within +200 %
    (65, [100, 98, 102], False),            # a 35 % drop
    (350, [100, 98, 102], False),           # more than three times the median
    (5, [12, 11, 12], True),                # a drop of fewer than min_change rows is noise
    (0, [100, 100], True),                  # two earlier runs are no baseline yet
])
def test_volume_anomaly_against_the_trailing_median(current: int, history: list[int], passed: bool) -> None:
    outcome = volume_anomaly({"chunks": current}, [{"chunks": value} for value in history], VolumePolicy())
    assert outcome.passed is passed
    assert outcome.statistics["chunks"] == current and outcome.statistics["history_runs"] == len(history)
    if not passed:
        assert outcome.examples[0]["metric"] == "chunks" and outcome.examples[0]["current"] == current


def test_volume_anomaly_uses_only_the_window() -> None:
    history = [{"content": 10}] * 3 + [{"content": 1_000}] * 20
    assert volume_anomaly({"content": 10}, history, VolumePolicy(window=3)).passed
    assert not volume_anomaly({"content": 10}, history, VolumePolicy(window=10)).passed


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/quality", received
    server.shutdown()
    server.server_close()


def test_alerts_extend_the_audit_chain_and_reach_the_webhook(platform: Platform, monkeypatch: pytest.MonkeyPatch,
                                                            webhook: tuple[str, list[dict[str, object]]]) -> None:
    url, received = webhook
    first = record_alert(platform, "content_objects_match", {"statistics": {"missing_versions": 1}})
    assert first.webhook == "not configured"
    monkeypatch.setenv(integrity.WEBHOOK_ENV, url)
    organization = uuid.uuid4()
    second = record_alert(platform, "chunks_suite", {"failing": [{"id": "chunk-1"}], "success_percent": 75.0},
                          organization_id=organization)
    assert second.webhook == "sent"
    assert received == [{"event": "quality.check_failed", "check": "chunks_suite", "organization_id": str(organization),
                         "details": {"failing": [{"id": "chunk-1"}], "success_percent": 75.0},
                         "audit_seq": second.seq}]

    with platform.db.session() as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [(e.seq, e.action, e.actor, e.target) for e in entries] == [
        (first.seq, "quality.check_failed", "system:quality", "content_objects_match"),
        (second.seq, "quality.check_failed", "system:quality", "chunks_suite")]
    assert entries[0].prev_hash == GENESIS and entries[1].prev_hash == entries[0].hash
    assert entries[1].organization_id == organization
    assert verify_chain(platform.db).valid

    with platform.db.session() as session:
        session.execute(sa.update(AuditEntry).where(AuditEntry.seq == first.seq).values(details={"statistics": {}}))
    assert verify_chain(platform.db).first_break == first.seq


def test_a_webhook_that_fails_never_fails_the_alert(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(integrity.WEBHOOK_ENV, "http://127.0.0.1:9/unreachable")
    alert = record_alert(platform, "content_objects_match", {"statistics": {}})
    assert alert.webhook.startswith("failed: ")
    assert verify_chain(platform.db).valid
