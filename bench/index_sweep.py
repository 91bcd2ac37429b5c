"""Vector-index tuning: latency and recall@10 per index type and query parameters.

`run_index_sweep(100_000, configs=[...])` reuses the synthetic dataset of `run_search_bench`
(same cache directory), replaces the vector index with each config in turn, and measures,
for each combination of query parameters, the raw LanceDB vector query exactly as the API
issues it (organization prefilter, depth 100, the API's columns) and its recall@10 against
an exact search under the same filter. The last config built stays on the cached table, and
the cache records it, so a later `run_search_bench` with other parameters rebuilds.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import ProgressCallback, default_data_dir, finish_machine_info, machine_info, percentiles, say
from bench.search import _ensure_indexes, _open_dataset, _Raw, _recall, _sample_queries
from bench.synthetic import SyntheticSpec


def run_index_sweep(chunks: int, *, configs: list[dict[str, Any]], nprobes: tuple[int, ...] = (10, 20, 40),
                    refine_factors: tuple[int | None, ...] = (None,), efs: tuple[int | None, ...] = (None,),
                    queries: int = 200, warmup: int = 20, data_dir: Path | None = None, seed: int = 0,
                    organizations: int = 20, progress: ProgressCallback = None) -> dict[str, Any]:
    from encaptio_data.content.embedding import load_embedder
    from encaptio_data.search.service import DEFAULT_DEPTH

    machine = machine_info()
    root = Path(data_dir) if data_dir else default_data_dir()
    spec = SyntheticSpec(chunks=chunks, seed=seed, organizations=organizations)
    embedder = load_embedder()
    store, table, corpus, meta, built = _open_dataset(spec, root, embedder, rebuild=False, progress=progress)
    directory = root / f"search-{spec.key()}"
    rows = meta["rows"]
    rng = np.random.default_rng([seed, 200])
    qs = _sample_queries(table, corpus, rows, warmup + queries, rng, set())
    warm, measured = qs[:warmup], qs[warmup:]
    exact_raw = _Raw(table, embedder, depth=DEFAULT_DEPTH, nprobes=1, refine_factor=None, ef=None)
    say(progress, "exact top-10 for every query")
    exact = [exact_raw.exact_ids(q.vector, q.sql_filter) for q in measured]
    results = []
    for config in configs:
        started = time.perf_counter()
        state = _ensure_indexes(table, directory, meta, num_partitions=None, index_config=config, rebuild=False,
                                progress=progress)
        build_seconds = state.get("seconds") if state.get("built_now") else None
        for probes, refine, ef in itertools.product(nprobes, refine_factors, efs):
            raw = _Raw(table, embedder, depth=DEFAULT_DEPTH, nprobes=probes, refine_factor=refine, ef=ef)
            for q in warm:
                raw.vector_only(q)
            samples, found = [], []
            for q in measured:
                t0 = time.perf_counter()
                rows_ = raw.vector_only(q)
                samples.append((time.perf_counter() - t0) * 1000)
                found.append(rows_.column("id").to_pylist()[:10])
            p = percentiles(samples)
            entry = {"config": config, "nprobes": probes, "refine_factor": refine, "ef": ef,
                     "p50_ms": p["p50_ms"], "p95_ms": p["p95_ms"], "p99_ms": p["p99_ms"],
                     "recall_at_10": _recall(found, exact), "index_build_seconds": build_seconds}
            say(progress, f"{config} nprobes={probes} refine={refine} ef={ef}: p50 {p['p50_ms']} p95 {p['p95_ms']} "
                          f"recall {entry['recall_at_10']} (build {build_seconds}s)")
            results.append(entry)
        say(progress, f"config {config} done in {time.perf_counter() - started:.0f}s")
    return {"benchmark": "index_sweep", "chunks": rows, "queries": queries, "depth": DEFAULT_DEPTH,
            "machine": finish_machine_info(machine), "results": results}
