"""The query API: semantic, full-text and hybrid search over capsule chunks.

Guarantees, each enforced here rather than left to callers:
- Tenant isolation: the organization filter is mandatory, applied inside LanceDB as a
  prefilter, and every hit is checked again before it leaves this module.
- No injection: filter values are validated (UUIDs, known content types, aware datetimes)
  and reach LanceDB only as typed literals (`lancedb.expr.lit`), never pasted into SQL;
  full-text queries go through `MatchQuery`, so query syntax in user text is just text.
- Stable pagination: a query's candidates (at most `depth`) are computed once, ordered by
  score then chunk id, and cached; every page slices the same list, so pages have no gaps
  or repeats even while new rows arrive. The cursor carries the query's fingerprint.
- Two steps per query: the ranked candidate list holds row addresses and scores (with the
  table version they belong to), and only the page's rows are read, by address. At 1M chunks reading every result column for
  all `depth` candidates was half of a vector query's time (docs/benchmarks.md, "Where the
  time goes"). Rows read are cached with the list, so a repeated page reads nothing. Hybrid
  runs its full-text list concurrently with the query embedding and vector list, both on one
  snapshot of the table.
- Queries go to Lance, the format under LanceDB, directly: the same scans (prefiltered ANN,
  BM25, take by address) without LanceDB's query builder, whose conversion of each query and
  its filter cost 1.5-2.5 ms per call at 1M rows (docs/benchmarks.md, "Lance directly"). The
  filter is still built as a typed LanceDB expression and rendered to SQL by LanceDB's own
  unparser (`Expr.to_sql`, which quotes and escapes every literal).
- Cache invalidation: candidate lists are tagged by organization (unfiltered queries) or by
  capsule; the pipeline invalidates both when a capsule's content changes.
- Least privilege: a service is built for one principal (`authz`), resolved once; every search
  checks that principal's `search_org` grant for the requested organization in memory (no
  query), and a refusal is audited. A product service keeps one SearchService per principal
  (or per request, after resolving the principal from its session) and never a shared
  "trusted" one: there is no way to search without a principal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

import lance
import lancedb
import numpy as np
from lance.query import MatchQuery
from lancedb.expr import Expr, col, lit

from encaptio_data import authz
from encaptio_data.authz import Permission, Principal
from encaptio_data.content.embedding import Embedder, check_corpus_model, load_query_embedder
from encaptio_data.db.enums import ContentType
from encaptio_data.db.session import Database
from encaptio_data.errors import InvalidInputError, NotFoundError
from encaptio_data.search.datasets import SHARED as SHARED_DATASETS
from encaptio_data.search.index import CHUNKS_TABLE, open_chunks_table
from encaptio_data.settings import get_settings
from encaptio_data.stores.cache import Cache, get_json, set_json
from encaptio_data.stores.vector_replica import serving_store
from encaptio_data.stores.vectors import VectorStore

MAX_QUERY_CHARS = 1_000
MAX_LIMIT = 100
DEFAULT_DEPTH = 100
# IVF partitions probed per vector query: at least DEFAULT_NPROBES, and up to
# PROBE_CEILING_FACTOR times as many when a narrow prefilter (one capsule) leaves the first
# partitions short of candidates. At 1M chunks (IVF_SQ, 1,000 partitions, organization
# filter) 20..40 gave recall@10 0.994 at p95 9.9 ms for LanceDB's part; an unbounded ceiling
# (maximum_nprobes(0)) probed far more partitions than needed, p95 50 ms, for recall 0.997
# (docs/benchmarks.md, "Probes"). In practice pylance 14 probes the ceiling on every query at
# 1M (analyze_plan: 40 partitions searched with or without the organization filter), so the
# ceiling is the knob: 32 or 20 probes were 9-11 % faster but cost recall, and capsule-scoped
# recall@10 is already ~0.95 at 40 (docs/benchmarks.md, "Scalar indexes and probes").
DEFAULT_NPROBES = 20
PROBE_CEILING_FACTOR = 2
CACHE_TTL_SECONDS = 600.0
# The constant of reciprocal rank fusion (Cormack et al. 2009); 60 is the value in the paper
# and in LanceDB's own RRFReranker.
RRF_K = 60
# Hybrid weighs the semantic list twice the full-text one. Full-text misses broad, question-
# style queries that share few words with the documents, and at equal weight its misses push
# semantic hits out of the top ten; at 2:1 hybrid beats both single modes on nDCG@10 and
# recall@10 on the labelled sets (docs/benchmarks.md, "Retrieval quality").
HYBRID_WEIGHTS = (2.0, 1.0)
# How deep hybrid reads the full-text list. Past rank 50 a full-text hit adds at most
# 1/(RRF_K + 51) to a fused score whose top ten start near 2/(RRF_K + 1); BM25's top-k search
# is the slowest half of a hybrid query at 1M chunks, and a shorter k lets it prune more
# (docs/benchmarks.md, "Search").
HYBRID_FULLTEXT_DEPTH = 50
_RESULT_COLUMNS = ["id", "content_id", "capsule_id", "organization_id", "content_type", "created_at", "chunk_index",
                   "page", "heading", "title", "text"]
# LanceDB's sync API hands each query to its own runtime and waits, releasing the GIL, so two
# threads are enough to overlap the two halves of a hybrid query.
_HYBRID_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="encaptio-hybrid")


class StaleCandidatesError(RuntimeError):
    """A cached candidate list's table version is gone; the list must be ranked again."""


