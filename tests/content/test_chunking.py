"""Chunks fit the embedding model, overlap, cite their place and keep stable ids."""

from __future__ import annotations

import random
import uuid

import pytest

from encaptio_data.content.chunking import (
    CHUNKER_VERSION,
    MODEL_MAX_TOKENS,
    Chunk,
    chunk_extraction,
    load_tokenizer,
)
from encaptio_data.content.extract import Extraction, Section, extract
from encaptio_data.db.enums import ContentType
from tests.content.test_extract import make_pdf

SHA = "a" * 64
OTHER_SHA = "b" * 64
CONTENT_ID = "3f1d2c4b-0000-4000-8000-000000000001"

_WORDS = (
    "archive backup capsule creator dataset document embedding engine index lineage model object "
    "pipeline platform privacy query record retention search section storage stream summary table "
    "upload vector version video widget asset catalog policy consent audit"
).split()


def prose(words: int, seed: int = 0) -> str:
    """Deterministic sentences grouped in paragraphs, like an uploaded article."""
    rng = random.Random(seed)
    paragraphs, sentences, count = [], [], 0
    while count < words:
        length = rng.randint(6, 22)
        sentence = " ".join(rng.choice(_WORDS) for _ in range(length))
        sentences.append(sentence.capitalize() + rng.choice([".", ".", ".", "?", ";"]))
        count += length
        if len(sentences) == rng.randint(3, 6):
            paragraphs.append(" ".join(sentences))
            sentences = []
    paragraphs.append(" ".join(sentences))
    return "\n\n".join(p for p in paragraphs if p)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def assert_well_formed(chunks: list[Chunk], extraction: Extraction, tokenizer, limit: int = 200) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text == extraction.text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.token_count == tokens(tokenizer, chunk.text)
        assert chunk.token_count <= limit
        assert len(tokenizer(chunk.text, verbose=False)["input_ids"]) <= MODEL_MAX_TOKENS
    # Every word of the text is in some chunk.
    covered = bytearray(len(extraction.text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    assert all(covered[i] or extraction.text[i].isspace() for i in range(len(extraction.text)))


def test_long_text_is_cut_into_overlapping_chunks_within_the_token_budget(tokenizer) -> None:
    extraction = extract(prose(2000).encode(), ContentType.TEXT)
    chunks = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)

    assert len(chunks) >= 10
    assert_well_formed(chunks, extraction, tokenizer)
    for previous, following in zip(chunks, chunks[1:]):
        assert previous.start < following.start
        assert following.start < previous.end, "consecutive chunks of one section overlap"
        shared = extraction.text[following.start : previous.end]
        assert 0 < tokens(tokenizer, shared) < 0.5 * previous.token_count
    # Chunks use the budget, not a sliver of it.
    assert sum(c.token_count for c in chunks) / len(chunks) > 100


def test_without_overlap_chunks_tile_the_text(tokenizer) -> None:
    extraction = extract(prose(1500, seed=3).encode(), ContentType.TEXT)
    chunks = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, overlap=0, tokenizer=tokenizer)
    assert_well_formed(chunks, extraction, tokenizer)
    for previous, following in zip(chunks, chunks[1:]):
        assert previous.end <= following.start


def test_smaller_chunks_on_request(tokenizer) -> None:
    extraction = extract(prose(800, seed=5).encode(), ContentType.TEXT)
    chunks = chunk_extraction(
        extraction, content_id=CONTENT_ID, content_sha256=SHA, chunk_tokens=50, tokenizer=tokenizer
    )
    assert_well_formed(chunks, extraction, tokenizer, limit=50)


def test_ids_are_stable_and_follow_the_bytes(tokenizer) -> None:
    extraction = extract(prose(1200, seed=1).encode(), ContentType.TEXT)
    first = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)
    again = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA)  # default tokenizer
    changed = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=OTHER_SHA, tokenizer=tokenizer)
    other_content = chunk_extraction(extraction, content_id=uuid.UUID(int=7), content_sha256=SHA, tokenizer=tokenizer)

    assert first == again
    assert len({c.id for c in first}) == len(first)
    assert all(str(uuid.UUID(c.id)) == c.id for c in first)
    assert not {c.id for c in first} & {c.id for c in changed}
    assert not {c.id for c in first} & {c.id for c in other_content}
    assert [c.text for c in changed] == [c.text for c in first]
    assert CHUNKER_VERSION


