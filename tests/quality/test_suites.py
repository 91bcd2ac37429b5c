"""Each GX suite fails on the violation it guards against, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from great_expectations.data_context import AbstractDataContext

from bench.quality import SyntheticStores, build_synthetic_stores
from encaptio_data.db.models import Capsule, Chunk, Content, InteractionEvent, User
from encaptio_data.integrity import CheckOutcome
from encaptio_data.platform import Platform
from encaptio_data.quality import catalog, suites
from encaptio_data.search.index import SCHEMA, open_chunks_table
from tests.quality.conftest import evaluate, unchecked

SUITE_CHECKS = [catalog.USERS_SUITE, catalog.CAPSULES_SUITE, catalog.CONTENT_SUITE, catalog.INTERACTION_EVENTS_SUITE,
                catalog.CHUNKS_SUITE]


def _failed_expectations(outcome: CheckOutcome) -> set[str]:
    return {example["expectation"] for example in outcome.examples}


def test_clean_data_passes_every_suite(platform: Platform, corpus: SyntheticStores,
                                       gx_context: AbstractDataContext) -> None:
    for name in SUITE_CHECKS:
        outcome = evaluate(platform, name, gx_context)
        assert outcome.passed, (name, outcome.examples)
        assert outcome.statistics["rows"] > 0
        assert outcome.statistics["success_percent"] == 100.0


def test_users_suite_rejects_a_malformed_email_without_showing_it(platform: Platform, corpus: SyntheticStores,
                                                                   gx_context: AbstractDataContext) -> None:
    # The database sees only the sealed address; the platform's own rule wants a dot in the domain.
    with platform.db.session() as session:
        for viewer in session.scalars(sa.select(User).where(User.role == "viewer")):
            viewer.email = "someone@localhost"
    outcome = evaluate(platform, catalog.USERS_SUITE, gx_context)
    assert not outcome.passed
    assert outcome.statistics["unsuccessful_expectations"] == 1
    [example] = outcome.examples
    assert example["expectation"] == "expect_column_values_to_match_regex"
    assert example["email"] == "(personal)"
    assert "someone@localhost" not in str(outcome.examples)


def test_users_suite_rejects_an_email_twice_in_one_organization(platform: Platform, corpus: SyntheticStores,
                                                                gx_context: AbstractDataContext) -> None:
    # A unique constraint keeps the duplicate out of the database itself, so it is put into
    # the frame the suite validates: as it would arrive from a restore without the constraint.
    frame = suites.users_frame(platform.db)
    duplicate = frame.iloc[[0]].assign(id="duplicate-user")
    outcome = suites.validate(gx_context, suites.USERS, pd.concat([frame, duplicate], ignore_index=True))
    assert not outcome.passed
    assert _failed_expectations(outcome) == {"expect_compound_columns_to_be_unique"}


def test_capsules_suite_rejects_an_update_before_creation(platform: Platform, corpus: SyntheticStores,
                                                          gx_context: AbstractDataContext) -> None:
    capsule_id = corpus.capsule_ids[0]
    with unchecked(platform, "capsules", "ck_capsules_updated_after_created") as session:
        session.execute(sa.update(Capsule).where(Capsule.id == capsule_id)
                        .values(updated_at=datetime(2020, 1, 1, tzinfo=UTC)))
    outcome = evaluate(platform, catalog.CAPSULES_SUITE, gx_context, capsule_id=capsule_id)
    assert not outcome.passed
    assert _failed_expectations(outcome) == {"expect_column_pair_values_a_to_be_greater_than_b"}
    assert outcome.examples[0]["id"] == str(capsule_id)
    # Scoped to the other capsule, the same check sees nothing wrong.
    assert evaluate(platform, catalog.CAPSULES_SUITE, gx_context, capsule_id=corpus.capsule_ids[1]).passed


def test_content_suite_rejects_malformed_digests_empty_files_and_unknown_types(
        platform: Platform, corpus: SyntheticStores, gx_context: AbstractDataContext) -> None:
    first, second, third = corpus.content_ids[:3]
    with platform.db.session() as session:
        session.execute(sa.update(Content).where(Content.id == first).values(sha256="F" * 64))
        session.execute(sa.update(Content).where(Content.id == second).values(size_bytes=0))
        session.execute(sa.update(Content).where(Content.id == third).values(mime_type="application/x-msdownload"))
    outcome = evaluate(platform, catalog.CONTENT_SUITE, gx_context)
    assert not outcome.passed
    assert outcome.statistics["unsuccessful_expectations"] == 3
    assert {example["id"] for example in outcome.examples} == {str(first), str(second), str(third)}


def test_events_suite_rejects_events_from_the_future(platform: Platform, corpus: SyntheticStores,
                                                      gx_context: AbstractDataContext) -> None:
    capsule_id = corpus.capsule_ids[1]
    with platform.db.session() as session:
        event_id = session.scalar(sa.select(InteractionEvent.id)
                                  .where(InteractionEvent.capsule_id == capsule_id).limit(1))
        session.execute(sa.update(InteractionEvent).where(InteractionEvent.id == event_id)
                        .values(occurred_at=datetime.now(UTC) + timedelta(days=2)))
    outcome = evaluate(platform, catalog.INTERACTION_EVENTS_SUITE, gx_context, capsule_id=capsule_id)
    assert not outcome.passed
    assert _failed_expectations(outcome) == {"expect_column_values_to_be_between"}
    assert outcome.examples[0]["id"] == str(event_id)
    # An event a minute ahead is clock skew, not the future.
    with platform.db.session() as session:
        session.execute(sa.update(InteractionEvent).where(InteractionEvent.id == event_id)
                        .values(occurred_at=datetime.now(UTC) + timedelta(minutes=1)))
    assert evaluate(platform, catalog.INTERACTION_EVENTS_SUITE, gx_context, capsule_id=capsule_id).passed


def test_events_suite_notices_a_column_the_schema_lost(platform: Platform, corpus: SyntheticStores,
                                                       gx_context: AbstractDataContext) -> None:
    with platform.db.session() as session:
        session.execute(sa.text("ALTER TABLE interaction_events DROP COLUMN session_id"))
    outcome = evaluate(platform, catalog.INTERACTION_EVENTS_SUITE, gx_context)
    assert not outcome.passed
    by_expectation = {example["expectation"]: example for example in outcome.examples}
    assert by_expectation["expect_table_columns_to_match_set"]["details"]["mismatched"]["missing"] == ["session_id"]


def test_chunks_suite_rejects_blank_and_oversized_chunks(platform: Platform, corpus: SyntheticStores,
                                                         gx_context: AbstractDataContext) -> None:
    with platform.db.session() as session:
        blank, oversized = session.scalars(sa.select(Chunk.id).order_by(Chunk.id).limit(2)).all()
        session.execute(sa.update(Chunk).where(Chunk.id == blank).values(text="   \n "))
        session.execute(sa.update(Chunk).where(Chunk.id == oversized).values(token_count=300))
    outcome = evaluate(platform, catalog.CHUNKS_SUITE, gx_context)
    assert not outcome.passed
    assert outcome.statistics["unsuccessful_expectations"] == 2
    assert {(example["column"], example["id"]) for example in outcome.examples} == {
        ("text_chars", blank), ("token_count", oversized)}


def test_embeddings_suite_rejects_nan_short_and_unnormalised_vectors(
        embedded: Platform, embedded_corpus: SyntheticStores, gx_context: AbstractDataContext) -> None:
    assert evaluate(embedded, catalog.EMBEDDINGS_SUITE, gx_context).passed
    content_id = embedded_corpus.content_ids[0]
    table = open_chunks_table(embedded.vectors)
    rows = table.to_lance().to_table(filter=f"content_id = '{content_id}'").sort_by("chunk_index")
    vectors = np.stack(rows.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    vectors[0, 5] = np.nan
    vectors[1] *= 1.5
    flat = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1])
    # LanceDB's own writer refuses NaN vectors; the suite guards against every other writer
    # (a Lance-level tool, an older client), so the damage goes in through Lance itself.
    table.delete(f"content_id = '{content_id}'")
    table.to_lance().insert(rows.set_column(SCHEMA.get_field_index("vector"), SCHEMA.field("vector"), flat))

    outcome = evaluate(embedded, catalog.EMBEDDINGS_SUITE, gx_context)
    assert not outcome.passed
    failing = {(example["column"], example["id"]) for example in outcome.examples}
    nan_row, long_row = rows.column("id")[0].as_py(), rows.column("id")[1].as_py()
    assert ("nan_count", nan_row) in failing
    assert ("norm", long_row) in failing

    # A table created with another model's width fails on the dimension, whatever the norms.
    embedded.vectors.drop_table("chunks")
    narrow = pa.schema([field if field.name != "vector" else pa.field("vector", pa.list_(pa.float32(), 8))
                        for field in SCHEMA])
    short = pa.array([[8 ** -0.5] * 8], type=narrow.field("vector").type)
    embedded.vectors.connect().create_table("chunks", schema=narrow).add(
        rows.slice(0, 1).set_column(SCHEMA.get_field_index("vector"), narrow.field("vector"), short))
    outcome = evaluate(embedded, catalog.EMBEDDINGS_SUITE, gx_context)
    assert _failed_expectations(outcome) == {"expect_column_values_to_be_in_set"}
    assert outcome.examples[0]["column"] == "dimension" and outcome.examples[0]["dimension"] == 8


def test_a_capsule_without_events_passes(platform: Platform, gx_context: AbstractDataContext) -> None:
    corpus = build_synthetic_stores(platform, capsules=1, content_per_capsule=1, chunks_per_content=1,
                                    events_per_capsule=0)
    outcome = evaluate(platform, catalog.INTERACTION_EVENTS_SUITE, gx_context, capsule_id=corpus.capsule_ids[0])
    assert outcome.passed and outcome.statistics["rows"] == 0