class SearchMode(StrEnum):
    SEMANTIC = "semantic"
    FULLTEXT = "fulltext"
    HYBRID = "hybrid"


class SortOrder(StrEnum):
    RELEVANCE = "relevance"
    NEWEST = "newest"
    OLDEST = "oldest"


def _uuid(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidInputError(f"{what} {str(value)[:80]!r} is not a valid id (expected a UUID)") from None


@dataclass(frozen=True)
class SearchRequest:
    organization_id: str
    query: str
    mode: SearchMode = SearchMode.HYBRID
    capsule_ids: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    sort: SortOrder = SortOrder.RELEVANCE
    limit: int = 10
    offset: int = 0
    cursor: str | None = None

    def validated(self, depth: int) -> SearchRequest:
        """A normalised copy, or InvalidInputError naming the first bad field."""
        if not isinstance(self.query, str) or not self.query.strip():
            raise InvalidInputError("query must be non-empty text")
        if len(self.query) > MAX_QUERY_CHARS:
            raise InvalidInputError(f"query is {len(self.query)} characters; the limit is {MAX_QUERY_CHARS}")
        try:
            mode, sort = SearchMode(self.mode), SortOrder(self.sort)
        except ValueError as exc:
            raise InvalidInputError(f"{exc}; modes: semantic, fulltext, hybrid; sorts: relevance, newest, oldest") from None
        types = []
        for value in self.content_types:
            try:
                types.append(ContentType(value).value)
            except ValueError:
                raise InvalidInputError(f"unknown content type {str(value)[:40]!r}") from None
        for name in ("created_from", "created_to"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise InvalidInputError(f"{name} must be a timezone-aware datetime")
        if not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInputError(f"limit must be between 1 and {MAX_LIMIT}")
        if not isinstance(self.offset, int) or self.offset < 0:
            raise InvalidInputError("offset must be a non-negative integer")
        normalised = SearchRequest(
            organization_id=_uuid(self.organization_id, "organization"),
            query=" ".join(self.query.split()),
            mode=mode,
            capsule_ids=tuple(sorted({_uuid(c, "capsule") for c in self.capsule_ids})),
            content_types=tuple(sorted(set(types))),
            created_from=self.created_from,
            created_to=self.created_to,
            sort=sort,
            limit=self.limit,
            offset=self.offset,
        )
        offset = _decode_cursor(self.cursor, normalised.fingerprint()) if self.cursor else self.offset
        if offset >= depth:
            raise InvalidInputError(f"offset must be below {depth}: a query returns at most {depth} results; refine it")
        return _replace(normalised, offset=offset)

    def fingerprint(self) -> str:
        """What identifies the candidate list: everything but the page window."""
        # Read field by field: asdict() deep-copies the request, a tenth of a millisecond per query.
        identity = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in {"limit", "offset", "cursor"}}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def filter(self) -> Expr:
        expr = col("organization_id") == lit(self.organization_id)
        if self.capsule_ids:
            expr = expr & col("capsule_id").isin(list(self.capsule_ids))
        if self.content_types:
            expr = expr & col("content_type").isin(list(self.content_types))
        if self.created_from:
            expr = expr & (col("created_at") >= lit(self.created_from))
        if self.created_to:
            expr = expr & (col("created_at") < lit(self.created_to))
        return expr

    def cache_tags(self) -> list[str]:
        if self.capsule_ids:
            return [capsule_tag(c) for c in self.capsule_ids]
        return [organization_tag(self.organization_id)]


def _replace(request: SearchRequest, **changes: Any) -> SearchRequest:
    return SearchRequest(**(asdict(request) | changes))


def organization_tag(organization_id: Any) -> str:
    return f"search:org:{organization_id}"


def capsule_tag(capsule_id: Any) -> str:
    return f"search:capsule:{capsule_id}"


def _encode_cursor(fingerprint: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{fingerprint}:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, fingerprint: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        cursor_fingerprint, offset = raw.rsplit(":", 1)
        value = int(offset)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputError("cursor is malformed") from None
    if cursor_fingerprint != fingerprint or value < 0:
        raise InvalidInputError("cursor belongs to a different query")
    return value


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    score: float
    text: str
    content_id: str
    capsule_id: str
    organization_id: str
    content_type: str
    title: str | None
    page: int | None
    heading: str | None
    chunk_index: int
    created_at: str


@dataclass
class SearchPage:
    hits: list[SearchHit]
    mode: str
    offset: int
    limit: int
    total_candidates: int
    next_cursor: str | None
    cached: bool
    took_ms: float
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _table_location(vectors: VectorStore) -> str:
    """The chunk table's dataset path: the key its shared dataset is kept under."""
    uri = vectors.uri if "://" in vectors.uri else os.path.abspath(vectors.uri)
    return f"{uri.rstrip('/')}/{CHUNKS_TABLE}.lance"


@lru_cache(maxsize=4096)
def _query_vector(embedder: Embedder, text: str) -> np.ndarray:
    return embedder.encode([text])[0]


class SearchService:
    """Searches on behalf of ``principal``; ``db`` receives the audit entry of a refused search."""

    def __init__(self, vectors: VectorStore, cache: Cache | None = None, *, principal: Principal, db: Database,
                 embedder: Embedder | None = None, depth: int = DEFAULT_DEPTH, nprobes: int = DEFAULT_NPROBES,
                 refine_factor: int | None = None, prewarm: bool | None = None) -> None:
        """prewarm: load the indexes into the process's shared index cache in the background
        (``search.datasets``); default the ENCAPTIO_SEARCH_PREWARM setting. One-shot processes
        (a CLI search) pass False."""
        if not isinstance(principal, Principal):
            raise TypeError("SearchService needs a resolved authz.Principal (authz.resolve or authz.system_principal)")
        self.principal = principal
        self._db = db
        # Writers share the durable copy; searches read the local serving copy when there is one.
        self._vectors = serving_store(vectors)
        self._cache = cache
        self._embedder = embedder
        self._table: lancedb.table.Table | None = None
        self._location = _table_location(self._vectors)
        self._prewarm = get_settings().search_prewarm if prewarm is None else prewarm
        self.depth = depth
        self.nprobes = nprobes
        self.refine_factor = refine_factor

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_query_embedder()
        return self._embedder

    @property
    def table(self) -> lancedb.table.Table:
        if self._table is None:
            try:
                self._table = open_chunks_table(self._vectors, create=False)
            except NotFoundError:
                raise NotFoundError("no search index yet: run the content pipeline (encaptio demo or ingest)") from None
        return self._table

    def snapshot(self) -> lance.LanceDataset:
        """The chunk table's newest version, as an immutable Lance dataset.

        Rows committed by any writer are seen by the next query (the check reads the table's
        latest version number, ~15 us on a local directory); a query that runs two scans
        (hybrid) runs both on the one snapshot it was given, so their row addresses agree.
        Every service of the process shares the dataset and its caches (``search.datasets``).
        """
        return SHARED_DATASETS.latest(self._location, lambda: self.table.to_lance(), prewarm=self._prewarm)

    def search(self, request: SearchRequest) -> SearchPage:
        started = time.perf_counter()
        request = request.validated(self.depth)
        if not self.principal.allows(Permission.SEARCH_ORG, request.organization_id):
            authz.check(self._db, self.principal, Permission.SEARCH_ORG, request.organization_id)
        fingerprint = request.fingerprint()
        cache_key = f"search:{request.organization_id}:{fingerprint}"
        entry = get_json(self._cache, cache_key) if self._cache else None
        cached = isinstance(entry, dict) and {"version", "candidates", "hits"} <= entry.keys()
        if not cached:
            entry = self._fresh_entry(request)
        try:
            changed = self._settle_window(entry, request)
        except StaleCandidatesError:
            cached, entry = False, self._fresh_entry(request)
            changed = self._settle_window(entry, request)
        if self._cache and (changed or not cached):
            set_json(self._cache, cache_key, entry, ttl=CACHE_TTL_SECONDS, tags=request.cache_tags())
        window = entry["candidates"][request.offset:request.offset + request.limit]
        known = entry["hits"]
        leaked = [hit for hit in known.values() if hit["organization_id"] != request.organization_id]
        if leaked:
            # Unreachable while the prefilter holds; if it ever breaks, fail closed.
            raise RuntimeError(f"tenant isolation violated: {len(leaked)} foreign chunks for one query")
        hits = [SearchHit(**(known[str(c["row_id"])] | {"score": c["score"]})) for c in window
                if str(c["row_id"]) in known]
        candidates = entry["candidates"]
        end = request.offset + len(window)
        next_cursor = _encode_cursor(fingerprint, end) if end < len(candidates) and end < self.depth else None
        return SearchPage(
            hits=hits, mode=request.mode.value, offset=request.offset,
            limit=request.limit, total_candidates=len(candidates), next_cursor=next_cursor, cached=cached,
            took_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def _settle_window(self, entry: dict[str, Any], request: SearchRequest) -> bool:
        """Read the page's rows, and put candidates that tie with them in chunk-id order.

        Lists are ranked by row address within a tie, but addresses differ between instances and
        after compaction; the order users see within a tie must not (an organization imported
        elsewhere answers identically). A tie reaching past the page's edges is read whole, and
        the settled order is kept in the list, so later pages neither repeat nor skip a chunk.
        Returns whether the entry changed (and should be cached again).
        """
        candidates, known = entry["candidates"], entry["hits"]
        tied = _sort_key(request.sort)
        start, stop = request.offset, min(request.offset + request.limit, len(candidates))
        while 0 < start < len(candidates) and tied(candidates[start - 1]) == tied(candidates[start]):
            start -= 1
        while 0 < stop < len(candidates) and tied(candidates[stop - 1]) == tied(candidates[stop]):
            stop += 1
        span = candidates[start:stop]
        missing = [c["row_id"] for c in span if str(c["row_id"]) not in known]
        if missing:
            known |= self._read_rows(missing, entry["version"])
        groups = _group_ranks(span, tied)
        settled = span
        if len(groups) < len(span):
            # Within a tie: chunk id ascending (descending for newest first, as the date sort runs).
            settled = sorted(span, key=lambda c: (groups[tied(c)], known.get(str(c["row_id"]), {}).get("chunk_id", "")))
            if request.sort is SortOrder.NEWEST:
                settled = _reverse_within_groups(settled, tied)
        reordered = [c["row_id"] for c in settled] != [c["row_id"] for c in span]
        if reordered:
            candidates[start:stop] = settled
        return bool(missing) or reordered

    def _fresh_entry(self, request: SearchRequest) -> dict[str, Any]:
        """Rank the candidates on one snapshot; row addresses mean something only with its version."""
        snapshot = self.snapshot()
        return {"version": snapshot.version, "candidates": self._candidates(request, snapshot), "hits": {}}

    def _read_rows(self, addresses: list[int], version: int) -> dict[str, dict[str, Any]]:
        """The page's rows, by row address, from the table version the addresses came from.

        A take by address costs ~0.5-2 ms at 1M rows against ~6 ms for an indexed lookup by chunk
        id under the organization filter. A cached list outlives table versions; its rows are
        read at the version it was ranked on (LanceDB keeps versions for the 30-day recovery
        window) and, when that version is gone (an erasure's cleanup), the list is ranked again.
        """
        latest = self.snapshot()
        then = latest
        if latest.version != version:
            try:
                then = latest.checkout_version(version)
            except (ValueError, OSError, RuntimeError) as exc:
                raise StaleCandidatesError(f"table version {version} is gone") from exc
        hits = _take(then, addresses)
        if then is latest:
            return hits
        # A chunk deleted since then must not come back from the old version.
        ids = [hit["chunk_id"] for hit in hits.values()]
        alive = set(latest.to_table(columns=["id"], filter=col("id").isin(ids).to_sql()).column("id").to_pylist())
        return {address: hit for address, hit in hits.items() if hit["chunk_id"] in alive}

    def _candidates(self, request: SearchRequest, snapshot: lance.LanceDataset) -> list[dict[str, Any]]:
        if request.mode is SearchMode.SEMANTIC:
            ranked = self._semantic(request, snapshot)
        elif request.mode is SearchMode.FULLTEXT:
            ranked = self._fulltext(request, snapshot)
        else:
            fulltext = _HYBRID_POOL.submit(self._fulltext, request, snapshot, min(self.depth, HYBRID_FULLTEXT_DEPTH))
            semantic = self._semantic(request, snapshot)
            ranked = reciprocal_rank_fusion([semantic, fulltext.result()], self.depth, weights=HYBRID_WEIGHTS,
                                            key="row_id")
        if request.sort is not SortOrder.RELEVANCE:
            ranked.sort(key=lambda hit: (hit["created_at"], hit["row_id"]), reverse=request.sort is SortOrder.NEWEST)
        return ranked

    def _candidate_columns(self, request: SearchRequest) -> list[str]:
        # Row addresses and scores only: reading even the chunk id column for 100 candidates
        # cost 2-3 ms per list at 1M rows.
        return ["created_at"] if request.sort is not SortOrder.RELEVANCE else []

    def semantic_scan(self, request: SearchRequest) -> dict[str, Any]:
        """The Lance scan (``LanceDataset.to_table`` arguments) of a semantic candidate list."""
        check_corpus_model(self._db, self.embedder.model_name)
        nearest = {"column": "vector", "q": _query_vector(self.embedder, request.query), "k": self.depth,
                   "metric": "cosine",
                   # A floor and a ceiling rather than one probe count: with a narrow prefilter
                   # (one capsule) Lance may probe further to fill the candidate list.
                   "minimum_nprobes": self.nprobes, "maximum_nprobes": self.nprobes * PROBE_CEILING_FACTOR}
        if self.refine_factor:
            nearest["refine_factor"] = self.refine_factor
        return {"columns": [*self._candidate_columns(request), "_distance"], "filter": request.filter().to_sql(),
                "prefilter": True, "with_row_id": True, "nearest": nearest}

    def fulltext_scan(self, request: SearchRequest, depth: int | None = None) -> dict[str, Any]:
        """The Lance scan of a full-text candidate list: BM25 over the `text` index, prefiltered."""
        return {"columns": [*self._candidate_columns(request), "_score"], "filter": request.filter().to_sql(),
                "prefilter": True, "with_row_id": True, "full_text_query": MatchQuery(request.query, "text"),
                "limit": depth or self.depth}

    def _semantic(self, request: SearchRequest, snapshot: lance.LanceDataset) -> list[dict[str, Any]]:
        found = snapshot.to_table(**self.semantic_scan(request))
        return _ranked(found, [1.0 - distance for distance in found.column("_distance").to_pylist()])

    def _fulltext(self, request: SearchRequest, snapshot: lance.LanceDataset,
                  depth: int | None = None) -> list[dict[str, Any]]:
        found = snapshot.to_table(**self.fulltext_scan(request, depth))
        return _ranked(found, found.column("_score").to_pylist())


def _take(snapshot: lance.LanceDataset, addresses: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The result rows at these row addresses of snapshot, by address (as text, the cache's key).

    Two columns, the card and the text, where the table has cards (a take costs by column and
    row); a table written before them (until a writer opens it) is read column by column.
    """
    # In address order: ~10 % faster than as ranked. `_take_rows` is pylance's take by row id
    # (what LanceDB's `take_row_ids` calls), marked unstable upstream: pylance is pinned in
    # constraints.txt and tests/search reads every page through it, so an upgrade that changes
    # it fails there, not in production.
    ordered = sorted(addresses)
    rows = None
    if "card" in snapshot.schema.names:
        carded = snapshot._take_rows(ordered, columns=["card", "text"]).to_pylist()
        # A row written around `chunk_table` has no card: its page is read column by column.
        if all(row["card"] is not None for row in carded):
            rows = [json.loads(row["card"]) | {"text": row["text"]} for row in carded]
    if rows is None:
        rows = snapshot._take_rows(ordered, columns=_RESULT_COLUMNS).to_pylist()
    if len(rows) != len(ordered):
        raise StaleCandidatesError(f"{len(ordered) - len(rows)} ranked rows are missing from version {snapshot.version}")
    return {str(address): _hit(row) for address, row in zip(ordered, rows, strict=True)}


def _sort_key(sort: SortOrder) -> Any:
    """What two candidates tie on under this sort."""
    if sort is SortOrder.RELEVANCE:
        return lambda candidate: candidate["score"]
    return lambda candidate: candidate["created_at"]


def _group_ranks(span: Sequence[dict[str, Any]], tied: Any) -> dict[Any, int]:
    """Each distinct tie value in the span → its position among the span's groups (list order)."""
    ranks: dict[Any, int] = {}
    for candidate in span:
        ranks.setdefault(tied(candidate), len(ranks))
    return ranks


def _reverse_within_groups(span: list[dict[str, Any]], tied: Any) -> list[dict[str, Any]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for candidate in span:
        groups.setdefault(tied(candidate), []).append(candidate)
    return [candidate for group in groups.values() for candidate in reversed(group)]


def _ranked(found: Any, scores: Sequence[float]) -> list[dict[str, Any]]:
    """Candidates as the cache keeps them: row address, score and (for date sorts) created_at,
    ordered by score, then address (deterministic within one table version). Read column by
    column from the scan's Arrow table: a dict per row cost more than the ranking itself."""
    row_ids = found.column("_rowid").to_pylist()
    hits = [{"row_id": row_id, "score": round(float(score), 6)} for row_id, score in zip(row_ids, scores, strict=True)]
    if "created_at" in found.column_names:
        for hit, created_at in zip(hits, found.column("created_at").to_pylist(), strict=True):
            hit["created_at"] = created_at.isoformat()
    hits.sort(key=lambda hit: (-hit["score"], hit["row_id"]))
    return hits


def _hit(row: dict[str, Any], score: float = 0.0) -> dict[str, Any]:
    return {
        "chunk_id": row["id"], "score": score, "text": row["text"], "content_id": row["content_id"],
        "capsule_id": row["capsule_id"], "organization_id": row["organization_id"],
        "content_type": row["content_type"], "title": row["title"], "page": row["page"], "heading": row["heading"],
        "chunk_index": row["chunk_index"],
        "created_at": created.isoformat() if isinstance(created := row["created_at"], datetime) else created,
    }


def reciprocal_rank_fusion(rankings: Sequence[Sequence[dict[str, Any]]], depth: int,
                           weights: Sequence[float] | None = None, *, key: str = "chunk_id") -> list[dict[str, Any]]:
    """Fuse ranked lists by the sum of weight / (RRF_K + rank) (weight 1 for each list by default).

    Written here rather than with LanceDB's RRFReranker because that reranker fuses one
    hybrid query's result table in pandas, and we need the fused list keyed by `key` with a
    deterministic tie-break (score, then key) for stable pagination; the formula is the same.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings but {len(weights)} weights")
    fused: dict[Any, dict[str, Any]] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking, start=1):
            entry = fused.setdefault(hit[key], {**hit, "score": 0.0})
            entry["score"] += weight / (RRF_K + rank)
    ordered = sorted(fused.values(), key=lambda hit: (-hit["score"], hit[key]))[:depth]
    for hit in ordered:
        hit["score"] = round(hit["score"], 6)
    return ordered
