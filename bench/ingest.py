"""Ingestion throughput: the real content pipeline on the demo corpus, stage by stage.

`run_ingest_bench()` seeds the demo corpus (encaptio_data.corpus + seed_demo) into a fresh
embedded data dir, then times register_uploads → extract_content → chunk_content →
embed_content (the real model, into LanceDB) → build_indexes, and compares the pipeline's
chunks/second with the raw model: `encode()` over the same chunk texts in the same process.

The raw reference is measured twice, right before and right after the embed stage, and
averaged, so a change in machine load during the run biases neither side. It is measured two
ways: one `encode()` over all texts (the best case: sentence-transformers sorts by length
across every chunk) and one `encode()` per content item (the batching embed_content does), so
the gap between pipeline and model splits into "batching" and "everything else" (database,
LanceDB upserts).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import Any

from bench._common import (
    ProgressCallback,
    default_data_dir,
    finish_machine_info,
    machine_info,
    peak_rss_mib,
    ratio,
    say,
    set_quiet_environment,
)

TARGET_RATIO = 0.9


def _timed(stages: dict[str, Any], name: str, call: Callable[[], Any], progress: ProgressCallback) -> Any:
    say(progress, f"stage: {name}")
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    stages[name] = {"seconds": round(seconds, 3), "peak_rss_mib_after": peak_rss_mib()}
    if hasattr(result, "as_dict"):
        stages[name]["report"] = result.as_dict()
    return result


def _chunk_texts(platform: Any) -> list[tuple[str, str]]:
    import sqlalchemy as sa

    from encaptio_data.db.models import Chunk, Content

    with platform.db.session() as session:
        rows = session.execute(sa.select(Chunk.content_id, Chunk.text).join(Content, Content.id == Chunk.content_id)
                               .order_by(Content.created_at, Content.id, Chunk.chunk_index)).all()
    return [(str(content_id), text) for content_id, text in rows]


def _raw_encode(embedder: Any, rows: list[tuple[str, str]]) -> dict[str, float]:
    texts = [text for _, text in rows]
    started = time.perf_counter()
    embedder.encode(texts)
    one_call = time.perf_counter() - started
    started = time.perf_counter()
    for _, group in groupby(rows, key=lambda row: row[0]):
        embedder.encode([text for _, text in group])
    per_item = time.perf_counter() - started
    return {"one_call_seconds": one_call, "per_item_seconds": per_item}


def run_ingest_bench(*, files: int = 16, data_dir: Path | None = None, progress: ProgressCallback = None,
                     seed: int = 7, organizations: int = 2, capsules: int = 4, keep: bool = False) -> dict[str, Any]:
    """Time the whole pipeline on a demo corpus of organizations x capsules x `files` files
    (about half of them documents; images and videos are registered and extracted as
    metadata only and yield no chunks). Returns a JSON-able dict."""
    set_quiet_environment()
    import torch

    from encaptio_data.bootstrap import initialize
    from encaptio_data.content.chunking import load_tokenizer
    from encaptio_data.content.embedding import load_embedder
    from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content
    from encaptio_data.content.uploads import register_uploads
    from encaptio_data.corpus import CorpusSpec
    from encaptio_data.demo import seed_demo
    from encaptio_data.platform import Platform
    from encaptio_data.search.index import build_indexes, open_chunks_table
    from encaptio_data.settings import get_settings

    started = time.perf_counter()
    machine = machine_info()
    root = (Path(data_dir) if data_dir else default_data_dir()) / "ingest"
    shutil.rmtree(root, ignore_errors=True)
    spec = CorpusSpec(seed=seed, organizations=organizations, capsules_per_organization=capsules,
                      files_per_capsule=files, events_per_capsule=0)
    setup: dict[str, Any] = {}
    stages: dict[str, Any] = {}
    platform = Platform(get_settings(data_dir=root))
    try:
        embedder = _timed(setup, "load_model", load_embedder, progress)
        _timed(setup, "load_tokenizer", load_tokenizer, progress)
        embedder.encode(["warm up"] * 4)
        _timed(setup, "initialize", lambda: initialize(platform), progress)
        _timed(setup, "seed_demo (generate corpus, insert rows, upload files)", lambda: seed_demo(platform, spec),
               progress)

        _timed(stages, "register_uploads", lambda: register_uploads(platform.db, platform.objects), progress)
        _timed(stages, "extract_content", lambda: extract_content(platform.db, platform.objects), progress)
        _timed(stages, "chunk_content", lambda: chunk_content(platform.db), progress)
        rows = _chunk_texts(platform)
        say(progress, f"raw encode() of {len(rows)} chunk texts (before the embed stage)")
        before = _raw_encode(embedder, rows)
        _timed(stages, "embed_content", lambda: embed_content(platform.db, platform.vectors, embedder,
                                                              cache=platform.cache), progress)
        say(progress, "raw encode() again (after the embed stage)")
        after = _raw_encode(embedder, rows)
        _timed(stages, "build_indexes", lambda: build_indexes(open_chunks_table(platform.vectors)), progress)
        chunks = stages["embed_content"]["report"]["items"]
        table_rows = open_chunks_table(platform.vectors).count_rows()
        documents = len({content_id for content_id, _ in rows})
        tokens = None
        if hasattr(embedder, "tokenizer"):
            encoded = embedder.tokenizer([text for _, text in rows], add_special_tokens=True)
            tokens = sum(len(ids) for ids in encoded["input_ids"])
    finally:
        platform.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)

    pipeline_stages = ("register_uploads", "extract_content", "chunk_content", "embed_content")
    pipeline_seconds = sum(stages[name]["seconds"] for name in pipeline_stages)
    embed_seconds = stages["embed_content"]["seconds"]
    raw_one = (before["one_call_seconds"] + after["one_call_seconds"]) / 2
    raw_item = (before["per_item_seconds"] + after["per_item_seconds"]) / 2
    pipeline_cps = chunks / pipeline_seconds if pipeline_seconds else None
    embed_cps = chunks / embed_seconds if embed_seconds else None
    raw_cps = len(rows) / raw_one if raw_one else None
    raw_item_cps = len(rows) / raw_item if raw_item else None
    return {
        "benchmark": "ingest",
        "machine": finish_machine_info(machine),
        "corpus": {"organizations": organizations, "capsules_per_organization": capsules, "files_per_capsule": files,
                   "files": organizations * capsules * files, "documents_with_chunks": documents, "chunks": chunks,
                   "lancedb_rows": table_rows, "tokens": tokens, "seed": seed},
        "setup": setup,
        "stages": stages,
        "pipeline_seconds": round(pipeline_seconds, 3),
        "pipeline_chunks_per_s": round(pipeline_cps, 2) if pipeline_cps else None,
        "embed_stage_chunks_per_s": round(embed_cps, 2) if embed_cps else None,
        "raw_encode": {
            "chunks": len(rows),
            "one_call_chunks_per_s": round(raw_cps, 2) if raw_cps else None,
            "per_item_chunks_per_s": round(raw_item_cps, 2) if raw_item_cps else None,
            "before_embed_stage": {k: round(v, 3) for k, v in before.items()},
            "after_embed_stage": {k: round(v, 3) for k, v in after.items()},
            "batch_size": 64,
            "torch_threads": torch.get_num_threads(),
        },
        "ratio_end_to_end": ratio(pipeline_cps, raw_cps),
        "ratio_embed_stage": ratio(embed_cps, raw_cps),
        "ratio_embed_stage_vs_per_item_encode": ratio(embed_cps, raw_item_cps),
        "target_ratio": TARGET_RATIO,
        "targets": {"ratio_end_to_end>=0.9": (ratio(pipeline_cps, raw_cps) or 0) >= TARGET_RATIO,
                    "ratio_embed_stage>=0.9": (ratio(embed_cps, raw_cps) or 0) >= TARGET_RATIO},
        "peak_rss_mib": peak_rss_mib(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
