"""Search latency, recall and API overhead on a synthetic chunk table of N rows.

`run_search_bench(100_000)` builds (or reuses) a synthetic `chunks` table with the real
SCHEMA (see bench.synthetic), indexes it with `build_indexes`, and then measures, every
query under a mandatory organization filter:

- semantic / fulltext / hybrid through `SearchService.search` with the result cache off and
  the real embedder (each query text is new, so every semantic query pays for its
  embedding), against the same query issued directly through LanceDB in the same run,
  interleaved with the API call so load drift hits both sides equally;
- vector-only: the API with a precomputed vector (an embedder that looks the vector up),
  against the raw `table.search(vector)`; the ≤ 10 ms target applies here;
- recall@10 of the vector index against an exact (flat, `bypass_vector_index`) search under
  the same filter, for in-distribution vectors and for the model-embedded query texts;
- cached hits (MemoryCache), and latency with `fresh_rows` appended after indexing (not
  reindexed); the table is restored to its indexed version afterwards.

The dataset is cached under `data_dir/search-n<N>-s<seed>-v<version>/`, and so are the
indexes (keyed by their parameters); a re-run only measures.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import (
    ProgressCallback,
    default_data_dir,
    finish_machine_info,
    machine_info,
    peak_rss_mib,
    percentiles,
    ratio,
    say,
    set_quiet_environment,
    timed_ms,
)
from bench.synthetic import DocumentPlan, SyntheticCorpus, SyntheticSpec

TARGET_VECTOR_P95_MS = 10.0
TARGET_RECALL_AT_10 = 0.95
TARGET_API_OVERHEAD = 1.2
# A query vector is its source row's vector plus gaussian noise of this norm: cosine to the
# source row ~ 1/sqrt(1 + 1.0^2) ~ 0.71, about what a real query scores against its best chunk
# with MiniLM (0.5-0.8), so neighbourhoods are not trivially tight.
QUERY_VECTOR_NOISE = 1.0
_FRESH_QUERIES = 100
_CACHED_QUERIES = 50
_CAPSULE_QUERIES = 100
_NEW_SERVICE_QUERIES = 60


@dataclass(frozen=True)
class BenchQuery:
    organization_id: str
    text: str
    vector: np.ndarray  # an in-distribution vector near the row the query was drawn from
    source_id: str

    @property
    def sql_filter(self) -> str:
        # The raw-LanceDB baseline uses the plain SQL filter a LanceDB user would write; the
        # ids are UUIDs this benchmark generated, so there is nothing to escape.
        return f"organization_id = '{self.organization_id}'"


class LookupEmbedder:
    """An Embedder that returns precomputed vectors: the API path without the model."""

    model_name = "lookup"
    dimension = 384

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts])


def _service_class() -> type:
    from encaptio_data.search.service import SearchService

    class TunedSearchService(SearchService):
        """SearchService plus HNSW `ef`, which SearchService does not expose (bench-only hook)."""

        def __init__(self, *args: Any, ef: int | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ef = ef

        def semantic_scan(self, request: Any) -> dict[str, Any]:
            scan = super().semantic_scan(request)
            if self.ef:
                scan["nearest"]["ef"] = self.ef
            return scan

    return TunedSearchService


# -- dataset and indexes -------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)


def _open_dataset(spec: SyntheticSpec, root: Path, embedder: Any, *, rebuild: bool,
                  progress: ProgressCallback) -> tuple[Any, Any, SyntheticCorpus, dict[str, Any], bool]:
    from encaptio_data.search.index import open_chunks_table
    from encaptio_data.stores.vectors import LocalVectorStore

    directory = root / f"search-{spec.key()}"
    meta_path = directory / "dataset.json"
    meta = _read_json(meta_path)
    centroids_path = directory / "centroids.npy"
    if rebuild or meta is None or meta.get("spec") != spec.as_dict() or not meta.get("complete"):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        started = time.perf_counter()
        corpus = SyntheticCorpus(spec, embedder)
        np.save(centroids_path, corpus.centroids)
        store = LocalVectorStore(directory / "lancedb")
        table = open_chunks_table(store)
        plan = corpus.plan(spec.chunks, np.random.default_rng([spec.seed, 1]))
        generate = write = 0.0
        batches = corpus.batches(plan, tag=2)
        while True:
            seconds, batch = timed_ms(lambda: next(batches, None))
            if batch is None:
                break
            generate += seconds / 1000
            seconds, _ = timed_ms(lambda: table.add(batch))
            write += seconds / 1000
            say(progress, f"dataset: {table.count_rows():,}/{spec.chunks:,} rows")
        meta = {"spec": spec.as_dict(), "rows": table.count_rows(), "documents": len(plan.ids),
                "base_version": table.version, "generate_seconds": round(generate, 1),
                "write_seconds": round(write, 1), "build_seconds": round(time.perf_counter() - started, 1),
                "complete": True}
        _write_json(meta_path, meta)
        return store, table, corpus, meta, True
    corpus = _reopen_corpus(spec, embedder, np.load(centroids_path))
    store = LocalVectorStore(directory / "lancedb")
    table = open_chunks_table(store, create=False)
    return store, table, corpus, meta, False


def _reopen_corpus(spec: SyntheticSpec, embedder: Any, centroids: np.ndarray) -> SyntheticCorpus:
    """The generator with the centroids it was built with (the model is not re-run)."""

    class Fixed:
        def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
            return centroids

    return SyntheticCorpus(spec, Fixed())  # type: ignore[arg-type]


def _vector_config(config: dict[str, Any]) -> Any:
    from lancedb import index

    kinds = {"IVF_HNSW_SQ": index.IvfHnswSq, "IVF_HNSW_PQ": index.IvfHnswPq, "IVF_PQ": index.IvfPq,
             "IVF_SQ": index.IvfSq, "IVF_FLAT": index.IvfFlat, "IVF_RQ": index.IvfRq}
    params = {k: v for k, v in config.items() if k != "type"}
    return kinds[config["type"]](distance_type="cosine", **params)


def _ensure_indexes(table: Any, directory: Path, meta: dict[str, Any], *, num_partitions: int | None,
                    index_config: dict[str, Any] | None, rebuild: bool, progress: ProgressCallback) -> dict[str, Any]:
    """Index once per parameter set. The first build goes through `build_indexes` (scalar, FTS
    and vector indexes, exactly as production does); a later change of vector parameters only
    replaces the vector index."""
    from encaptio_data.search.index import VECTOR_INDEX_MIN_ROWS, _index_kind, _scalar_configs, build_indexes

    state_path = directory / "index.json"
    # The scalar index kinds are part of the key: build_indexes rebuilds a scalar index whose
    # kind changed (seconds), so a cached dataset follows a change of _scalar_configs.
    scalar = {column: _index_kind(config) for column, config in _scalar_configs()}
    state = _read_json(state_path) or {}
    rows = meta["rows"]
    if table.count_rows() != rows:  # an interrupted fresh-rows phase: back to the indexed data
        table.restore(state.get("version") or meta["base_version"])
    # What build_indexes trains (search/index.py): IVF_SQ with √rows partitions.
    default_partitions = max(1, int(rows ** 0.5))
    vector = index_config or {"type": "IVF_SQ", "num_partitions": num_partitions or default_partitions}
    if rows < VECTOR_INDEX_MIN_ROWS:
        vector = {"type": None, "reason": f"below VECTOR_INDEX_MIN_ROWS={VECTOR_INDEX_MIN_ROWS}: flat search"}
    if not rebuild and state.get("vector") == vector and state.get("fulltext") and state.get("scalar") == scalar:
        return state | {"built_now": False}
    started = time.perf_counter()
    if not rebuild and state.get("vector") == vector and state.get("fulltext"):
        say(progress, f"indexes: scalar index kinds {state.get('scalar', 'unrecorded')} -> {scalar}")
        report = build_indexes(table, vector_index_min_rows=10 ** 12)  # scalar only: the vector index is kept
        state |= {"scalar": scalar, "scalar_rebuild_report": report.as_dict(), "version": table.version}
        _write_json(state_path, state)  # "seconds" and "built_with" still describe the full build
        return state | {"built_now": True}
    if rebuild or not state.get("fulltext"):
        say(progress, f"indexes: build_indexes on {rows:,} rows (scalar, FTS, vector {vector})")
        if index_config is None:
            report = build_indexes(table, num_partitions=num_partitions)
        else:
            report = build_indexes(table, vector_index_min_rows=10 ** 12)
            if vector["type"]:
                table.create_index("vector", config=_vector_config(index_config), replace=True, name="vector_idx")
        built_with = "build_indexes" + ("" if index_config is None else " + create_index(vector)")
        state = {"fulltext": True, "build_indexes_report": report.as_dict()}
    else:
        say(progress, f"indexes: replacing the vector index with {vector}")
        config = index_config or {"type": "IVF_SQ", "num_partitions": vector["num_partitions"]}
        table.create_index("vector", config=_vector_config(config), replace=True, name="vector_idx")
        built_with = "create_index(vector only; scalar and FTS indexes reused)"
    state |= {"vector": vector, "scalar": scalar, "version": table.version,
              "seconds": round(time.perf_counter() - started, 1), "built_with": built_with}
    _write_json(state_path, state)
    return state | {"built_now": True}


# -- queries -------------------------------------------------------------------------------------


def _sample_queries(table: Any, corpus: SyntheticCorpus, rows: int, count: int, rng: np.random.Generator,
                    seen: set[str]) -> list[BenchQuery]:
    """Queries drawn from random rows: 2-4 of the row's content words as text (distinct texts),
    the row's organization as filter, and the row's vector plus noise as the query vector."""
    offsets = np.sort(rng.choice(rows, size=min(rows, count * 2 + 8), replace=False)).tolist()
    data = table.take_offsets(offsets).select(["id", "organization_id", "text", "vector"]).to_arrow()
    order = rng.permutation(data.num_rows)
    vectors = np.stack(data.column("vector").to_numpy(zero_copy_only=False))
    out: list[BenchQuery] = []
    for index in order.tolist():
        words = corpus.query_words(data.column("text")[index].as_py())
        if len(words) < 2:
            continue
        picked = [words[i] for i in rng.choice(len(words), size=min(len(words), int(rng.integers(2, 5))),
                                                replace=False)]
        text = " ".join(picked)
        while text in seen and len(picked) < len(words):
            picked.append(next(w for w in words if w not in picked))
            text = " ".join(picked)
        if text in seen:
            continue
        seen.add(text)
        vector = vectors[index] + rng.standard_normal(vectors.shape[1]).astype(np.float32) * np.float32(
            QUERY_VECTOR_NOISE / np.sqrt(vectors.shape[1]))
        out.append(BenchQuery(data.column("organization_id")[index].as_py(), text,
                              (vector / np.linalg.norm(vector)).astype(np.float32), data.column("id")[index].as_py()))
        if len(out) == count:
            break
    if len(out) < count:
        raise RuntimeError(f"could only draw {len(out)} distinct queries of {count}")
    return out


class _Raw:
    """The LanceDB calls the API makes, issued directly (same table handle, filter, depth,
    probes / refine_factor / ef): a ranked list of `depth` row addresses and scores, then the
    page's rows taken by address. `single_call` is the naive one-call form (every column for all `depth` rows), kept
    as a second reference."""

    def __init__(self, table: Any, embedder: Any, *, depth: int, nprobes: int, refine_factor: int | None,
                 ef: int | None, page_size: int = 10) -> None:
        from encaptio_data.search.service import _RESULT_COLUMNS, PROBE_CEILING_FACTOR

        self.ceiling = nprobes * PROBE_CEILING_FACTOR
        self.table, self.embedder, self.depth, self.page_size = table, embedder, depth, page_size
        self.nprobes, self.refine_factor, self.ef = nprobes, refine_factor, ef
        self.columns = list(_RESULT_COLUMNS)
        self.embed_ms: list[float] = []

    def vector_query(self, vector: np.ndarray, where: str, columns: Sequence[str] = ()) -> Any:
        query = (self.table.search(vector, vector_column_name="vector").distance_type("cosine")
                 .where(where, prefilter=True).select([*columns, "_distance"]).with_row_id(True).limit(self.depth)
                 .minimum_nprobes(self.nprobes).maximum_nprobes(self.ceiling))
        if self.refine_factor:
            query = query.refine_factor(self.refine_factor)
        return query.ef(self.ef) if self.ef else query

    def fulltext_query(self, text: str, where: str, columns: Sequence[str] = (), depth: int | None = None) -> Any:
        from lancedb.query import MatchQuery

        return (self.table.search(MatchQuery(text, "text"), query_type="fts").where(where, prefilter=True)
                .select([*columns, "_score"]).with_row_id(True).limit(depth or self.depth))

    def page(self, ranked: Any, where: str) -> Any:
        return self.table.take_row_ids(ranked.column("_rowid").to_pylist()[:self.page_size]).select(self.columns).to_arrow()

    def embed(self, text: str) -> np.ndarray:
        started = time.perf_counter()
        vector = self.embedder.encode([text])[0]
        self.embed_ms.append((time.perf_counter() - started) * 1000)
        return vector

    def semantic(self, q: BenchQuery) -> Any:
        return self.page(self.vector_query(self.embed(q.text), q.sql_filter).to_arrow(), q.sql_filter)

    def semantic_single_call(self, q: BenchQuery) -> Any:
        return self.vector_query(self.embed(q.text), q.sql_filter, self.columns).to_arrow()

    def vector_only(self, q: BenchQuery) -> Any:
        return self.page(self.vector_query(q.vector, q.sql_filter).to_arrow(), q.sql_filter)

    def vector_only_single_call(self, q: BenchQuery) -> Any:
        return self.vector_query(q.vector, q.sql_filter, self.columns).to_arrow()

    def fulltext(self, q: BenchQuery, text: str | None = None) -> Any:
        return self.page(self.fulltext_query(text or q.text, q.sql_filter).to_arrow(), q.sql_filter)

    def fulltext_single_call(self, q: BenchQuery) -> Any:
        return self.fulltext_query(q.text, q.sql_filter, self.columns).to_arrow()

    def hybrid_native(self, q: BenchQuery) -> Any:
        """LanceDB's own hybrid query with its RRFReranker (k=60), embedding included."""
        from lancedb.query import MatchQuery
        from lancedb.rerankers import RRFReranker

        query = (self.table.search(query_type="hybrid", vector_column_name="vector", fts_columns="text")
                 .vector(self.embed(q.text)).text(MatchQuery(q.text, "text")).distance_type("cosine")
                 .where(q.sql_filter, prefilter=True).select(self.columns).limit(self.depth)
                 .minimum_nprobes(self.nprobes).maximum_nprobes(self.ceiling)
                 .rerank(RRFReranker()))
        if self.refine_factor:
            query = query.refine_factor(self.refine_factor)
        return query.to_arrow()

    def hybrid_components(self, q: BenchQuery) -> Any:
        """The LanceDB calls the API's hybrid makes (one embedding), one after the other and unfused."""
        vector = self.embed(q.text)
        from encaptio_data.search.service import HYBRID_FULLTEXT_DEPTH

        ranked = self.vector_query(vector, q.sql_filter).to_arrow()
        self.fulltext_query(q.text, q.sql_filter, depth=min(self.depth, HYBRID_FULLTEXT_DEPTH)).to_arrow()
        return self.page(ranked, q.sql_filter)

    def exact_ids(self, vector: np.ndarray, where: str, k: int = 10) -> list[str]:
        rows = (self.table.search(vector, vector_column_name="vector").distance_type("cosine")
                .where(where, prefilter=True).bypass_vector_index().select(["id"]).limit(k).to_arrow())
        return rows.column("id").to_pylist()


