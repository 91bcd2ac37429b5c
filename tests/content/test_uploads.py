from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from encaptio_data.accounts import add_user, ensure_organization
from encaptio_data.content.uploads import (
    UPLOADS_PREFIX, classify, decode_metadata, encode_metadata, register_uploads, upload_key,
)
from encaptio_data.db.enums import ContentType
from encaptio_data.db.models import Capsule, Content
from encaptio_data.platform import Platform


@pytest.fixture
def capsule(platform: Platform) -> Capsule:
    with platform.db.session() as session:
        org = ensure_organization(session, name="Acme", slug="acme")
        owner = add_user(session, email="owner@acme.test", name="Owner", organization_id=org.id, role="creator")
        capsule = Capsule(organization_id=org.id, owner_id=owner.id, title="Sourdough")
        session.add(capsule)
    return capsule


def _content(platform: Platform) -> list[Content]:
    with platform.db.session() as session:
        return list(session.scalars(sa.select(Content).order_by(Content.filename)))


def test_new_uploads_become_rows_and_rerun_is_a_no_op(platform: Platform, capsule: Capsule) -> None:
    key = upload_key(capsule.organization_id, capsule.id, "starter.md")
    version = platform.objects.put(key, b"# Starter\nFeed it flour.", content_type="text/markdown",
                                   metadata=encode_metadata({"title": "Café starter"}))
    platform.objects.put(upload_key(capsule.organization_id, capsule.id, "crumb.png"), b"\x89PNG...",
                         content_type="image/png")
    first = register_uploads(platform.db, platform.objects)
    assert len(first.registered) == 2 and not first.rejected
    rows = _content(platform)
    md = next(r for r in rows if r.filename == "starter.md")
    assert (md.type, md.object_version, md.sha256, md.title) == (ContentType.MARKDOWN, version.version_id,
                                                                 version.sha256, "Café starter")
    second = register_uploads(platform.db, platform.objects)
    assert second.registered == [] and second.unchanged == 2


def test_identical_bytes_in_a_capsule_are_one_row(platform: Platform, capsule: Capsule) -> None:
    for name in ("a.txt", "copy-of-a.txt"):
        platform.objects.put(upload_key(capsule.organization_id, capsule.id, name), b"same bytes", content_type="text/plain")
    report = register_uploads(platform.db, platform.objects)
    assert len(report.registered) == 1 and len(report.duplicates) == 1
    assert len(_content(platform)) == 1


def test_a_new_version_updates_its_row(platform: Platform, capsule: Capsule) -> None:
    key = upload_key(capsule.organization_id, capsule.id, "notes.txt")
    platform.objects.put(key, b"first draft", content_type="text/plain")
    register_uploads(platform.db, platform.objects)
    (before,) = _content(platform)
    newer = platform.objects.put(key, b"second draft", content_type="text/plain")
    report = register_uploads(platform.db, platform.objects)
    (after,) = _content(platform)
    assert report.updated == [before.id] and after.id == before.id
    assert after.object_version == newer.version_id and after.sha256 == newer.sha256


def test_bad_uploads_are_reported_and_kept(platform: Platform, capsule: Capsule) -> None:
    keys = {
        f"{UPLOADS_PREFIX}not-a-uuid/{capsule.id}/x.txt": "not a UUID",
        upload_key(capsule.organization_id, uuid.uuid4(), "orphan.txt"): "does not exist",
        upload_key(uuid.uuid4(), capsule.id, "wrong-org.txt"): "does not exist",
        upload_key(capsule.organization_id, capsule.id, "tool.exe"): "unsupported MIME type",
        f"{UPLOADS_PREFIX}{capsule.organization_id}/loose.txt": "key must be",
    }
    for key in keys:
        platform.objects.put(key, key.encode(), content_type="application/x-msdownload" if key.endswith(".exe") else "text/plain")
    report = register_uploads(platform.db, platform.objects)
    reasons = {item["key"]: item["reason"] for item in report.rejected}
    for key, expected in keys.items():
        assert expected in reasons[key]
        assert platform.objects.exists(key), "a rejected upload must stay in the store"
    assert _content(platform) == []


@pytest.mark.parametrize(("mime", "name", "expected"), [
    ("application/pdf", "a.pdf", ContentType.PDF),
    ("", "a.md", ContentType.MARKDOWN),
    ("application/octet-stream", "page.html", ContentType.HTML),
    ("text/plain; charset=utf-8", "a.txt", ContentType.TEXT),
    ("image/jpeg", "a.jpg", ContentType.IMAGE),
    ("video/mp4", "a.mp4", ContentType.VIDEO),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "a.docx", ContentType.DOCUMENT),
    ("application/zip", "a.zip", None),
])
def test_classify(mime: str, name: str, expected: ContentType | None) -> None:
    assert classify(mime, name)[0] == expected


def test_metadata_round_trips_through_s3_safe_encoding() -> None:
    values = {"title": "Café – “Zürich” 100% ", "pages": 3, "tags": ["a", "b"]}
    decoded = decode_metadata(encode_metadata(values))
    assert decoded == {"title": "Café – “Zürich” 100%", "pages": "3", "tags": '["a", "b"]'}
    assert all(value.isascii() for value in encode_metadata(values).values())
