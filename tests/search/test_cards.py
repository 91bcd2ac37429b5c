"""A result page is read as two columns (card and text); the card only ever repeats the others.

Real LanceDB tables on a local directory; full-text queries, so no model is needed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from encaptio_data.authz import system_principal
from encaptio_data.db.session import Database
from encaptio_data.search import index as index_module
from encaptio_data.search.index import CARD_FIELDS, CHUNKS_TABLE, SCHEMA, build_indexes, chunk_batch, ensure_cards, \
    open_chunks_table, upsert_content_chunks
from encaptio_data.search.service import SearchMode, SearchRequest, SearchService
from encaptio_data.stores.vectors import LocalVectorStore

ORG = str(uuid.UUID(int=3))


def _rows(start: int, count: int) -> tuple[list[dict], np.ndarray]:
    created = datetime(2026, 2, 1, 12, 30, tzinfo=UTC)
    rows = [{"id": f"chunk-{i:05d}", "content_id": str(uuid.UUID(int=500 + i // 5)), "capsule_id": str(uuid.UUID(int=9)),
             "organization_id": ORG, "content_type": "pdf" if i % 2 else "html",
             "created_at": created + timedelta(seconds=i, microseconds=i), "chunk_index": i % 5,
             "page": i % 7 or None, "heading": f"Section {i}" if i % 3 else None, "title": f"Doc \"{i // 5}\" é",
             "text": f"lantern keeper {'harbour' if i % 4 else 'meadow'} story number {i}"} for i in range(start, start + count)]
    vectors = np.random.default_rng(start).normal(size=(count, SCHEMA.field("vector").type.list_size)).astype(np.float32)
    return rows, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _search(store: LocalVectorStore, tmp_path: Path, query: str = "harbour") -> list[dict]:
    service = SearchService(store, None, principal=system_principal("demo"),
                            db=Database(f"sqlite:///{tmp_path / 'audit.sqlite3'}"))
    page = service.search(SearchRequest(ORG, query, mode=SearchMode.FULLTEXT, limit=20))
    return [hit.__dict__ for hit in page.hits]


def _columns(store: LocalVectorStore) -> dict[str, dict]:
    """Every row's result fields as the columns hold them, by chunk id."""
    rows = store.open_table(CHUNKS_TABLE).to_arrow().select(list(CARD_FIELDS) + ["text"]).to_pylist()
    return {row["id"]: row for row in rows}


def _assert_hits_match_columns(hits: list[dict], columns: dict[str, dict]) -> None:
    assert hits
    for hit in hits:
        row = columns[hit["chunk_id"]]
        assert {k: hit[k] for k in ("content_id", "capsule_id", "organization_id", "content_type", "title", "page",
                                    "heading", "chunk_index", "text")} == \
            {k: row[k] for k in ("content_id", "capsule_id", "organization_id", "content_type", "title", "page",
                                 "heading", "chunk_index", "text")}
        assert hit["created_at"] == row["created_at"].isoformat()


def test_a_card_repeats_its_row_and_nothing_else() -> None:
    rows, vectors = _rows(0, 12)
    batch = chunk_batch(rows, vectors)
    assert batch.schema.names == SCHEMA.names
    for row, card in zip(rows, batch.column("card").to_pylist(), strict=True):
        expected = {name: row[name] for name in CARD_FIELDS} | {"created_at": row["created_at"].isoformat()}
        assert json.loads(card) == expected


def test_pages_read_through_cards_equal_pages_read_column_by_column(tmp_path: Path) -> None:
    store = LocalVectorStore(tmp_path / "lance")
    table = open_chunks_table(store)
    table.add(chunk_batch(*_rows(0, 60)))
    build_indexes(table)
    carded = _search(store, tmp_path)
    _assert_hits_match_columns(carded, _columns(store))
    # The same table without its card column is read column by column: the same page.
    table.to_lance().drop_columns(["card"])
    table.checkout_latest()
    assert _search(store, tmp_path) == carded


def test_a_table_from_before_cards_gets_them_when_a_writer_opens_it(tmp_path: Path) -> None:
    store = LocalVectorStore(tmp_path / "lance")
    old = store.connect().create_table(CHUNKS_TABLE, schema=index_module._WITHOUT_CARD)
    old.add(chunk_batch(*_rows(0, 60)).drop_columns(["card"]))
    build_indexes(old)
    indexes = sorted(index.name for index in old.list_indices())
    before = _search(store, tmp_path)  # searchable as it is, column by column
    _assert_hits_match_columns(before, _columns(store))

    table = open_chunks_table(store)  # how the pipeline, an import and maintenance open it
    assert "card" in table.schema.names and ensure_cards(table) is False
    assert sorted(index.name for index in table.list_indices()) == indexes
    assert table.index_stats("text_idx").num_unindexed_rows == 0
    assert all(card is not None for card in table.to_arrow().column("card").to_pylist())
    assert _search(store, tmp_path) == before
    # New chunks go in with their cards, through the same upsert as always.
    rows, vectors = _rows(60, 5)
    upsert_content_chunks(table, uuid.UUID(rows[0]["content_id"]), chunk_batch(rows, vectors))
    _assert_hits_match_columns(_search(store, tmp_path, "meadow"), _columns(store))


def test_a_row_written_without_its_card_is_still_shown_right(tmp_path: Path) -> None:
    store = LocalVectorStore(tmp_path / "lance")
    table = open_chunks_table(store)
    batch = chunk_batch(*_rows(0, 40))
    # Written around chunk_table (a raw insert): no card. Its page is read from the columns.
    table.add(batch.set_column(SCHEMA.get_field_index("card"), SCHEMA.field("card"),
                               pa.nulls(batch.num_rows, pa.string())))
    build_indexes(table)
    _assert_hits_match_columns(_search(store, tmp_path), _columns(store))


@pytest.mark.parametrize("count", [0, 1])
def test_adding_cards_to_a_table_with_few_rows(tmp_path: Path, count: int) -> None:
    store = LocalVectorStore(tmp_path / "lance")
    old = store.connect().create_table(CHUNKS_TABLE, schema=index_module._WITHOUT_CARD)
    if count:
        old.add(chunk_batch(*_rows(0, count)).drop_columns(["card"]))
    assert ensure_cards(old) is True
    assert old.schema.names == SCHEMA.names and old.count_rows() == count
