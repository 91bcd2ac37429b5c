"""Retrieval quality on the labelled demo queries: nDCG@10 and recall@10 per search mode.

The demo corpus knows which documents answer each of its queries (`corpus.queries`: facet
vocabulary appears only in the documents that cover the facet). `run_retrieval_bench()`
carries a corpus through the real pipeline with the real model, asks every labelled query
through `SearchService` (cache off) in each mode, under the query's organization and, for
capsule-scoped queries, its capsule, and scores the ranking at document level: chunk hits
are mapped to their content item, repeated documents are dropped (first occurrence keeps
its rank), and a document is relevant if it is among the query's relevant files.

Files are matched to content rows by (capsule, file name), since uploads land under
uploads/<org>/<capsule>/<file name> and registration gives content rows fresh ids.

Besides the API's own hybrid, the same semantic and fulltext candidate lists are fused
again offline with other settings (RRF k, candidate depth, document-level fusion,
weights) to show what would move hybrid quality; the platform code is not changed.

Both encoders of the model are scored (`encoders`): the configured one (ENCAPTIO_EMBEDDER,
int8 ONNX by default) and the other, each embedding its own copy of the corpus and the
queries, so the int8 model's quality is compared with the fp32 model's on the same labels.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import PurePosixPath
from pathlib import Path
from typing import Any, get_args

import numpy as np

from bench._common import (
    ProgressCallback,
    default_data_dir,
    finish_machine_info,
    machine_info,
    say,
    set_quiet_environment,
)

K = 10
DEFAULT_SPEC = dict(seed=7, organizations=2, capsules_per_organization=6, files_per_capsule=10, events_per_capsule=0)


def ndcg_at_k(ranking: Sequence[str], relevant: set[str], k: int = K) -> float:
    """Binary-relevance nDCG of a ranking of distinct documents."""
    dcg = sum(1.0 / math.log2(rank + 2) for rank, doc in enumerate(ranking[:k]) if doc in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def recall_at_k(ranking: Sequence[str], relevant: set[str], k: int = K, *, capped: bool = False) -> float:
    """Share of the relevant documents in the top k; `capped` divides by min(|relevant|, k), so
    a query with more than k relevant documents can still score 1."""
    if not relevant:
        return 0.0
    return len(set(ranking[:k]) & relevant) / (min(len(relevant), k) if capped else len(relevant))


def reciprocal_rank(ranking: Sequence[str], relevant: set[str], k: int = K) -> float:
    for rank, doc in enumerate(ranking[:k], start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def documents(hits: Sequence[dict[str, Any]]) -> list[str]:
    """Chunk hits → distinct content ids in rank order."""
    return list(dict.fromkeys(hit["content_id"] for hit in hits))


def rrf(rankings: Sequence[Sequence[dict[str, Any]]], *, k: float = 60, depth: int = 100,
        weights: Sequence[float] | None = None, key: str = "chunk_id") -> list[dict[str, Any]]:
    """Reciprocal rank fusion as the API does it (sum of w / (k + rank), ties by id), with the
    constant, per-list candidate depth, weights and fusion key as parameters."""
    fused: dict[str, dict[str, Any]] = {}
    for index, ranking in enumerate(rankings):
        weight = weights[index] if weights else 1.0
        seen: set[str] = set()
        rank = 0
        for hit in ranking:
            ident = hit[key]
            if ident in seen:  # document-level fusion: a document's best chunk is its rank
                continue
            seen.add(ident)
            rank += 1
            if rank > depth:
                break
            entry = fused.setdefault(ident, {**hit, "score": 0.0})
            entry["score"] += weight / (k + rank)
    return sorted(fused.values(), key=lambda hit: (-hit["score"], hit[key]))


def _score(rankings: dict[str, list[str]], queries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scope in ("all", "organization", "capsule"):
        chosen = [q for q in queries if scope == "all" or q["scope"] == scope]
        if not chosen:
            continue
        ndcg = [ndcg_at_k(rankings[q["id"]], q["relevant"]) for q in chosen]
        recall = [recall_at_k(rankings[q["id"]], q["relevant"]) for q in chosen]
        capped = [recall_at_k(rankings[q["id"]], q["relevant"], capped=True) for q in chosen]
        mrr = [reciprocal_rank(rankings[q["id"]], q["relevant"]) for q in chosen]
        out[scope] = {"queries": len(chosen), "ndcg_at_10": round(float(np.mean(ndcg)), 4),
                      "recall_at_10": round(float(np.mean(recall)), 4),
                      "recall_at_10_capped": round(float(np.mean(capped)), 4), "mrr_at_10": round(float(np.mean(mrr)), 4),
                      "mean_relevant": round(float(np.mean([len(q["relevant"]) for q in chosen])), 2)}
    return out


def _build(root: Path, spec: Any, embedder: Any, progress: ProgressCallback) -> dict[str, Any]:
    """The corpus through the real pipeline, once per spec (cached under root)."""
    from encaptio_data.bootstrap import initialize
    from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content
    from encaptio_data.content.uploads import register_uploads
    from encaptio_data.demo import seed_demo
    from encaptio_data.keys import KeyStore
    from encaptio_data.platform import Platform
    from encaptio_data.search.index import build_indexes, open_chunks_table
    from encaptio_data.settings import get_settings

    marker = root / "built.json"
    identity = {k: str(v) for k, v in asdict(spec).items()} | {"model": embedder.model_name}
    try:
        meta = json.loads(marker.read_text())
        if meta.get("spec") == identity:
            return meta | {"built_now": False}
    except (OSError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    with Platform(get_settings(data_dir=root)) as platform:
        initialize(platform)
        say(progress, "retrieval: seeding the demo corpus")
        seed_demo(platform, spec)
        keys = KeyStore(platform.settings.keys_dir)  # the demo's uploads are sealed
        register_uploads(platform.db, platform.objects, keys=keys)
        say(progress, "retrieval: extract, chunk, embed (real model)")
        extract_content(platform.db, platform.objects, keys=keys)
        chunk_content(platform.db)
        embedded = embed_content(platform.db, platform.vectors, embedder, cache=platform.cache)
        build_indexes(open_chunks_table(platform.vectors))
    meta = {"spec": identity, "chunks": embedded.items, "build_seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(meta))
    return meta | {"built_now": True}


def run_retrieval_bench(*, data_dir: Path | None = None, progress: ProgressCallback = None,
                        spec: Any = None, rebuild: bool = False, variants: bool = True,
                        embedder: Any = None, compare_encoders: bool | None = None) -> dict[str, Any]:
    """nDCG@10 / recall@10 / MRR@10 per mode on the labelled demo queries; JSON-able dict.

    `spec` is a CorpusSpec (default: 2 organizations x 6 capsules x 10 files, 144 queries).
    `variants` also scores offline re-fusions of the same candidate lists. `embedder` (default
    the platform's load_embedder()) embeds both the corpus and the queries, so another model
    or a quantized copy can be compared on the same labels. `compare_encoders` (default: when
    no embedder is given) scores the other encoder too, under `encoders`.
    """
    set_quiet_environment()
    import sqlalchemy as sa

    from encaptio_data.content.embedding import MODEL_NAME, load_embedder
    from encaptio_data.corpus import CorpusSpec, generate
    from encaptio_data.db.models import Content
    from encaptio_data.platform import Platform
    from encaptio_data.authz import system_principal
    from encaptio_data.search.service import SearchMode, SearchRequest, SearchService
    from encaptio_data.settings import get_settings

    started = time.perf_counter()
    machine = machine_info()
    spec = spec or CorpusSpec(**DEFAULT_SPEC)
    embedder_given = embedder
    embedder = embedder or load_embedder()
    key = f"s{spec.seed}-o{spec.organizations}-c{spec.capsules_per_organization}-f{spec.files_per_capsule}"
    if embedder.model_name != MODEL_NAME:
        key += "-" + "".join(ch if ch.isalnum() else "_" for ch in embedder.model_name)[-40:]
    root = (Path(data_dir) if data_dir else default_data_dir()) / f"retrieval-{key}"
    if rebuild:
        shutil.rmtree(root, ignore_errors=True)
    build = _build(root, spec, embedder, progress)
    corpus = generate(spec)

    with Platform(get_settings(data_dir=root)) as platform:
        with platform.db.session() as session:
            contents = {(str(c.capsule_id), c.filename): str(c.id)
                        for c in session.scalars(sa.select(Content).where(Content.deleted_at.is_(None)))}
        by_file = {str(f.id): contents.get((str(f.capsule_id), PurePosixPath(f.filename).name)) for f in corpus.files}
        unmapped = [fid for fid, cid in by_file.items() if cid is None]
        queries = []
        for index, labelled in enumerate(corpus.queries):
            relevant = {by_file[str(f)] for f in labelled.relevant_file_ids if by_file.get(str(f))}
            queries.append({"id": index, "text": labelled.text, "organization_id": str(labelled.organization_id),
                            "capsule_id": str(labelled.capsule_id) if labelled.capsule_id else None,
                            "scope": "capsule" if labelled.capsule_id else "organization", "relevant": relevant})

        service = SearchService(platform.vectors, None, embedder=embedder, principal=system_principal("bench"),
                                db=platform.db)
        say(progress, f"retrieval: {len(queries)} labelled queries x 3 modes")
        candidates: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(dict)
        for q in queries:
            for mode in SearchMode:
                request = SearchRequest(q["organization_id"], q["text"], mode=mode,
                                        capsule_ids=(q["capsule_id"],) if q["capsule_id"] else (), limit=100)
                page = service.search(request)
                candidates[mode.value][q["id"]] = [asdict(hit) for hit in page.hits]

    modes = {mode: _score({qid: documents(hits) for qid, hits in lists.items()}, queries)
             for mode, lists in candidates.items()}
    overall = {mode: scores["all"] for mode, scores in modes.items()}
    best_single = {metric: max(overall["semantic"][metric], overall["fulltext"][metric])
                   for metric in ("ndcg_at_10", "recall_at_10")}
    verdict = {metric: overall["hybrid"][metric] > best_single[metric] for metric in best_single}
    per_query = _per_query_wins(candidates, queries)

    result: dict[str, Any] = {
        "benchmark": "retrieval",
        "machine": finish_machine_info(machine),
        "model": embedder.model_name,
        "corpus": {"spec": {k: str(v) for k, v in asdict(spec).items()}, "files": len(corpus.files),
                   "documents": sum(f.is_document for f in corpus.files), "chunks": build.get("chunks"),
                   "queries": len(queries), "unmapped_files": len(unmapped),
                   "build_seconds": build.get("build_seconds"),
                   "built_now": build.get("built_now")},
        "method": ("chunk hits (API, limit 100, cache off) mapped to content ids, repeats dropped; binary relevance; "
                   "capsule-scoped queries filtered to their capsule, broad queries organization-wide"),
        "semantic": modes["semantic"], "fulltext": modes["fulltext"], "hybrid": modes["hybrid"],
        "hybrid_beats_both": verdict,
        "per_query": per_query,
    }
    if variants:
        result["fusion_variants"] = _fusion_variants(candidates, queries)
    if compare_encoders if compare_encoders is not None else embedder_given is None:
        result["encoders"] = _compare_encoders(result, embedder, data_dir=data_dir, progress=progress, spec=spec,
                                               rebuild=rebuild)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    return result


def _compare_encoders(result: dict[str, Any], embedder: Any, **options: Any) -> dict[str, Any]:
    """nDCG@10 and recall@10 per mode for both encoders; `result` is the run with `embedder`."""
    from encaptio_data.content.embedding import EmbedderKind, load_embedder

    runs: dict[str, dict[str, Any]] = {}
    for kind in get_args(EmbedderKind):
        other = load_embedder(kind=kind)
        if other.model_name == embedder.model_name:
            runs[kind] = result
        else:
            say(options.get("progress"), f"retrieval: the same labels with the {kind} encoder")
            runs[kind] = run_retrieval_bench(variants=False, embedder=other, compare_encoders=False, **options)
    metrics = ("ndcg_at_10", "recall_at_10")
    out: dict[str, Any] = {
        kind: {"model": run["model"], "chunks": run["corpus"]["chunks"],
               **{mode: {m: run[mode]["all"][m] for m in metrics} for mode in ("semantic", "fulltext", "hybrid")},
               "hybrid_beats_both": run["hybrid_beats_both"]}
        for kind, run in runs.items()}
    if "torch" in runs and "onnx-int8" in runs:
        # The criterion: the faster encoder keeps retrieval quality within 1 %.
        out["onnx_int8_relative_to_torch"] = {
            mode: {m: round(runs["onnx-int8"][mode]["all"][m] / runs["torch"][mode]["all"][m], 4)
                   if runs["torch"][mode]["all"][m] else None for m in metrics}
            for mode in ("semantic", "hybrid")}
        out["onnx_int8_within_1_percent"] = all(
            (ratio or 0) >= 0.99 for mode in out["onnx_int8_relative_to_torch"].values() for ratio in mode.values())
    return out


def _per_query_wins(candidates: dict[str, dict[int, list[dict[str, Any]]]], queries: list[dict[str, Any]]
                    ) -> dict[str, Any]:
    """How often each single mode finds what the other misses (why fusion can help or hurt)."""
    ndcg = {mode: {q["id"]: ndcg_at_k(documents(lists[q["id"]]), q["relevant"]) for q in queries}
            for mode, lists in candidates.items()}
    ids = [q["id"] for q in queries]
    return {
        "semantic_better": sum(ndcg["semantic"][i] > ndcg["fulltext"][i] + 1e-9 for i in ids),
        "fulltext_better": sum(ndcg["fulltext"][i] > ndcg["semantic"][i] + 1e-9 for i in ids),
        "tied": sum(abs(ndcg["fulltext"][i] - ndcg["semantic"][i]) <= 1e-9 for i in ids),
        "hybrid_below_best_single": sum(ndcg["hybrid"][i] + 1e-9 < max(ndcg["semantic"][i], ndcg["fulltext"][i])
                                        for i in ids),
        "fulltext_empty": sum(not candidates["fulltext"][i] for i in ids),
    }


def _fusion_variants(candidates: dict[str, dict[int, list[dict[str, Any]]]], queries: list[dict[str, Any]]
                     ) -> dict[str, Any]:
    """Re-fuse the API's own semantic and fulltext lists offline with other settings."""
    def score(**params: Any) -> dict[str, float]:
        rankings = {q["id"]: documents(rrf([candidates["semantic"][q["id"]], candidates["fulltext"][q["id"]]],
                                           **params)) for q in queries}
        return _score(rankings, queries)["all"]

    from encaptio_data.search.service import HYBRID_WEIGHTS

    out: dict[str, Any] = {"api_equivalent (chunk RRF, k=60, depth 100, weights semantic:fulltext="
                           f"{HYBRID_WEIGHTS[0]:g}:{HYBRID_WEIGHTS[1]:g})": score(k=60, depth=100,
                                                                                  weights=HYBRID_WEIGHTS)}
    for k in (1, 5, 10, 20, 30, 60, 100):
        out[f"chunk RRF k={k}"] = score(k=k)
    for depth in (10, 20, 50):
        out[f"chunk RRF k=60, depth {depth}"] = score(k=60, depth=depth)
    for k in (10, 60):
        out[f"document RRF k={k}"] = score(k=k, key="content_id")
    for weights in ((1.0, 1.0), (2.0, 1.0), (1.0, 2.0)):
        out[f"chunk RRF k=60, weights semantic:fulltext={weights[0]:g}:{weights[1]:g}"] = score(k=60, weights=weights)
    best = max(out.items(), key=lambda item: (item[1]["ndcg_at_10"], item[1]["recall_at_10"]))
    return {"variants": out, "best": {"name": best[0], **best[1]}}
