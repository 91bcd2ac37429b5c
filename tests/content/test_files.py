"""Uploaded files are ciphertext at rest, sealed with their uploader's data key, and every reader
gets the plaintext back through content.files; on the embedded default and on moto's S3."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.accounts import add_user, ensure_organization
from encaptio_data.authz import Grant, Permission, Principal
from encaptio_data.content.files import (
    SealedWithoutKeysError, is_sealed, put_file, put_file_if_changed, read_content,
)
from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content
from encaptio_data.content.uploads import register_uploads, upload_fingerprints, upload_key
from encaptio_data.db.models import Capsule, Content, ContentExtraction
from encaptio_data.errors import IntegrityError
from encaptio_data.integrity import content_objects, uploads_registered
from encaptio_data.keys import SEALED_MAGIC, KeyStore
from encaptio_data.platform import Platform
from encaptio_data.search.index import build_indexes, open_chunks_table
from encaptio_data.search.service import SearchMode, SearchRequest, SearchService
from tests.privacy.conftest import HashingEmbedder


def _text(marker: str) -> bytes:
    return (f"# Field notes\n\nThe {marker} nebula shows faint spiral arms. " * 40).encode()


@pytest.fixture
def capsule(platform: Platform) -> Capsule:
    with platform.db.session() as session:
        org = ensure_organization(session, name="Observatory", slug="observatory")
        owner = add_user(session, email="astro@observatory.test", name="Astro", organization_id=org.id, role="creator")
        capsule = Capsule(organization_id=org.id, owner_id=owner.id, title="Sky")
        session.add(capsule)
    return capsule


def _stored(platform: Platform, key: str) -> list[bytes]:
    """The raw bytes of every version the store holds for key (what a backup or replica copies)."""
    return [platform.objects.get(v.key, v.version_id) for v in platform.objects.list_versions(key)
            if v.key == key and not v.is_delete_marker]


def test_uploads_are_ciphertext_at_rest_and_the_pipeline_reads_them(platform: Platform, capsule: Capsule) -> None:
    keys = KeyStore(platform.settings.keys_dir)
    org, owner = capsule.organization_id, capsule.owner_id
    sealed_key, plain_arrival, anonymous, copy = (upload_key(org, capsule.id, name) for name in
                                                  ("sealed.md", "arrived-plain.md", "anonymous.md", "zz-copy.md"))
    put_file(platform.objects, keys, sealed_key, _text("quokkasealed"), uploaded_by=owner, content_type="text/markdown")
    # An upload service that does not seal: registration seals it and deletes the plain version.
    platform.objects.put(plain_arrival, _text("wombatplain"), content_type="text/markdown",
                         metadata={"uploaded-by": str(owner)})
    platform.objects.put(anonymous, _text("numbatnobody"), content_type="text/markdown")
    put_file(platform.objects, keys, copy, _text("quokkasealed"), uploaded_by=owner, content_type="text/markdown")

    fingerprints = upload_fingerprints(platform.objects, {str(capsule.id)})
    report = register_uploads(platform.db, platform.objects, keys=keys)
    assert (len(report.registered), report.sealed, len(report.duplicates)) == (3, 1, 1)
    assert upload_fingerprints(platform.objects, {str(capsule.id)}) == fingerprints, "sealing alone runs nothing"
    for key, marker in ((sealed_key, b"quokkasealed"), (plain_arrival, b"wombatplain"), (copy, b"quokkasealed")):
        raw = _stored(platform, key)
        assert len(raw) == 1 and raw[0].startswith(SEALED_MAGIC) and marker not in raw[0], key
    assert b"numbatnobody" in _stored(platform, anonymous)[0], "without an uploader a file stays plain"
    if platform.settings.profile == "embedded":
        blobs = [path.read_bytes() for path in Path(platform.settings.resolved_object_store).rglob("*.blob")]
        assert blobs and not any(b"quokkasealed" in blob or b"wombatplain" in blob for blob in blobs)

    extracted = extract_content(platform.db, platform.objects, keys=keys)
    assert extracted.processed == 3 and not extracted.failures
    with platform.db.session() as session:
        rows = {row.filename: row for row in session.scalars(sa.select(Content))}
        texts = {rows[name].filename: session.get(ContentExtraction, rows[name].id).text for name in rows}
    assert "quokkasealed" in texts["sealed.md"] and "wombatplain" in texts["arrived-plain.md"]
    assert rows["sealed.md"].sha256 == hashlib.sha256(_text("quokkasealed")).hexdigest()
    assert rows["sealed.md"].size_bytes == len(_text("quokkasealed"))
    assert read_content(platform.objects, keys, rows["arrived-plain.md"]) == _text("wombatplain")
    with pytest.raises(SealedWithoutKeysError, match="no key store"):
        read_content(platform.objects, None, rows["sealed.md"])
    listing = {v.key: v for v in platform.objects.list("uploads/")}
    assert content_objects(platform.db, platform.objects).passed
    assert uploads_registered(platform.db, platform.objects, listing=listing).passed

    versions = sum(1 for _ in platform.objects.list_versions("uploads/"))
    again = register_uploads(platform.db, platform.objects, keys=keys)
    assert (again.sealed, again.changed_content_ids, again.unchanged) == (0, [], 3)
    assert put_file_if_changed(platform.objects, keys, sealed_key, _text("quokkasealed"), uploaded_by=owner,
                               content_type="text/markdown")[1] is False
    assert sum(1 for _ in platform.objects.list_versions("uploads/")) == versions, "re-runs add no version"

    chunk_content(platform.db)
    embed_content(platform.db, platform.vectors, HashingEmbedder(), cache=platform.cache)
    build_indexes(open_chunks_table(platform.vectors))
    searcher = Principal("system:test-search", (Grant(frozenset({Permission.SEARCH_ORG}), None),), system=True)
    service = SearchService(platform.vectors, platform.cache, principal=searcher, db=platform.db,
                            embedder=HashingEmbedder())
    hits = service.search(SearchRequest(str(org), "wombatplain", mode=SearchMode.FULLTEXT, limit=10)).hits
    assert {hit.content_id for hit in hits} == {str(rows["arrived-plain.md"].id)}


def test_a_sealed_file_that_does_not_match_its_row_is_refused(platform: Platform, capsule: Capsule) -> None:
    keys = KeyStore(platform.settings.keys_dir)
    key = upload_key(capsule.organization_id, capsule.id, "notes.md")
    put_file(platform.objects, keys, key, _text("first"), uploaded_by=capsule.owner_id, content_type="text/markdown")
    register_uploads(platform.db, platform.objects, keys=keys)
    with platform.db.session() as session:
        row = session.scalar(sa.select(Content))
        row.sha256 = hashlib.sha256(b"something else").hexdigest()
    with platform.db.session() as session:
        with pytest.raises(IntegrityError, match="does not hold the bytes its content row records"):
            read_content(platform.objects, keys, session.scalar(sa.select(Content)))
    with pytest.raises(IntegrityError, match="refused to store"):
        put_file(platform.objects, keys, key, b"abc", uploaded_by=capsule.owner_id, expected_sha256="0" * 64)
    assert len(_stored(platform, key)) == 1


def test_plain_files_stored_before_sealing_are_sealed_by_the_next_registration(platform: Platform,
                                                                              capsule: Capsule) -> None:
    """The migration path: rows already pointing at plain versions move onto sealed copies."""
    keys = KeyStore(platform.settings.keys_dir)
    key = upload_key(capsule.organization_id, capsule.id, "old.md")
    platform.objects.put(key, _text("legacyplain"), content_type="text/markdown",
                         metadata={"uploaded-by": str(capsule.owner_id)})
    register_uploads(platform.db, platform.objects)  # no key store: registered as it is
    extract_content(platform.db, platform.objects)
    assert not is_sealed(platform.objects.head(key))

    report = register_uploads(platform.db, platform.objects, keys=keys)
    assert report.sealed == 1 and report.changed_content_ids == []
    (raw,) = _stored(platform, key)
    assert raw.startswith(SEALED_MAGIC) and b"legacyplain" not in raw
    with platform.db.session() as session:
        row = session.scalar(sa.select(Content))
        assert row.object_version == platform.objects.head(key).version_id
        assert read_content(platform.objects, keys, row) == _text("legacyplain")
    assert extract_content(platform.db, platform.objects, keys=keys).processed == 0, "same bytes: nothing to redo"


def test_a_crash_between_sealing_and_the_commit_converges(platform: Platform, capsule: Capsule,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeyStore(platform.settings.keys_dir)
    key = upload_key(capsule.organization_id, capsule.id, "crash.md")
    platform.objects.put(key, _text("crashplain"), content_type="text/markdown",
                         metadata={"uploaded-by": str(capsule.owner_id)})
    register_uploads(platform.db, platform.objects)
    import encaptio_data.content.uploads as uploads

    real = uploads.seal_version

    def seal_then_crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        raise OSError("killed")

    monkeypatch.setattr(uploads, "seal_version", seal_then_crash)
    with pytest.raises(OSError):
        register_uploads(platform.db, platform.objects, keys=keys)
    monkeypatch.setattr(uploads, "seal_version", real)
    with platform.db.session() as session:
        assert not platform.objects.exists(key) or session.scalar(sa.select(Content.object_version)) != \
            platform.objects.head(key).version_id, "the row still points at the deleted plain version"
    register_uploads(platform.db, platform.objects, keys=keys)
    with platform.db.session() as session:
        row = session.scalar(sa.select(Content))
        assert read_content(platform.objects, keys, row) == _text("crashplain")
    assert [raw.startswith(SEALED_MAGIC) for raw in _stored(platform, key)] == [True]
    assert content_objects(platform.db, platform.objects).passed


def test_large_files_are_sealed_and_read_in_chunks(platform: Platform, capsule: Capsule) -> None:
    keys = KeyStore(platform.settings.keys_dir)
    key = upload_key(capsule.organization_id, capsule.id, "big.bin.txt")
    data = os.urandom(3 * 1024 * 1024 + 17)
    version = put_file(platform.objects, keys, key, data, uploaded_by=capsule.owner_id, content_type="text/plain")
    assert version.size > len(data) and data[:4096] not in platform.objects.get(key)
    register_uploads(platform.db, platform.objects, keys=keys)
    with platform.db.session() as session:
        row = session.scalar(sa.select(Content))
    assert row.size_bytes == len(data)
    assert read_content(platform.objects, keys, row) == data


def test_keys_seal_files_seals_legacy_uploads_once_and_needs_an_admin() -> None:
    import json

    from typer.testing import CliRunner

    from encaptio_data.bootstrap import initialize
    from encaptio_data.cli import app

    runner = CliRunner()
    platform = Platform()  # the embedded default in this test's own data dir
    initialize(platform)
    with platform.db.session() as session:
        org = ensure_organization(session, name="Org", slug="org")
        add_user(session, email="root@org.test", name="Root", organization_id=org.id, role="admin")
        creator = add_user(session, email="c@org.test", name="C", organization_id=org.id, role="creator")
        capsule = Capsule(organization_id=org.id, owner_id=creator.id, title="Old")
        session.add(capsule)
    key = upload_key(org.id, capsule.id, "legacy.md")
    platform.objects.put(key, _text("legacyfile"), content_type="text/markdown",
                         metadata={"uploaded-by": str(creator.id)})

    refused = runner.invoke(app, ["keys", "seal-files", "--as", "c@org.test"])
    assert refused.exit_code != 0 and not is_sealed(platform.objects.head(key))
    first = runner.invoke(app, ["keys", "seal-files", "--as", "root@org.test", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["sealed"] == 1
    (raw,) = _stored(platform, key)
    assert raw.startswith(SEALED_MAGIC) and b"legacyfile" not in raw
    again = json.loads(runner.invoke(app, ["keys", "seal-files", "--as", "root@org.test", "--json"]).stdout)
    assert again == {"sealed": 0, "registered": 0, "updated": 0, "unchanged": 1}
    platform.close()
