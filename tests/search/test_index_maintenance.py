"""Index maintenance is incremental, and a result page is read by chunk id after ranking.

A synthetic table with the real SCHEMA on a local LanceDB directory: index maintenance does
not depend on what the vectors mean, so random unit vectors stand in for the model here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pytest

from encaptio_data.search import index as index_module
from encaptio_data.search.index import (CLUSTER_KEYS, MAX_VECTOR_DELTAS, SCHEMA, build_indexes, chunk_batch,
                                        cluster_fresh_rows, optimize, vector_partitions, vector_segments)

ORG = str(uuid.UUID(int=1))
MIN_ROWS = 400  # a small vector-index threshold so the test trains real IVF indexes in seconds


def _rows(start: int, count: int, rng: np.random.Generator) -> tuple[list[dict], np.ndarray]:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"id": f"chunk-{i:06d}", "content_id": str(uuid.UUID(int=10_000 + i // 10)), "capsule_id": str(uuid.UUID(int=7)),
             "organization_id": ORG, "content_type": "pdf", "created_at": created + timedelta(minutes=i),
             "chunk_index": i % 10, "page": 1, "heading": None, "title": "t", "text": f"word{i % 50} common text {i}"}
            for i in range(start, start + count)]
    vectors = rng.normal(size=(count, SCHEMA.field("vector").type.list_size)).astype(np.float32)
    return rows, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave as above FULLTEXT_REBUILD_MAX_ROWS: the full-text index is folded, not rebuilt."""
    monkeypatch.setattr(index_module, "FULLTEXT_REBUILD_MAX_ROWS", 0)


@pytest.fixture
def table(tmp_path: Path) -> lancedb.table.Table:
    return lancedb.connect(tmp_path / "lance").create_table("chunks", schema=SCHEMA)


def _add(table: lancedb.table.Table, start: int, count: int, seed: int) -> None:
    rows, vectors = _rows(start, count, np.random.default_rng(seed))
    table.add(chunk_batch(rows, vectors))



def test_first_build_creates_everything_and_a_second_builds_nothing(table: lancedb.table.Table, large: None) -> None:
    _add(table, 0, 500, seed=1)
    first = build_indexes(table, vector_index_min_rows=MIN_ROWS)
    assert set(first.built) == {"id_idx", "organization_id_idx", "capsule_id_idx", "content_type_idx",
                                "created_at_idx", "text_idx", "vector_idx"}
    assert first.vector_partitions == vector_partitions(table) == int(500 ** 0.5)
    second = build_indexes(table, vector_index_min_rows=MIN_ROWS)
    assert second.built == [] and second.unindexed_rows == 0


def test_a_scalar_index_of_another_kind_is_rebuilt_once(table: lancedb.table.Table, large: None) -> None:
    """A table indexed before organization_id became a Bitmap converts on its next maintenance run."""
    from lancedb.index import BTree

    _add(table, 0, 500, seed=1)
    build_indexes(table, vector_index_min_rows=MIN_ROWS)
    table.create_index("organization_id", config=BTree(), replace=True, name="organization_id_idx")
    assert build_indexes(table, vector_index_min_rows=MIN_ROWS).built == ["organization_id_idx"]
    assert {i.name: i.index_type for i in table.list_indices()}["organization_id_idx"] == "Bitmap"
    assert build_indexes(table, vector_index_min_rows=MIN_ROWS).built == []


def test_new_rows_are_folded_in_without_a_rebuild(table: lancedb.table.Table, large: None) -> None:
    _add(table, 0, 500, seed=1)
    build_indexes(table, vector_index_min_rows=MIN_ROWS)
    _add(table, 500, 200, seed=2)  # 700 rows: √700 = 26 < 1.5 × 22 trained partitions
    assert table.index_stats("text_idx").num_unindexed_rows == 200
    report = build_indexes(table, vector_index_min_rows=MIN_ROWS)
    assert report.built == []
    for name in ("text_idx", "vector_idx", "id_idx", "organization_id_idx"):
        assert table.index_stats(name).num_unindexed_rows == 0, name
    assert vector_partitions(table) == 22
    hits = table.search("word7", query_type="fts").where(f"id = 'chunk-000657'").select(["id"]).to_list()
    assert [hit["id"] for hit in hits] == ["chunk-000657"]


