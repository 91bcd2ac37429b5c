"""The LanceDB chunk table: its schema, incremental upserts, deletes and index maintenance.

The table holds chunks and their filterable metadata with a normalised vector; never
whole documents. It is derived data: every row can be rebuilt from the relational
`chunks` table, which is why a lost or corrupt vector table is an inconvenience, not a loss.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import lance
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lance.commit import CommitConflictError
from lancedb.expr import col, lit

from encaptio_data.content.embedding import DIMENSION
from encaptio_data.errors import NotFoundError
from encaptio_data.stores.vectors import VectorStore

log = logging.getLogger(__name__)

CHUNKS_TABLE = "chunks"
FILTER_COLUMNS = ("organization_id", "capsule_id", "content_type", "created_at")
# Below this many rows an exact (flat) scan is both exact and fast; an IVF index trained on
# so few vectors would only cost recall.
VECTOR_INDEX_MIN_ROWS = 20_000
# LanceDB's cleanup default (7 days) would undercut the platform's 30-day recovery window.
RECOVERY_WINDOW = timedelta(days=30)

SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("content_id", pa.string(), nullable=False),
    pa.field("capsule_id", pa.string(), nullable=False),
    pa.field("organization_id", pa.string(), nullable=False),
    pa.field("content_type", pa.string(), nullable=False),
    pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("chunk_index", pa.int32(), nullable=False),
    pa.field("page", pa.int32()),
    pa.field("heading", pa.string()),
    pa.field("title", pa.string()),
    pa.field("text", pa.string(), nullable=False),
    pa.field("vector", pa.list_(pa.float32(), DIMENSION), nullable=False),
    # The fields a search result shows but the text, as one JSON object: a page's rows are read
    # by address, and Lance's take costs per column and row (10 rows: 2.3 ms for these ten
    # columns and the text, 0.7 ms for card and text at 1M rows; docs/benchmarks.md, "Lance
    # directly"). Derived, never written on its own: `chunk_table` computes it from the columns
    # beside it, and a table from before it gets it from `ensure_cards`. Last in the schema, where
    # adding it to an existing table puts it.
    pa.field("card", pa.string()),
])
# The columns `card` repeats, in its key order.
CARD_FIELDS = ("id", "content_id", "capsule_id", "organization_id", "content_type", "created_at", "chunk_index", "page",
               "heading", "title")
_WITHOUT_CARD = pa.schema([field for field in SCHEMA if field.name != "card"])


def open_chunks_table(vectors: VectorStore, *, create: bool = True) -> lancedb.table.Table:
    """The chunk table; with ``create`` (how writers open it), created if missing and given its
    card column if it was written before there was one."""
    try:
        table = vectors.open_table(CHUNKS_TABLE)
    except NotFoundError:
        if not create:
            raise
        return vectors.connect().create_table(CHUNKS_TABLE, schema=SCHEMA, exist_ok=True)
    if create:
        ensure_cards(table)
    return table


def card_json(row: Mapping[str, Any]) -> str:
    """The card of one chunk row (``CARD_FIELDS``; created_at as ISO 8601, as results show it)."""
    card = {name: row[name] for name in CARD_FIELDS}
    if isinstance(card["created_at"], datetime):
        card["created_at"] = card["created_at"].isoformat()
    return json.dumps(card, separators=(",", ":"))


def _cards(batch: pa.Table | pa.RecordBatch) -> pa.Array:
    return pa.array([card_json(row) for row in batch.select(list(CARD_FIELDS)).to_pylist()], pa.string())


def chunk_table(columns: Mapping[str, Any]) -> pa.Table:
    """Chunk rows in SCHEMA from every column but the card, which is computed here: the one way
    rows are made for the table (the pipeline, an organization import, the benchmark)."""
    table = pa.table(dict(columns), schema=_WITHOUT_CARD)
    return table.append_column(SCHEMA.field("card"), _cards(table))


def chunk_batch(rows: Sequence[dict[str, Any]], vectors: np.ndarray) -> pa.Table:
    if len(rows) != len(vectors):
        raise ValueError(f"{len(rows)} chunks but {len(vectors)} vectors")
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in _WITHOUT_CARD.names if name != "vector"}
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, DIMENSION)
    return chunk_table(columns)


def ensure_cards(table: lancedb.table.Table) -> bool:
    """Add the card column to a table written before it (computed from its rows); False if it has one.

    A new column in Lance is a new file per fragment beside the existing ones: the rows, their
    addresses and the indexes stay as they are. Two writers racing here both try; the loser
    finds the column there and goes on.
    """
    if "card" in table.schema.names:
        return False
    import lance

    dataset = table.to_lance()
    added = pa.schema([SCHEMA.field("card")])

    @lance.batch_udf(output_schema=added)
    def cards(batch: pa.RecordBatch) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([_cards(batch)], schema=added)

    try:
        dataset.add_columns(cards, read_columns=list(CARD_FIELDS))
    except (OSError, RuntimeError, ValueError):
        table.checkout_latest()
        if "card" not in table.schema.names:
            raise
        return False
    table.checkout_latest()
    return True


def upsert_content_chunks(table: lancedb.table.Table, content_id: uuid.UUID, batch: pa.Table) -> None:
    """Make the table hold exactly `batch` for this content item.

    merge_insert on the chunk id updates unchanged ids in place and inserts new ones; the
    delete then removes chunks the new version no longer has. Both are idempotent, so a crash
    between them is repaired by the next run.
    """
    if batch.num_rows:
        (table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(batch))
    keep = batch.column("id").to_pylist()
    stale = col("content_id") == lit(str(content_id))
    if keep:
        stale = stale & ~col("id").isin(keep)
    table.delete(stale)


def delete_content(table: lancedb.table.Table, content_ids: Iterable[uuid.UUID]) -> None:
    ids = [str(content_id) for content_id in content_ids]
    if ids:
        table.delete(col("content_id").isin(ids))


# The vector index is retrained once the table has outgrown it: when √rows (the partition
# count we train with) reaches this multiple of the trained count, i.e. the table has grown
# 2.25-fold. In between, optimize() assigns new rows to the existing partitions, which keeps
# recall (IVF_SQ recall rises with partitions per row, it does not collapse) at a fraction
# of a retrain's cost: at 1M rows a retrain is ~45 s of both cores, an optimize seconds.
RETRAIN_PARTITION_GROWTH = 1.5
# Up to this many rows the full-text index is rebuilt whenever it no longer covers exactly the
# table's rows. An index updated in place keeps BM25 statistics (document count, lengths) that
# depend on its history, so the same rows could score differently on two instances (an export
# imported elsewhere must answer identically); a rebuild at this size takes seconds. Larger
# tables fold new rows in incrementally and accept the drift.
FULLTEXT_REBUILD_MAX_ROWS = 200_000
# Rows are kept grouped by organization, because every query filters on one: BM25 with the
# organization prefilter ran 32-40 % faster at p95 over the 1M bench rows grouped by
# organization (in batches of 10k-200k rows) than over the same rows in arrival order, where
# organizations interleave (docs/benchmarks.md, "Rows stored by organization"). Lance keeps rows
# in the order they were written and its compaction keeps that order, so `cluster_fresh_rows`
# orders them before the indexes take them in, up to this many rows per rewrite (Lance's own
# target fragment size). Within an organization, a capsule's and a content item's chunks stay
# together, in chunk order.
CLUSTER_GROUP_ROWS = 1_000_000
# Rows are copied in this many at a time, so memory holds the sort keys and one batch, not the group.
CLUSTER_COPY_ROWS = 8_192
CLUSTER_KEYS = ("organization_id", "capsule_id", "content_id", "chunk_index")
# Each optimize() adds the new rows as one more segment of the vector index (see optimize);
# a query probes every segment, so past this many the index is retrained into one.
MAX_VECTOR_DELTAS = 8


@dataclass
class IndexReport:
    rows: int
    vector_index: str | None
    fulltext_index: bool
    scalar_indexes: list[str]
    unindexed_rows: int
    seconds: float
    built: list[str]
    vector_partitions: int | None = None
    clustered_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fragment_groups(fragments: Sequence[lance.LanceFragment], max_rows: int) -> list[list[lance.LanceFragment]]:
    """Consecutive fragments in groups of at most max_rows rows (a larger fragment alone)."""
    groups: list[list[lance.LanceFragment]] = []
    rows = 0
    for fragment in fragments:
        size = fragment.count_rows()
        if not groups or rows + size > max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(fragment)
        rows += size
    return groups


def _rows_at(dataset: lance.LanceDataset, addresses: Sequence[int]) -> pa.RecordBatchReader:
    """The rows at these addresses, in this order, read a batch at a time."""

    def batches() -> Iterable[pa.RecordBatch]:
        for start in range(0, len(addresses), CLUSTER_COPY_ROWS):
            # pylance's take by row id (pinned; see search/service.py `_take`): rows in the order asked.
            yield from dataset._take_rows(addresses[start:start + CLUSTER_COPY_ROWS]).to_batches()

    return pa.RecordBatchReader.from_batches(dataset.schema, batches())


def cluster_fresh_rows(table: lancedb.table.Table, *, group_rows: int = CLUSTER_GROUP_ROWS) -> int:
    """Rewrite the fragments no index covers yet with their rows in ``CLUSTER_KEYS`` order.

    Returns how many rows moved. Only unindexed fragments are touched (those written since the
    last maintenance, or every fragment of a table not indexed yet): moving an indexed row would
    take it out of every index until a rebuild. So rows indexed before stay where they are, and a
    table grows as runs of organizations, one run per organization per maintenance batch.

    Committed as a Lance rewrite of those fragments, the operation compaction commits: rows
    appended meanwhile are kept, and a delete or update of a row being moved makes the commit
    fail rather than be lost; then nothing moves and the next run tries again. A crash before the
    commit leaves only unreferenced files, which version cleanup removes once they are a week old
    (Lance's guard for writes in flight).
    """
    dataset = table.to_lance()
    covered = {fragment for index in dataset.describe_indices() for segment in index.segments
               for fragment in segment.fragment_ids}
    fresh = [fragment for fragment in dataset.get_fragments() if fragment.fragment_id not in covered]
    rewrites, moved = [], 0
    for group in _fragment_groups(fresh, group_rows):
        keys = dataset.scanner(fragments=group, columns=list(CLUSTER_KEYS), with_row_address=True).to_table()
        order = pc.sort_indices(keys, sort_keys=[(key, "ascending") for key in CLUSTER_KEYS])
        if pc.all(pc.equal(order, pa.array(np.arange(len(order), dtype=np.uint64)))).as_py() in (True, None):
            continue  # in order already (or empty): nothing to gain from rewriting it
        addresses = keys.column("_rowaddr").take(order).to_pylist()
        written = lance.fragment.write_fragments(_rows_at(dataset, addresses), dataset, schema=dataset.schema,
                                                 max_rows_per_file=group_rows)
        rewrites.append(lance.LanceOperation.RewriteGroup([fragment.metadata for fragment in group], written))
        moved += len(addresses)
    if not rewrites:
        return 0
    try:
        lance.LanceDataset.commit(dataset, lance.LanceOperation.Rewrite(groups=rewrites, rewritten_indices=[]),
                                  read_version=dataset.version, max_retries=0)
    except CommitConflictError as exc:
        log.warning("rows left unclustered this run (a concurrent write touched them): %s", str(exc)[:300])
        return 0
    table.checkout_latest()
    return moved


def _scalar_configs() -> list[tuple[str, Any]]:
    from lancedb.index import BTree, Bitmap

    # `id` is not a filter column, but merge_insert, deletes and reading a result page by chunk
    # id all look rows up by it. The organization filter, on every query, is a Bitmap: its row
    # set is one stored bitmap instead of ids gathered from sorted BTree pages (prefilter step
    # 0.7-2 ms -> 0.2-0.4 ms at 1M rows); the prefiltered BM25 and vector lists got 15-25 %
    # faster, a query through the API 10-18 % (docs/benchmarks.md, "Scalar indexes and probes").
    # capsule_id stays a BTree: it gained little more, and its cardinality grows without bound
    # (LanceDB advises Bitmap below ~1,000 distinct values).
    return [("id", BTree()), ("organization_id", Bitmap()), ("capsule_id", BTree()), ("content_type", Bitmap()),
            ("created_at", BTree())]


def _index_kind(config: Any) -> str:
    """The `index_type` list_indices() reports for an index built with `config` ("BTree", "Bitmap")."""
    return type(config).__name__


def vector_segments(table: lancedb.table.Table) -> list[int]:
    """The partition count of each segment of the vector index (empty: no index)."""
    if not any(index.name == "vector_idx" for index in table.list_indices()):
        return []
    # Without this, Lance copies every centroid into the statistics (and warns about it).
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    return [int(segment["num_partitions"])
            for segment in table.to_lance().stats.index_stats("vector_idx").get("indices") or []]


def vector_partitions(table: lancedb.table.Table) -> int | None:
    """How many IVF partitions the current vector index was trained with (None: no index)."""
    segments = vector_segments(table)
    return max(segments) if segments else None


def _fulltext_stale(table: lancedb.table.Table, rows: int) -> bool:
    stats = table.index_stats("text_idx")
    return stats is None or stats.num_unindexed_rows > 0 or stats.num_indexed_rows != rows


def build_indexes(table: lancedb.table.Table, *, vector_index_min_rows: int = VECTOR_INDEX_MIN_ROWS,
                  num_partitions: int | None = None, rebuild: bool = False) -> IndexReport:
    """Make every index the query API relies on exist and cover every row.

    Missing indexes are created (all of them with ``rebuild``), and so is a scalar index of
    another kind than ``_scalar_configs`` names (BTree/Bitmap); the vector index is retrained
    when the table has outgrown it (``RETRAIN_PARTITION_GROWTH``) or ``num_partitions`` asks for
    another size; rows added since the indexes were built are folded in incrementally by
    ``optimize`` rather than by rebuilding from scratch, which at 1M rows took minutes per run.
    """
    from lancedb.index import FTS, IvfSq

    started = time.monotonic()
    clustered = cluster_fresh_rows(table)
    rows = table.count_rows()
    kinds = {index.name: index.index_type for index in table.list_indices()}
    existing = set(kinds)
    built: list[str] = []
    scalar = []
    for column, config in _scalar_configs():
        name = f"{column}_idx"
        # A scalar index of another kind than configured (an older table) is rebuilt, in seconds.
        if rebuild or kinds.get(name) != _index_kind(config):
            table.create_index(column, config=config, replace=True, name=name)
            built.append(name)
        scalar.append(column)
    if rebuild or "text_idx" not in existing or (rows <= FULLTEXT_REBUILD_MAX_ROWS and _fulltext_stale(table, rows)):
        table.create_index("text", config=FTS(with_position=False), replace=True, name="text_idx")
        built.append("text_idx")
    segments = vector_segments(table)
    trained = max(segments) if segments else None
    if rows >= vector_index_min_rows:
        # IVF_SQ with √rows partitions: in docs/benchmarks.md it matched IVF_HNSW_SQ's recall
        # (0.990 at 1M with 40 probes) and built in under a minute instead of four.
        wanted = num_partitions or max(1, int(rows ** 0.5))
        outgrown = trained is not None and (wanted >= RETRAIN_PARTITION_GROWTH * trained
                                            or len(segments) > MAX_VECTOR_DELTAS
                                            or (num_partitions is not None and num_partitions != trained))
        if rebuild or trained is None or outgrown:
            table.create_index("vector", config=IvfSq(distance_type="cosine", num_partitions=wanted),
                               replace=True, name="vector_idx")
            built.append("vector_idx")
            trained = wanted
    if any((table.index_stats(name).num_unindexed_rows if table.index_stats(name) else 0)
           for name in ({"text_idx", "vector_idx", *(f"{c}_idx" for c in scalar)} & existing) - set(built)):
        optimize(table)
    stats = table.index_stats("text_idx")
    indices = {index.name: index for index in table.list_indices()}
    return IndexReport(rows=rows, vector_index=indices["vector_idx"].index_type if "vector_idx" in indices else None,
                       fulltext_index=True, scalar_indexes=scalar,
                       unindexed_rows=stats.num_unindexed_rows if stats else 0,
                       seconds=round(time.monotonic() - started, 3), built=built,
                       vector_partitions=trained if "vector_idx" in indices else None, clustered_rows=clustered)


def optimize(table: lancedb.table.Table, *, keep_versions_for: timedelta = RECOVERY_WINDOW,
             delete_unverified: bool = False) -> dict[str, Any]:
    """Compact small fragments, fold new rows into the indexes, and drop versions older than the window.

    Written out step by step instead of calling LanceDB's ``table.optimize()``: its index step
    merges the vector index's segments and, with pylance 14, re-partitions them on the way
    (measured: a 316-partition IVF_SQ index over 100k rows came back with 4 partitions, 141
    over 20k with 1), which turns every approximate search into a scan of the whole table.
    New rows go into a delta segment trained on the same partitions instead; build_indexes
    retrains once the deltas pile up (``MAX_VECTOR_DELTAS``) or the table outgrows them.
    """
    fragments_before, versions_before = table.stats()["fragment_stats"]["num_fragments"], len(table.list_versions())
    # Before compaction, which would merge the fresh fragments in arrival order.
    clustered = cluster_fresh_rows(table)
    dataset = table.to_lance()
    dataset.optimize.compact_files()
    names = [index.name for index in table.list_indices()]
    if others := [name for name in names if name != "vector_idx"]:
        dataset.optimize.optimize_indices(index_names=others)
    if "vector_idx" in names:
        dataset.optimize.optimize_indices(index_names=["vector_idx"], num_indices_to_merge=0)
    dataset.cleanup_old_versions(older_than=keep_versions_for, delete_unverified=delete_unverified)
    table.checkout_latest()
    return {"clustered_rows": clustered,
            "fragments_before": fragments_before, "fragments_after": table.stats()["fragment_stats"]["num_fragments"],
            "versions_before": versions_before, "versions_after": len(table.list_versions())}