class _LanceRaw(_Raw):
    """The Lance scans the API issues (`SearchService.semantic_scan` / `fulltext_scan` and the
    take by address), issued directly on the table's dataset: what is left between this and
    the API is the API's own work, on the same dataset and caches (``search.datasets``).
    `_Raw` (LanceDB's query builder) stays as the second reference, the call a LanceDB user
    would write."""

    location: str = ""

    @property
    def dataset(self) -> Any:
        from encaptio_data.search.datasets import SHARED

        return SHARED.latest(self.location, self.table.to_lance)

    def _vector_list(self, vector: np.ndarray, where: str) -> Any:
        nearest = {"column": "vector", "q": vector, "k": self.depth, "metric": "cosine",
                   "minimum_nprobes": self.nprobes, "maximum_nprobes": self.ceiling}
        if self.refine_factor:
            nearest["refine_factor"] = self.refine_factor
        if self.ef:
            nearest["ef"] = self.ef
        return self.dataset.to_table(columns=["_distance"], with_row_id=True, prefilter=True, filter=where,
                                     nearest=nearest)

    def _fulltext_list(self, text: str, where: str, depth: int | None = None) -> Any:
        from lance.query import MatchQuery

        return self.dataset.to_table(columns=["_score"], with_row_id=True, prefilter=True, filter=where,
                                     full_text_query=MatchQuery(text, "text"), limit=depth or self.depth)

    def page(self, ranked: Any, where: str) -> Any:
        return self.dataset._take_rows(ranked.column("_rowid").to_pylist()[:self.page_size], columns=self.columns)

    def semantic(self, q: BenchQuery) -> Any:
        return self.page(self._vector_list(self.embed(q.text), q.sql_filter), q.sql_filter)

    def vector_only(self, q: BenchQuery) -> Any:
        return self.page(self._vector_list(q.vector, q.sql_filter), q.sql_filter)

    def fulltext(self, q: BenchQuery, text: str | None = None) -> Any:
        return self.page(self._fulltext_list(text or q.text, q.sql_filter), q.sql_filter)

    def hybrid_components(self, q: BenchQuery) -> Any:
        """The Lance scans of the API's hybrid (one embedding), one after the other and unfused."""
        from encaptio_data.search.service import HYBRID_FULLTEXT_DEPTH

        ranked = self._vector_list(self.embed(q.text), q.sql_filter)
        self._fulltext_list(q.text, q.sql_filter, depth=min(self.depth, HYBRID_FULLTEXT_DEPTH))
        return self.page(ranked, q.sql_filter)


