"""The benchmarks run end to end at toy sizes and return what the CLI prints; no timing is asserted.

All three share one module-scoped data dir; the real embedding model is loaded once per
process (load_embedder is cached), so the whole module stays well under a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.ingest import run_ingest_bench
from bench.retrieval import ndcg_at_k, recall_at_k, rrf, run_retrieval_bench
from bench.search import run_search_bench
from encaptio_data.corpus import CorpusSpec

pytestmark = pytest.mark.slow

TINY = CorpusSpec(seed=11, organizations=1, users_per_organization=3, capsules_per_organization=2,
                  files_per_capsule=3, events_per_capsule=0)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Two intra-op threads on a busy 2-core machine can make one query embedding take 100+ ms
    (see docs/benchmarks.md); the smoke tests only check shapes, so keep them quick."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


def test_search_bench_returns_every_section(bench_dir: Path) -> None:
    messages: list[str] = []
    result = run_search_bench(2_000, queries=20, warmup=3, data_dir=bench_dir, fresh_rows=300, progress=messages.append)
    json.dumps(result)  # JSON-able as the CLI prints it
    assert result["chunks"] == 2_000 and messages
    for mode in ("semantic", "fulltext", "hybrid", "vector_only"):
        assert {"p50_ms", "p95_ms", "p99_ms", "raw_p95_ms", "api_overhead_ratio"} <= result[mode].keys()
        assert result[mode]["n"] == 20
    assert 0.0 <= result["recall_at_10"] <= 1.0
    assert {"cpu_model", "cores", "ram_gib", "python", "lancedb"} <= result["machine"].keys()
    assert {"p50_ms", "p95_ms"} <= result["cached"].keys()
    assert result["new_service_first_query"]["n"] == 20 and result["prewarm_seconds"] >= 0
    assert result["fresh_rows"]["rows_added"] == 300 and "p95_ms" in result["fresh_rows"]["fulltext"]
    assert result["index"]["query"]["depth"] == 100 and "dataset" in result["build_seconds"]

    again = run_search_bench(2_000, queries=2, warmup=1, data_dir=bench_dir, fresh_rows=0)
    assert again["dataset"]["built_now"] is False and again["chunks"] == 2_000  # cached, fresh rows rolled back


def test_retrieval_bench_scores_every_mode(bench_dir: Path) -> None:
    result = run_retrieval_bench(data_dir=bench_dir, spec=TINY)
    json.dumps(result)
    assert result["corpus"]["unmapped_files"] == 0 and result["corpus"]["queries"] > 0
    for mode in ("semantic", "fulltext", "hybrid"):
        scores = result[mode]["all"]
        assert 0.0 <= scores["ndcg_at_10"] <= 1.0 and 0.0 <= scores["recall_at_10"] <= 1.0
    assert set(result["hybrid_beats_both"]) == {"ndcg_at_10", "recall_at_10"}
    assert result["fusion_variants"]["best"]["name"]


def test_ingest_bench_times_every_stage(bench_dir: Path) -> None:
    result = run_ingest_bench(files=2, organizations=1, capsules=1, data_dir=bench_dir)
    json.dumps(result)
    stages = {"register_uploads", "extract_content", "chunk_content", "embed_content", "build_indexes"}
    assert stages <= result["stages"].keys()
    assert result["corpus"]["chunks"] > 0 and result["pipeline_chunks_per_s"] > 0
    assert result["ratio_end_to_end"] > 0 and result["ratio_embed_stage"] > 0
    assert result["peak_rss_mib"] > 0
    assert not (bench_dir / "ingest").exists()  # a fresh data dir per run, removed afterwards


def test_metrics() -> None:
    assert ndcg_at_k(["a", "b"], {"a", "b"}) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], {"a"}) == pytest.approx(1 / 1.5849625, rel=1e-6)
    assert recall_at_k(["a", "x"], {"a", "b"}) == 0.5
    fused = rrf([[{"chunk_id": "1", "content_id": "d1"}, {"chunk_id": "2", "content_id": "d1"}],
                 [{"chunk_id": "2", "content_id": "d1"}]], k=60)
    assert [hit["chunk_id"] for hit in fused] == ["2", "1"]