def test_an_outgrown_vector_index_is_retrained(table: lancedb.table.Table, large: None) -> None:
    _add(table, 0, 500, seed=1)
    build_indexes(table, vector_index_min_rows=MIN_ROWS)
    _add(table, 500, 700, seed=3)  # 1,200 rows: √1200 = 34 ≥ 1.5 × 22
    report = build_indexes(table, vector_index_min_rows=MIN_ROWS)
    assert report.built == ["vector_idx"]
    assert vector_partitions(table) == int(1200 ** 0.5)
    assert table.index_stats("text_idx").num_unindexed_rows == 0


def test_rebuild_rebuilds_every_index(table: lancedb.table.Table) -> None:
    _add(table, 0, 500, seed=1)
    build_indexes(table, vector_index_min_rows=MIN_ROWS)
    report = build_indexes(table, vector_index_min_rows=MIN_ROWS, rebuild=True)
    assert len(report.built) == 7


ORGS = [str(uuid.UUID(int=100 + n)) for n in range(3)]


def _add_interleaved(table: lancedb.table.Table, start: int, count: int, seed: int) -> None:
    """Rows of three organizations in arrival order: each content item's organization drawn at random."""
    rng = np.random.default_rng(seed)
    rows, vectors = _rows(start, count, rng)
    owners = rng.choice(ORGS, size=count // 10 + 1)
    for row in rows:
        row["organization_id"] = str(owners[int(row["content_id"][-4:], 16) % len(owners)])
    table.add(chunk_batch(rows, vectors))


def _layout(table: lancedb.table.Table) -> list[tuple]:
    """The table's rows in storage order, by their clustering keys."""
    keys = table.to_lance().to_table(columns=list(CLUSTER_KEYS)).to_pylist()
    return [tuple(row[key] for key in CLUSTER_KEYS) for row in keys]


def _contents(table: lancedb.table.Table) -> dict[str, tuple]:
    rows = table.to_lance().to_table(columns=["id", "organization_id", "text", "card", "vector"]).to_pylist()
    return {row["id"]: (row["organization_id"], row["text"], row["card"], tuple(row["vector"])) for row in rows}


def test_fresh_rows_are_stored_by_organization_and_nothing_else_changes(tmp_path: Path, large: None,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first build stores rows by organization, capsule, content item and chunk; the rows,
    their vectors and cards are the same, and BM25 scores what an unclustered copy scores."""
    clustered = lancedb.connect(tmp_path / "a").create_table("chunks", schema=SCHEMA)
    unclustered = lancedb.connect(tmp_path / "b").create_table("chunks", schema=SCHEMA)
    for batch in range(3):
        for table in (clustered, unclustered):
            _add_interleaved(table, batch * 200, 200, seed=batch)
    before = _contents(clustered)
    assert _layout(clustered) != sorted(_layout(clustered))
    report = build_indexes(clustered, vector_index_min_rows=MIN_ROWS)
    assert report.clustered_rows == 600 and report.unindexed_rows == 0
    assert _layout(clustered) == sorted(_layout(clustered))
    assert _contents(clustered) == before
    for name in ("text_idx", "vector_idx", "organization_id_idx"):
        assert clustered.index_stats(name).num_unindexed_rows == 0, name
    monkeypatch.setattr(index_module, "cluster_fresh_rows", lambda table, **_: 0)
    build_indexes(unclustered, vector_index_min_rows=MIN_ROWS)
    assert _layout(unclustered) != sorted(_layout(unclustered))

    def scores(table: lancedb.table.Table, org: str) -> list[tuple[str, float]]:
        rows = (table.search("word7 common", query_type="fts").where(f"organization_id = '{org}'", prefilter=True)
                .select(["id", "_score"]).limit(30).to_list())
        return sorted((row["id"], round(row["_score"], 5)) for row in rows)

    for org in ORGS:
        assert scores(clustered, org) == scores(unclustered, org) != []


def test_indexed_rows_stay_where_they_are_and_new_ones_are_clustered(table: lancedb.table.Table,
                                                                     large: None) -> None:
    """Maintenance moves only rows no index covers yet: the indexes keep covering every row with
    nothing rebuilt, and a second run finds nothing to move."""
    _add_interleaved(table, 0, 500, seed=1)
    build_indexes(table, vector_index_min_rows=MIN_ROWS)
    indexed = _layout(table)
    _add_interleaved(table, 500, 150, seed=2)
    _add_interleaved(table, 650, 50, seed=3)
    before = _contents(table)
    maintenance = optimize(table)
    assert maintenance["clustered_rows"] == 200
    layout = _layout(table)
    assert layout[:500] == indexed and layout[500:] == sorted(layout[500:])
    assert _contents(table) == before
    assert build_indexes(table, vector_index_min_rows=MIN_ROWS).built == []
    assert vector_segments(table) == [22, 22]
    for name in ("text_idx", "vector_idx", "id_idx", "organization_id_idx", "capsule_id_idx"):
        assert table.index_stats(name).num_unindexed_rows == 0, name
    assert cluster_fresh_rows(table) == 0


def test_fragments_are_ordered_group_by_group_a_batch_at_a_time(table: lancedb.table.Table,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "CLUSTER_COPY_ROWS", 7)
    for batch in range(4):
        _add_interleaved(table, batch * 60, 60, seed=batch)
    before = _contents(table)
    assert cluster_fresh_rows(table, group_rows=130) == 240
    layout = _layout(table)
    assert [len(fragment.to_table()) for fragment in table.to_lance().get_fragments()] == [120, 120]
    assert layout[:120] == sorted(layout[:120]) and layout[120:] == sorted(layout[120:]) and layout != sorted(layout)
    assert _contents(table) == before


def test_rows_already_in_order_are_not_rewritten(table: lancedb.table.Table) -> None:
    _add_interleaved(table, 0, 100, seed=1)
    assert cluster_fresh_rows(table) == 100
    version = table.version
    assert cluster_fresh_rows(table) == 0 and table.version == version


def test_a_write_racing_the_rewrite_is_kept(table: lancedb.table.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delete of a row being moved wins: the rewrite is dropped (nothing moves, the row stays
    deleted) and the next run clusters; an append meanwhile is kept beside the moved rows."""
    import lance

    _add_interleaved(table, 0, 120, seed=1)
    _add_interleaved(table, 120, 120, seed=2)
    commit = lance.LanceDataset.commit

    def racing(write: Any) -> Any:
        def commit_after(*args: Any, **kwargs: Any) -> Any:
            write()
            return commit(*args, **kwargs)
        return commit_after

    monkeypatch.setattr(lance.LanceDataset, "commit", racing(lambda: table.delete("id = 'chunk-000007'")))
    assert cluster_fresh_rows(table) == 0
    assert len(_contents(table)) == 239 and "chunk-000007" not in _contents(table)
    monkeypatch.setattr(lance.LanceDataset, "commit", racing(lambda: _add_interleaved(table, 900, 30, seed=3)))
    assert cluster_fresh_rows(table) == 239
    rows = _contents(table)
    assert len(rows) == 269 and {f"chunk-{i:06d}" for i in range(900, 930)} <= rows.keys()
    assert "chunk-000007" not in rows


def test_below_the_threshold_there_is_no_vector_index(table: lancedb.table.Table) -> None:
    _add(table, 0, 100, seed=1)
    report = build_indexes(table, vector_index_min_rows=MIN_ROWS)
    assert report.vector_index is None and vector_partitions(table) is None


def test_optimize_keeps_the_trained_partitions(table: lancedb.table.Table) -> None:
    """LanceDB's own table.optimize() re-partitions the vector index into a handful of huge
    partitions (a 22-partition index came back with 1); ours adds a delta on the same ones."""
    _add(table, 0, 500, seed=1)
    build_indexes(table, vector_index_min_rows=MIN_ROWS)
    _add(table, 500, 100, seed=4)
    optimize(table)
    assert vector_segments(table) == [22, 22]
    assert table.index_stats("vector_idx").num_unindexed_rows == 0


def test_piled_up_deltas_are_retrained_into_one(table: lancedb.table.Table, large: None) -> None:
    _add(table, 0, 500, seed=1)
    build_indexes(table, vector_index_min_rows=MIN_ROWS)
    for batch in range(MAX_VECTOR_DELTAS):
        _add(table, 500 + batch * 10, 10, seed=10 + batch)
        build_indexes(table, vector_index_min_rows=MIN_ROWS)
    assert len(vector_segments(table)) == MAX_VECTOR_DELTAS + 1
    _add(table, 1000, 10, seed=99)
    report = build_indexes(table, vector_index_min_rows=MIN_ROWS)
    assert report.built == ["vector_idx"] and vector_segments(table) == [int(590 ** 0.5)]


def test_a_small_table_gets_fresh_bm25_statistics(tmp_path: Path) -> None:
    """Below FULLTEXT_REBUILD_MAX_ROWS the full-text index is rebuilt when rows come or go, so
    the same rows score the same however they arrived (one batch or three, with a delete)."""
    incremental = lancedb.connect(tmp_path / "a").create_table("chunks", schema=SCHEMA)
    _add(incremental, 0, 300, seed=1)
    build_indexes(incremental, vector_index_min_rows=MIN_ROWS)
    _add(incremental, 300, 200, seed=2)
    _add(incremental, 500, 50, seed=3)
    incremental.delete("id >= 'chunk-000500'")
    report = build_indexes(incremental, vector_index_min_rows=MIN_ROWS)
    assert "text_idx" in report.built
    at_once = lancedb.connect(tmp_path / "b").create_table("chunks", schema=SCHEMA)
    _add(at_once, 0, 300, seed=1)
    _add(at_once, 300, 200, seed=2)
    build_indexes(at_once, vector_index_min_rows=MIN_ROWS)

    def scores(table: lancedb.table.Table) -> list[tuple[str, float]]:
        rows = table.search("word7 common", query_type="fts").select(["id", "_score"]).limit(20).to_list()
        return [(row["id"], round(row["_score"], 6)) for row in rows]

    assert scores(incremental) == scores(at_once)


@pytest.mark.parametrize("sort", ["relevance", "newest"])
def test_ties_are_ordered_by_chunk_id_whatever_the_row_order(tmp_path: Path, sort: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that tie (same text, same score; same created_at for the date sort) come back in
    chunk-id order on two instances that stored them in opposite orders, with and without the
    cache, and the pages of one list neither repeat nor skip a chunk."""
    from encaptio_data.authz import Grant, Permission, Principal
    from encaptio_data.db.session import Database
    from encaptio_data.search.service import SearchMode, SearchRequest, SearchService, SortOrder
    from encaptio_data.stores.cache import MemoryCache
    from encaptio_data.stores.vectors import LocalVectorStore

    searcher = Principal("system:test-search", (Grant(frozenset({Permission.SEARCH_ORG}), None),), system=True)
    # Clustering would store both instances' rows in one order; this is about rows stored in
    # different orders, as on two instances whose rows were indexed in different batches.
    monkeypatch.setattr(index_module, "cluster_fresh_rows", lambda table, **_: 0)
    rows, vectors = _rows(0, 23, np.random.default_rng(1))
    for row in rows:
        row["text"], row["created_at"] = "the same tied words", datetime(2026, 1, 1, tzinfo=UTC)
    pages: dict[str, list[list[str]]] = {}
    for name, order in (("forward", slice(None)), ("reversed", slice(None, None, -1))):
        store = LocalVectorStore(tmp_path / name)
        table = store.connect().create_table("chunks", schema=SCHEMA)
        table.add(chunk_batch(rows[order], vectors[order]))
        build_indexes(table, vector_index_min_rows=MIN_ROWS)
        for cache in (None, MemoryCache(namespace=f"ties-{name}")):
            service = SearchService(store, cache, principal=searcher,
                                    db=Database(f"sqlite:///{tmp_path / 'audit.sqlite3'}"))
            pages[f"{name}-{cache is not None}"] = [
                [hit.chunk_id for hit in service.search(SearchRequest(ORG, "tied words", mode=SearchMode.FULLTEXT,
                                                                      sort=SortOrder(sort), limit=5,
                                                                      offset=offset)).hits]
                for offset in range(0, 25, 5)]
    expected = sorted(row["id"] for row in rows)
    if sort == "newest":
        expected.reverse()
    for name, listed in pages.items():
        assert [chunk for page in listed for chunk in page] == expected, name