def _rotate(calls: Sequence[Callable[[], Any]], items: int) -> list[list[float]]:
    """Time each of `calls[i](item)` per item, rotating which call goes first."""
    samples: list[list[float]] = [[] for _ in calls]
    for index in range(items):
        for shift in range(len(calls)):
            which = (index + shift) % len(calls)
            samples[which].append(timed_ms(lambda: calls[which](index))[0])
    return samples


def _api_vs_raw(api: Callable[[int], Any], raws: dict[str, Callable[[int], Any]], warmups: int, items: int,
                warm: Callable[[int], Any]) -> tuple[list[float], dict[str, list[float]]]:
    for index in range(warmups):
        warm(index)
    names = list(raws)
    samples = _rotate([api, *[raws[name] for name in names]], items)
    return samples[0], dict(zip(names, samples[1:]))


def _summary(api_ms: list[float], raw_ms: list[float] | None, **extra: Any) -> dict[str, Any]:
    api = percentiles(api_ms)
    out: dict[str, Any] = dict(api)
    if raw_ms is not None:
        raw = percentiles(raw_ms)
        out |= {f"raw_{k}": v for k, v in raw.items() if k != "n"}
        out["api_overhead_ratio"] = ratio(api["p95_ms"], raw["p95_ms"])
        out["api_overhead_ratio_p50"] = ratio(api["p50_ms"], raw["p50_ms"])
        # API and raw ran back to back on the same query: the median of the per-query ratios
        # is the estimate least disturbed by other processes on a shared machine.
        paired = np.asarray(api_ms) / np.maximum(np.asarray(raw_ms), 1e-6)
        out["api_overhead_ratio_paired_median"] = round(float(np.median(paired)), 3)
        out["api_overhead_ms_paired_median"] = round(float(np.median(np.asarray(api_ms) - np.asarray(raw_ms))), 3)
    return out | extra