def test_pdf_pages_are_carried_and_never_merged(tokenizer) -> None:
    pages = [prose(450, seed=10), "Short page two.", "Short page three.", prose(300, seed=11)]
    extraction = extract(make_pdf(pages), ContentType.PDF)
    assert extraction.status == "ok"
    chunks = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)

    assert_well_formed(chunks, extraction, tokenizer)
    assert {c.page for c in chunks} == {1, 2, 3, 4}
    sections = {s.page: s for s in extraction.sections}
    for chunk in chunks:
        section = sections[chunk.page]
        assert section.start <= chunk.start and chunk.end <= section.end
    assert [c.text for c in chunks if c.page in (2, 3)] == ["Short page two.", "Short page three."]
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)


def test_headings_are_carried_and_tiny_sections_merged(tokenizer) -> None:
    markdown = "\n\n".join(
        [
            "# Handbook",
            "Welcome.",
            "## Setup",
            prose(600, seed=20),
            "## Tip one",
            "Keep backups.",
            "## Tip two",
            "Test restores.",
            "## Operations",
            prose(400, seed=21),
        ]
    )
    extraction = extract(markdown.encode(), ContentType.MARKDOWN)
    chunks = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)
    assert_well_formed(chunks, extraction, tokenizer)

    for chunk in chunks:
        section = max((s for s in extraction.sections if s.start <= chunk.start), key=lambda s: s.start)
        assert chunk.heading == section.heading
    # The one-line sections are lead-ins: "Handbook" starts Setup's first chunk, the two tips
    # start the first chunk of Operations; no chunk is a sliver.
    assert chunks[0].heading == "Handbook" and "Setup" in chunks[0].text
    [tips] = [c for c in chunks if "Keep backups." in c.text]
    assert tips.heading == "Tip one" and "Test restores." in tips.text and "Operations" in tips.text
    assert min(c.token_count for c in chunks) > 20
    assert {"Handbook", "Setup", "Tip one", "Operations"} == {c.heading for c in chunks}


def test_a_short_section_after_a_small_one_is_appended(tokenizer) -> None:
    markdown = "# Intro\n\n" + prose(90, seed=30) + "\n\n## Note\n\nRemember to test restores."
    extraction = extract(markdown.encode(), ContentType.MARKDOWN)
    [chunk] = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)
    assert chunk.heading == "Intro" and chunk.text.endswith("Remember to test restores.")


def test_failed_metadata_only_and_empty_extractions_have_no_chunks(tokenizer) -> None:
    failed = extract(b"", ContentType.PDF)
    metadata_only = Extraction("metadata_only", None, "", (), {}, "pillow")
    blank = Extraction("ok", None, "   ", (), {}, "charset-normalizer")
    for extraction in (failed, metadata_only, blank):
        assert chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer) == []


def test_an_extraction_without_sections_is_one_section(tokenizer) -> None:
    text = prose(300, seed=4)
    extraction = Extraction("ok", None, text, (), {}, "test")
    chunks = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)
    assert_well_formed(chunks, extraction, tokenizer)
    assert all(c.page is None and c.heading is None for c in chunks)


def test_a_short_text_is_one_chunk(tokenizer) -> None:
    extraction = extract(b"  Just one sentence here.  ", ContentType.TEXT)
    [chunk] = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)
    assert (chunk.index, chunk.text, chunk.start, chunk.token_count) == (0, "Just one sentence here.", 0, 5)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"chunk_tokens": 255}, ValueError),
        ({"chunk_tokens": 0}, ValueError),
        ({"chunk_tokens": 20.5}, TypeError),
        ({"overlap": 1.0}, ValueError),
        ({"overlap": -0.1}, ValueError),
    ],
)
def test_parameters_are_checked(tokenizer, kwargs: dict, error: type[Exception]) -> None:
    extraction = extract(b"Some text.", ContentType.TEXT)
    with pytest.raises(error):
        chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer, **kwargs)


def test_section_outside_the_text_is_refused(tokenizer) -> None:
    extraction = Extraction("ok", None, "abc", (Section("abc", 0, 10),), {}, "test")
    with pytest.raises(ValueError):
        chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)


def test_a_cut_over_the_budget_is_cut_again(tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    from encaptio_data.content import chunking

    real_split = chunking._split

    def sloppy_split(text, chunk_tokens, overlap, count, counter):
        # Stands in for a joined window tokenizing longer than its parts: the whole unit.
        return [(0, len(text))] if overlap else real_split(text, chunk_tokens, overlap, count, counter)

    monkeypatch.setattr(chunking, "_split", sloppy_split)
    extraction = extract(prose(600, seed=8).encode(), ContentType.TEXT)
    chunks = chunk_extraction(extraction, content_id=CONTENT_ID, content_sha256=SHA, tokenizer=tokenizer)
    assert len(chunks) > 3
    assert_well_formed(chunks, extraction, tokenizer)
