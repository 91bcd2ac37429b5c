"""The pipeline end to end: bad files, incremental work, deletion, and both profiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import sqlalchemy as sa

from encaptio_data.accounts import add_user, ensure_organization
from encaptio_data.authz import Grant, Permission, Principal
from encaptio_data.content.embedding import load_embedder
from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content, soft_delete_content
from encaptio_data.content.uploads import register_uploads, upload_key
from encaptio_data.db.models import Capsule, Chunk, Content, ContentExtraction
from encaptio_data.errors import NotFoundError
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform
from encaptio_data.search.index import open_chunks_table
from encaptio_data.search.service import SearchMode, SearchRequest, SearchService


class CountingEmbedder:
    """The real model, counting what it is asked to encode (to prove incremental work)."""

    def __init__(self) -> None:
        self._inner = load_embedder()
        self.model_name = self._inner.model_name
        self.dimension = self._inner.dimension
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.texts += list(texts)
        return self._inner.encode(texts, batch_size=batch_size)


PARAGRAPH = ("Sourdough starters need regular feeding with flour and water. A healthy starter doubles within "
             "six hours at room temperature, smells pleasantly sour and shows bubbles throughout. ")


def _capsule(platform: Platform) -> Capsule:
    with platform.db.session() as session:
        org = ensure_organization(session, name="Bakery", slug="bakery")
        owner = add_user(session, email="baker@bakery.test", name="Baker", organization_id=org.id, role="creator")
        capsule = Capsule(organization_id=org.id, owner_id=owner.id, title="Bread")
        session.add(capsule)
    return capsule


def _run(platform: Platform, embedder: CountingEmbedder) -> dict[str, object]:
    keys = KeyStore(platform.settings.keys_dir)
    register_uploads(platform.db, platform.objects, keys=keys)
    extracted = extract_content(platform.db, platform.objects, keys=keys)
    chunk_content(platform.db)
    embedded = embed_content(platform.db, platform.vectors, embedder, cache=platform.cache)
    return {"extracted": extracted, "embedded": embedded}


def _put(platform: Platform, capsule: Capsule, name: str, data: bytes, mime: str) -> None:
    platform.objects.put(upload_key(capsule.organization_id, capsule.id, name), data, content_type=mime)


def test_bad_files_fail_with_a_reason_and_the_originals_stay(platform: Platform) -> None:
    capsule = _capsule(platform)
    bad = {
        "empty.txt": (b"", "text/plain"),
        "truncated.pdf": (b"%PDF-1.7\n1 0 obj << /Type /Catalog", "application/pdf"),
        "not-a-pdf.pdf": (b"<html>hello</html>", "application/pdf"),
        "broken.png": (b"\x89PNG\r\n\x1a\nnot really", "image/png"),
        "noise.mp4": (bytes(range(256)) * 4, "video/mp4"),
    }
    for name, (data, mime) in bad.items():
        _put(platform, capsule, name, data, mime)
    _put(platform, capsule, "good.md", (f"# Starter\n\n{PARAGRAPH}").encode(), "text/markdown")
    report = _run(platform, CountingEmbedder())["extracted"]
    failed = {f["file"]: f["reason"] for f in report.failures}
    assert set(failed) == set(bad) and all(failed.values())
    for name, (data, _) in bad.items():
        assert platform.objects.get(upload_key(capsule.organization_id, capsule.id, name)) == data
    with platform.db.session() as session:
        chunks = session.scalars(sa.select(Chunk)).all()
    assert chunks and all("Sourdough" in c.text or "Starter" in c.text for c in chunks)


def test_changing_one_document_re_embeds_only_its_chunks(platform: Platform) -> None:
    capsule = _capsule(platform)
    for index in range(3):
        _put(platform, capsule, f"doc{index}.txt", (f"Document {index}. " + PARAGRAPH * 12).encode(), "text/plain")
    embedder = CountingEmbedder()
    _run(platform, embedder)
    first_total = len(embedder.texts)
    assert first_total > 3
    table = open_chunks_table(platform.vectors)
    assert table.count_rows() == first_total

    embedder.texts.clear()
    assert _run(platform, embedder)["embedded"].processed == 0 and embedder.texts == []

    _put(platform, capsule, "doc1.txt", b"Document 1, rewritten. Rye flour ferments faster than wheat flour.",
         "text/plain")
    result = _run(platform, embedder)
    assert result["embedded"].processed == 1
    assert len(embedder.texts) == 1 and "Rye flour" in embedder.texts[0]
    with platform.db.session() as session:
        doc1 = session.scalar(sa.select(Content).where(Content.filename == "doc1.txt"))
        expected = session.scalar(sa.select(sa.func.count()).select_from(Chunk))
    assert table.count_rows() == expected
    rows = table.search().where(f"content_id = '{doc1.id}'").to_list()
    assert [row["text"] for row in rows] == [embedder.texts[0]]


def test_deleting_content_removes_its_chunks_from_every_search_mode(platform: Platform) -> None:
    capsule = _capsule(platform)
    _put(platform, capsule, "keep.txt", ("Telescope eyepieces and focal length. " * 20).encode(), "text/plain")
    _put(platform, capsule, "drop.txt", ("Zymurgy of sourdough levain. " * 20).encode(), "text/plain")
    _run(platform, CountingEmbedder())
    searcher = Principal("system:test-search", (Grant(frozenset({Permission.SEARCH_ORG}), None),), system=True)
    service = SearchService(platform.vectors, platform.cache, principal=searcher, db=platform.db)
    org = str(capsule.organization_id)
    with platform.db.session() as session:
        drop = session.scalar(sa.select(Content).where(Content.filename == "drop.txt"))
    for mode in SearchMode:
        hits = service.search(SearchRequest(org, "zymurgy levain", mode=mode, limit=50)).hits
        assert any(hit.content_id == str(drop.id) for hit in hits)
    soft_delete_content(platform.db, platform.vectors, platform.cache, drop.id)
    for mode in SearchMode:
        hits = service.search(SearchRequest(org, "zymurgy levain", mode=mode, limit=50)).hits
        assert all(hit.content_id != str(drop.id) for hit in hits), mode
    assert platform.objects.exists(drop.object_key), "soft delete keeps the original for the recovery window"
    with pytest.raises(NotFoundError):
        soft_delete_content(platform.db, platform.vectors, platform.cache, "00000000-0000-0000-0000-000000000000")


def test_crash_mid_stage_is_repaired_by_a_re_run(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    capsule = _capsule(platform)
    for index in range(4):
        _put(platform, capsule, f"doc{index}.txt", (f"Doc {index}. " + PARAGRAPH * 3).encode(), "text/plain")
    register_uploads(platform.db, platform.objects)
    import encaptio_data.content.pipeline as pipeline

    real_extract, calls = pipeline.extract, []

    def crashing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(pipeline, "extract", crashing)
    with pytest.raises(KeyboardInterrupt):
        extract_content(platform.db, platform.objects)
    monkeypatch.setattr(pipeline, "extract", real_extract)
    with platform.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ContentExtraction)) == 2
    assert extract_content(platform.db, platform.objects).processed == 2
    chunk_content(platform.db)
    embed_content(platform.db, platform.vectors, load_embedder())
    with platform.db.session() as session:
        chunk_total = session.scalar(sa.select(sa.func.count()).select_from(Chunk))
    assert open_chunks_table(platform.vectors).count_rows() == chunk_total


def test_capsules_that_mask_pii_embed_masked_chunks(platform: Platform) -> None:
    capsule = _capsule(platform)
    _put(platform, capsule, "contact.txt", ("Write to jane.doe@example.com or call +1 415 555 0100. " * 5).encode(),
         "text/plain")
    _run(platform, CountingEmbedder())
    with platform.db.session() as session:
        assert "jane.doe@example.com" in session.scalars(sa.select(Chunk.text)).first()
        session.get(Capsule, capsule.id).settings = {"mask_pii": True}
    embedder = CountingEmbedder()
    assert _run(platform, embedder)["embedded"].processed == 1
    assert embedder.texts and all("jane.doe@example.com" not in text for text in embedder.texts)
    rows = open_chunks_table(platform.vectors).search().to_list()
    assert rows and all("jane.doe@example.com" not in row["text"] for row in rows)