def _lance_reference(api_ms: list[float], raw_samples: dict[str, list[float]]) -> dict[str, Any]:
    """The API against the same Lance scans issued directly (`_LanceRaw`): the API's own cost.
    For hybrid the scans run one after the other, where the API overlaps them."""
    lance = percentiles(raw_samples["lance"])
    paired = np.asarray(api_ms) / np.maximum(np.asarray(raw_samples["lance"]), 1e-6)
    return {"lance_is": "the API's Lance scans (prefiltered ANN / BM25, then the page by address) issued directly",
            "lance_p50_ms": lance["p50_ms"], "lance_p95_ms": lance["p95_ms"], "lance_p99_ms": lance["p99_ms"],
            "api_overhead_ratio_vs_lance": ratio(percentiles(api_ms)["p95_ms"], lance["p95_ms"]),
            "api_overhead_ratio_vs_lance_paired_median": round(float(np.median(paired)), 3)}


def _recall(found: Sequence[Sequence[str]], exact: Sequence[Sequence[str]]) -> float | None:
    scores = [len(set(f[:10]) & set(e)) / len(e) for f, e in zip(found, exact) if e]
    return round(float(np.mean(scores)), 4) if scores else None


# -- the benchmark ---------------------------------------------------------------------------------


def run_search_bench(chunks: int, *, queries: int = 200, data_dir: Path | None = None, seed: int = 0,
                     progress: ProgressCallback = None, organizations: int = 20, warmup: int = 20,
                     num_partitions: int | None = None, nprobes: int | None = None, refine_factor: int | None = None,
                     ef: int | None = None, index_config: dict[str, Any] | None = None, fresh_rows: int = 10_000,
                     rebuild: bool = False) -> dict[str, Any]:
    """Measure the query API on a synthetic table of `chunks` rows; returns a JSON-able dict.

    `num_partitions` is passed to `build_indexes` (None: its default sqrt(rows));
    `index_config` ({"type": "IVF_PQ", "num_partitions": 256, ...}) replaces the vector
    index for experiments; `nprobes`/`refine_factor` go to SearchService, `ef` (HNSW search
    breadth; LanceDB's default is 1.5 x limit) through a bench-only subclass.
    """
    set_quiet_environment()
    from encaptio_data.content.embedding import load_query_embedder
    from encaptio_data.authz import system_principal
    from encaptio_data.db.session import Database
    from encaptio_data.search.datasets import PREWARMED_INDEXES, SHARED
    from encaptio_data.search.service import DEFAULT_DEPTH, DEFAULT_NPROBES, SearchMode, SearchRequest, _query_vector
    from encaptio_data.stores.cache import MemoryCache

    started = time.perf_counter()
    nprobes = nprobes or DEFAULT_NPROBES
    machine = machine_info()
    root = Path(data_dir) if data_dir else default_data_dir()
    spec = SyntheticSpec(chunks=chunks, seed=seed, organizations=organizations)
    say(progress, "loading the embedding model")
    embedder = load_query_embedder()  # as the service embeds queries: one text, one thread
    embedder.encode(["warm up the model"])
    store, table, corpus, meta, built = _open_dataset(spec, root, embedder, rebuild=rebuild, progress=progress)
    directory = root / f"search-{spec.key()}"
    index_state = _ensure_indexes(table, directory, meta, num_partitions=num_partitions, index_config=index_config,
                                  rebuild=rebuild or built, progress=progress)
    rows = meta["rows"]

    Service = _service_class()
    params = {"depth": DEFAULT_DEPTH, "nprobes": nprobes, "refine_factor": refine_factor, "ef": ef}
    # system:bench may search every organization, so this audit database (for refusals) stays untouched.
    access = {"principal": system_principal("bench"), "db": Database(f"sqlite:///{directory / 'audit.sqlite3'}")}
    api = Service(store, None, embedder=embedder, **params, **access)
    lookup = LookupEmbedder()
    api_vector = Service(store, None, embedder=lookup, **params, **access)
    raw = _Raw(api.table, embedder, depth=DEFAULT_DEPTH, nprobes=nprobes, refine_factor=refine_factor, ef=ef)
    lance_raw = _LanceRaw(api.table, embedder, depth=DEFAULT_DEPTH, nprobes=nprobes, refine_factor=refine_factor, ef=ef)
    lance_raw.location = api._location
    # The API prewarms its indexes as a service does (ENCAPTIO_SEARCH_PREWARM); LanceDB's handle
    # gets the same, so neither side pays first reads the other does not. Measured after both.
    say(progress, "prewarming the indexes (API and LanceDB)")
    prewarm_started = time.perf_counter()
    api.snapshot()
    existing = {index.name for index in api.table.list_indices()}
    for name in PREWARMED_INDEXES:
        if name in existing:
            api.table.prewarm_index(name)
    SHARED.wait_for_prewarm()
    prewarm_seconds = round(time.perf_counter() - prewarm_started, 2)

    rng = np.random.default_rng([seed, 100])
    seen: set[str] = set()
    per_phase = warmup + queries

    def draw(count: int) -> list[BenchQuery]:
        return _sample_queries(api.table, corpus, rows, count, rng, seen)

    results: dict[str, Any] = {}
    mode_queries: dict[str, list[BenchQuery]] = {}

    def request(q: BenchQuery, mode: SearchMode, text: str | None = None) -> Any:
        return SearchRequest(q.organization_id, text or q.text, mode=mode, limit=10)

    # semantic / fulltext / hybrid: the API (no result cache, real embedder) against raw LanceDB
    for mode in (SearchMode.SEMANTIC, SearchMode.FULLTEXT, SearchMode.HYBRID):
        say(progress, f"{mode.value}: {warmup} warm-up + {queries} queries, API and raw LanceDB interleaved")
        qs = mode_queries[mode.value] = draw(per_phase)
        warm, measured = qs[:warmup], qs[warmup:]
        _query_vector.cache_clear()
        raw.embed_ms.clear()

        def api_call(i: int, mode: SearchMode = mode, measured: list[BenchQuery] = measured) -> Any:
            return api.search(request(measured[i], mode))

        def warm_call(i: int, mode: SearchMode = mode, warm: list[BenchQuery] = warm) -> Any:
            api.search(request(warm[i], mode))
            baseline = {"semantic": raw.semantic, "fulltext": raw.fulltext, "hybrid": raw.hybrid_native}[mode.value]
            return baseline(warm[i])

        if mode is SearchMode.SEMANTIC:
            raws = {"raw": lambda i: raw.semantic(measured[i]), "lance": lambda i: lance_raw.semantic(measured[i]),
                    "single_call": lambda i: raw.semantic_single_call(measured[i])}
        elif mode is SearchMode.FULLTEXT:
            raws = {"raw": lambda i: raw.fulltext(measured[i]), "lance": lambda i: lance_raw.fulltext(measured[i]),
                    "single_call": lambda i: raw.fulltext_single_call(measured[i])}
        else:
            raws = {"raw": lambda i: raw.hybrid_native(measured[i]),
                    "components": lambda i: raw.hybrid_components(measured[i]),
                    "lance": lambda i: lance_raw.hybrid_components(measured[i])}
        api_ms, raw_samples = _api_vs_raw(api_call, raws, warmup, len(measured), warm_call)
        extra: dict[str, Any] = {}
        if mode is not SearchMode.FULLTEXT:
            embed = percentiles(raw.embed_ms[-2 * len(measured):])  # two raw calls embed per query
            extra["query_embedding_p50_ms"], extra["query_embedding_p95_ms"] = embed["p50_ms"], embed["p95_ms"]
        if mode is SearchMode.HYBRID:
            components = percentiles(raw_samples["components"])
            extra |= {"raw_is": "LanceDB native hybrid query + RRFReranker(K=60), embedding included",
                      "raw_components_p50_ms": components["p50_ms"], "raw_components_p95_ms": components["p95_ms"],
                      "api_overhead_ratio_vs_components": ratio(percentiles(api_ms)["p95_ms"], components["p95_ms"])}
        elif mode is SearchMode.SEMANTIC:
            extra["raw_is"] = "model encode() + table.search(vector) for depth ids, then the page by id; same filter/probes"
        else:
            extra["raw_is"] = "table.search(MatchQuery, query_type='fts') for depth ids, then the page by id; same filter"
        if "single_call" in raw_samples:
            single = percentiles(raw_samples["single_call"])
            extra |= {"raw_single_call_is": "one LanceDB query returning every result column for all depth rows",
                      "raw_single_call_p50_ms": single["p50_ms"], "raw_single_call_p95_ms": single["p95_ms"]}
        results[mode.value] = _summary(api_ms, raw_samples["raw"], **extra, **_lance_reference(api_ms, raw_samples))

    # vector-only: the API with a precomputed vector against raw table.search(vector)
    say(progress, f"vector-only: {warmup} warm-up + {queries} queries")
    vq = draw(per_phase)
    for q in vq:
        lookup.vectors[q.text] = q.vector
    warm, measured = vq[:warmup], vq[warmup:]
    api_ms, raw_samples = _api_vs_raw(
        lambda i: api_vector.search(request(measured[i], SearchMode.SEMANTIC)),
        {"raw": lambda i: raw.vector_only(measured[i]), "lance": lambda i: lance_raw.vector_only(measured[i]),
         "single_call": lambda i: raw.vector_only_single_call(measured[i])},
        warmup, len(measured),
        lambda i: (api_vector.search(request(warm[i], SearchMode.SEMANTIC)), raw.vector_only(warm[i])))
    single = percentiles(raw_samples["single_call"])
    results["vector_only"] = _summary(api_ms, raw_samples["raw"], target_p95_ms=TARGET_VECTOR_P95_MS,
                                      raw_is="table.search(vector) for depth ids, then the page by id",
                                      raw_single_call_p50_ms=single["p50_ms"], raw_single_call_p95_ms=single["p95_ms"],
                                      **_lance_reference(api_ms, raw_samples))

    # recall@10 against exact search under the same filter
    say(progress, "recall@10: index vs exact (bypass_vector_index) search")
    found = [[h.chunk_id for h in api_vector.search(request(q, SearchMode.SEMANTIC)).hits] for q in measured]
    exact_ms: list[float] = []
    exact: list[list[str]] = []
    for q in measured:
        ms, ids = timed_ms(lambda q=q: raw.exact_ids(q.vector, q.sql_filter))
        exact_ms.append(ms)
        exact.append(ids)
    results["recall_at_10"] = _recall(found, exact)
    results["exact_search"] = percentiles(exact_ms) | {
        "note": "flat scan under the same organization prefilter (bypass_vector_index), limit 10"}
    text_queries = mode_queries["semantic"][warmup:]
    found_text = [[h.chunk_id for h in api.search(request(q, SearchMode.SEMANTIC)).hits] for q in text_queries]
    exact_text = [raw.exact_ids(embedder.encode([q.text])[0], q.sql_filter) for q in text_queries]
    results["recall_at_10_text_queries"] = _recall(found_text, exact_text)
    results["source_row_in_top10"] = round(float(np.mean([q.source_id in f for q, f in zip(measured, found)])), 4)

    # narrow filters: one capsule (about 1/30 of an organization). nprobes() pins LanceDB's
    # minimum *and* maximum probes, so a prefiltered IVF search never looks past those
    # partitions: a page can come back short although the capsule has enough rows.
    say(progress, "capsule-scoped vector queries (narrow prefilter)")
    results["capsule_filter"] = _capsule_phase(api_vector, raw, measured[:_CAPSULE_QUERIES], lookup)

    # query embedding alone, with torch's default thread count and with one thread
    say(progress, "query embedding: default torch threads vs 1 thread")
    results["query_embedding"] = _embedding_threads(embedder, [q.text for q in mode_queries["fulltext"]])

    # A product service keeps a SearchService per signed-in principal: the first query of a
    # new one against the long-lived service, interleaved (hybrid, fresh queries each).
    new_services = min(_NEW_SERVICE_QUERIES, queries)
    say(progress, f"new services: first query of {new_services} new SearchServices")
    fresh_queries = draw(new_services * 2)
    first_ms, long_lived_ms = [], []
    for i in range(new_services):
        new_service = Service(store, None, embedder=embedder, **params, **access)
        first_ms.append(timed_ms(lambda: new_service.search(request(fresh_queries[2 * i], SearchMode.HYBRID)))[0])
        long_lived_ms.append(timed_ms(lambda: api.search(request(fresh_queries[2 * i + 1], SearchMode.HYBRID)))[0])
    first, steady = percentiles(first_ms), percentiles(long_lived_ms)
    results["new_service_first_query"] = first | {
        "long_lived_p50_ms": steady["p50_ms"], "long_lived_p95_ms": steady["p95_ms"],
        "ratio_p95": ratio(first["p95_ms"], steady["p95_ms"]),
        "note": "hybrid; every SearchService of the process shares one Lance dataset and its index cache"}

    # cached hits
    say(progress, "cached hits (MemoryCache)")
    cached_service = Service(store, MemoryCache(namespace="bench"), embedder=embedder, **params, **access)
    cached_ms: dict[str, list[float]] = {}
    for mode in (SearchMode.SEMANTIC, SearchMode.FULLTEXT, SearchMode.HYBRID):
        samples = cached_ms[mode.value] = []
        for q in mode_queries[mode.value][warmup:warmup + _CACHED_QUERIES]:
            cached_service.search(request(q, mode))
            ms, page = timed_ms(lambda q=q, mode=mode: cached_service.search(request(q, mode)))
            assert page.cached
            samples.append(ms)
    results["cached"] = percentiles([x for v in cached_ms.values() for x in v]) | {
        "by_mode_p95_ms": {m: percentiles(v)["p95_ms"] for m, v in cached_ms.items()},
        "backend": "MemoryCache (in-process); Redis adds a network round trip"}

    # fresh rows appended after indexing, not reindexed
    if fresh_rows:
        results["fresh_rows"] = _fresh_rows_phase(
            api, api_vector, raw, corpus, lookup, draw, request, rows, fresh_rows, seed, min(queries, _FRESH_QUERIES),
            progress)

    index_info = _index_info(api.table, index_state, params, rows)
    results_by_mode = {m: results[m] for m in ("semantic", "fulltext", "hybrid")}
    targets = {
        "vector_only_p95_ms<=10": results["vector_only"]["p95_ms"] <= TARGET_VECTOR_P95_MS,
        "raw_vector_p95_ms<=10": results["vector_only"]["raw_p95_ms"] <= TARGET_VECTOR_P95_MS,
        "recall_at_10>=0.95": (results["recall_at_10"] or 0) >= TARGET_RECALL_AT_10,
        "api_overhead_ratio<=1.2": {m: (v["api_overhead_ratio"] or 99) <= TARGET_API_OVERHEAD
                                    for m, v in (results_by_mode | {"vector_only": results["vector_only"]}).items()},
        "api_overhead_ratio_vs_lance<=1.2": {
            m: (v["api_overhead_ratio_vs_lance"] or 99) <= TARGET_API_OVERHEAD
            for m, v in (results_by_mode | {"vector_only": results["vector_only"]}).items()},
    }
    return {
        "benchmark": "search",
        "chunks": rows,
        "queries": queries,
        "warmup": warmup,
        "organizations": organizations,
        "machine": finish_machine_info(machine),
        **results,
        "index": index_info,
        "targets": targets,
        "dataset": {"spec": meta["spec"], "built_now": built, "documents": meta.get("documents"),
                    "generate_seconds": meta.get("generate_seconds"), "write_seconds": meta.get("write_seconds"),
                    "path": str(directory)},
        "prewarm_seconds": prewarm_seconds,
        "build_seconds": {"dataset": meta.get("build_seconds"), "dataset_built_now": built,
                          "indexes": index_state.get("seconds"), "indexes_built_now": index_state.get("built_now")},
        "peak_rss_mib": peak_rss_mib(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def _index_info(table: Any, state: dict[str, Any], params: dict[str, Any], rows: int) -> dict[str, Any]:
    ef = params["ef"] or f"LanceDB default 1.5 x limit = {int(1.5 * params['depth'])}"
    info: dict[str, Any] = {"vector": state.get("vector"), "built_with": state.get("built_with"),
                            "build_seconds": state.get("seconds"), "query": params | {"ef_effective": ef}}
    info["indices"] = sorted(f"{i.name}:{i.index_type}" for i in table.list_indices())
    stats = table.index_stats("vector_idx") if any(i.name == "vector_idx" for i in table.list_indices()) else None
    if stats:
        info["vector_stats"] = {"num_indexed_rows": stats.num_indexed_rows,
                                "num_unindexed_rows": stats.num_unindexed_rows, "index_type": stats.index_type, "distance_type": stats.distance_type,
                                "num_indices": stats.num_indices}
    if rows and state.get("vector", {}).get("num_partitions"):
        info["rows_per_partition"] = round(rows / state["vector"]["num_partitions"])
    return info


def _fresh_rows_phase(api: Any, api_vector: Any, raw: _Raw, corpus: SyntheticCorpus, lookup: LookupEmbedder,
                      draw: Callable[[int], list[BenchQuery]], request: Callable[..., Any], rows: int, fresh_rows: int,
                      seed: int, count: int, progress: ProgressCallback) -> dict[str, Any]:
    from encaptio_data.search.service import SearchMode, _query_vector

    table = api.table
    indexed_version = table.version
    say(progress, f"fresh rows: appending {fresh_rows:,} rows without reindexing")
    plan: DocumentPlan = corpus.plan(fresh_rows, np.random.default_rng([seed, 7]))
    for batch in corpus.batches(plan, tag=8):
        table.add(batch)
    try:
        text_stats = table.index_stats("text_idx")
        vector_present = any(i.name == "vector_idx" for i in table.list_indices())
        vector_stats = table.index_stats("vector_idx") if vector_present else None
        # Queries near the fresh rows: the unindexed rows must be found (flat-searched) too.
        fresh_queries = _sample_fresh(table, corpus, rows, count, seed)
        fresh_vector_queries = [replace(q, text=f"fresh-vector-{i}") for i, q in enumerate(fresh_queries)]
        for q in fresh_vector_queries:
            lookup.vectors[q.text] = q.vector
        _query_vector.cache_clear()
        pool = draw(3 * count)
        unindexed = {"text_idx": text_stats.num_unindexed_rows if text_stats else None,
                     "vector_idx": vector_stats.num_unindexed_rows if vector_stats else None}
        out: dict[str, Any] = {"rows_added": fresh_rows, "unindexed_rows": unindexed}
        for name, service, mode, qs in (
            ("semantic", api, SearchMode.SEMANTIC, pool[:count]),
            ("fulltext", api, SearchMode.FULLTEXT, pool[count:2 * count]),
            ("hybrid", api, SearchMode.HYBRID, pool[2 * count:]),
            ("vector_only", api_vector, SearchMode.SEMANTIC, fresh_vector_queries),
        ):
            samples = [timed_ms(lambda q=q: service.search(request(q, mode)))[0] for q in qs]
            out[name] = percentiles(samples)
        fresh_text = [timed_ms(lambda q=q: api.search(request(q, SearchMode.FULLTEXT)))[1] for q in fresh_queries]
        found_vec = [api_vector.search(request(q, SearchMode.SEMANTIC)).hits for q in fresh_vector_queries]
        out["fresh_source_row_in_top10"] = {
            "vector_only": round(float(np.mean([q.source_id in {h.chunk_id for h in hits}
                                                for q, hits in zip(fresh_queries, found_vec)])), 4),
            "fulltext": round(float(np.mean([q.source_id in {h.chunk_id for h in page.hits}
                                             for q, page in zip(fresh_queries, fresh_text)])), 4),
        }
        out["note"] = ("queries for semantic/fulltext/hybrid are drawn from the indexed rows; vector_only queries "
                       "target the fresh rows, whose own row should come back in the top 10")
        return out
    finally:
        table.restore(indexed_version)
        say(progress, "fresh rows: table restored to its indexed version")


def _sample_fresh(table: Any, corpus: SyntheticCorpus, base_rows: int, count: int, seed: int) -> list[BenchQuery]:
    total = table.count_rows()
    rng = np.random.default_rng([seed, 9])
    # The fresh rows are the last ones; sample offsets among them only.
    fresh = _sample_queries_at(table, corpus, np.arange(base_rows, total), count, rng)
    return fresh


def _sample_queries_at(table: Any, corpus: SyntheticCorpus, offsets: np.ndarray, count: int,
                       rng: np.random.Generator) -> list[BenchQuery]:
    chosen = np.sort(rng.choice(offsets, size=min(len(offsets), count), replace=False)).tolist()
    data = table.take_offsets(chosen).select(["id", "organization_id", "text", "vector"]).to_arrow()
    vectors = np.stack(data.column("vector").to_numpy(zero_copy_only=False))
    out = []
    for index in range(data.num_rows):
        words = corpus.query_words(data.column("text")[index].as_py())
        text = " ".join(words[:4]) or data.column("text")[index].as_py()[:40]
        vector = vectors[index] + rng.standard_normal(vectors.shape[1]).astype(np.float32) * np.float32(
            QUERY_VECTOR_NOISE / np.sqrt(vectors.shape[1]))
        out.append(BenchQuery(data.column("organization_id")[index].as_py(), text,
                              (vector / np.linalg.norm(vector)).astype(np.float32), data.column("id")[index].as_py()))
    return out


def _capsule_phase(api_vector: Any, raw: _Raw, queries: list[BenchQuery], lookup: LookupEmbedder) -> dict[str, Any]:
    from encaptio_data.search.service import SearchMode, SearchRequest

    ids = [q.source_id for q in queries]
    rows = raw.table.search().where(f"id IN ({', '.join(repr(i) for i in ids)})").select(["id", "capsule_id"]) \
        .limit(len(ids)).to_arrow()
    capsule_of = dict(zip(rows.column("id").to_pylist(), rows.column("capsule_id").to_pylist()))
    short = hits_total = exact_total = 0
    found, exact, samples = [], [], []
    for index, q in enumerate(queries):
        capsule = capsule_of[q.source_id]
        text = f"capsule-vector-{index}"
        lookup.vectors[text] = q.vector
        request = SearchRequest(q.organization_id, text, mode=SearchMode.SEMANTIC, capsule_ids=(capsule,), limit=10)
        ms, page = timed_ms(lambda: api_vector.search(request))
        samples.append(ms)
        where = f"{q.sql_filter} AND capsule_id = '{capsule}'"
        truth = raw.exact_ids(q.vector, where)
        found.append([h.chunk_id for h in page.hits])
        exact.append(truth)
        hits_total += len(page.hits)
        exact_total += len(truth)
        short += len(page.hits) < len(truth)
    return percentiles(samples) | {
        "queries": len(queries), "short_pages": short, "mean_hits": round(hits_total / len(queries), 2),
        "mean_hits_exact": round(exact_total / len(queries), 2), "recall_at_10": _recall(found, exact),
        "note": "API (precomputed vectors) filtered to the source row's capsule; short_pages = pages with fewer hits "
                "than an exact search finds (nprobes pins maximum_nprobes)"}


def _embedding_threads(embedder: Any, texts: list[str]) -> dict[str, Any]:
    """The model on one short query, alternating torch's default thread count and one thread.
    On a busy 2-core machine the default (2 intra-op threads) can stall behind other processes."""
    import torch

    default = torch.get_num_threads()
    if default == 1:
        return {"torch_threads_1": percentiles([timed_ms(lambda t=t: embedder.encode([t]))[0] for t in texts])}
    samples: dict[int, list[float]] = {default: [], 1: []}
    try:
        for index, text in enumerate(texts):
            for threads in ((default, 1) if index % 2 == 0 else (1, default)):
                torch.set_num_threads(threads)
                samples[threads].append(timed_ms(lambda: embedder.encode([text + " embedding probe"]))[0])
    finally:
        torch.set_num_threads(default)
    return {f"torch_threads_{default}": percentiles(samples[default]), "torch_threads_1": percentiles(samples[1])}
