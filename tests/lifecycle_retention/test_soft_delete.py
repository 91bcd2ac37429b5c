"""Soft delete leaves search at once; restore within the window brings the capsule back after re-embedding."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from encaptio_data.audit import verify_chain
from encaptio_data.db.models import AuditEntry, Capsule, Content, ContentExtraction, utcnow
from encaptio_data.errors import InvalidInputError, NotFoundError
from encaptio_data.lifecycle.purge import purge
from encaptio_data.lifecycle.retention import RecoveryWindowError, delete_capsule, restore_capsule
from encaptio_data.platform import Platform
from tests.lifecycle_retention.conftest import NIGHTLY, hits, new_box, run_pipeline


def test_delete_leaves_search_at_once_and_restore_brings_it_back(platform: Platform) -> None:
    box, other = new_box(platform, "gone"), new_box(platform, "stays")
    run_pipeline(platform)
    content_id = str(box.content_ids(platform)[0])
    assert hits(platform, box, box.marker) == [content_id]
    assert content_id in hits(platform, box, box.marker, mode="semantic")  # cached now, both modes

    deleted = delete_capsule(platform, box.capsule_id, operator=box.owner_email)
    assert deleted["content_deleted"] == 1 and deleted["cache_keys_invalidated"] >= 1
    assert hits(platform, box, box.marker) == []
    assert content_id not in hits(platform, box, box.marker, mode="semantic")
    assert hits(platform, other, other.marker), "another capsule's content stays searchable"
    run_pipeline(platform)  # the pipeline neither re-registers nor re-embeds deleted content
    assert hits(platform, box, box.marker) == []
    again = delete_capsule(platform, box.capsule_id, operator=box.owner_email)
    assert again["already_deleted"] and again["deleted_at"] == deleted["deleted_at"]

    restored = restore_capsule(platform, box.capsule_id, operator=box.owner_email)
    assert restored["content_restored"] == 1
    with platform.db.session() as session:
        assert session.get(Capsule, box.capsule_id).deleted_at is None
        assert session.get(ContentExtraction, box.content_ids(platform)[0]).embedded_sha256 is None
    run_pipeline(platform)
    assert hits(platform, box, box.marker) == [content_id]
    with platform.db.session() as session:
        actions = list(session.scalars(sa.select(AuditEntry.action).where(AuditEntry.target == str(box.capsule_id))))
    assert actions == ["capsule.deleted", "capsule.restored"]
    assert verify_chain(platform.db).valid


def test_content_deleted_on_its_own_stays_deleted_when_its_capsule_is_restored(platform: Platform) -> None:
    from encaptio_data.content.pipeline import soft_delete_content

    box = new_box(platform, "separate")
    run_pipeline(platform)
    (content_id,) = box.content_ids(platform)
    soft_delete_content(platform.db, platform.vectors, platform.cache, content_id)
    delete_capsule(platform, box.capsule_id, operator=box.owner_email)
    assert restore_capsule(platform, box.capsule_id, operator=box.owner_email)["content_restored"] == 0
    with platform.db.session() as session:
        assert session.get(Content, content_id).deleted_at is not None


def test_restore_is_refused_after_the_window_and_after_the_purge(embedded: Platform) -> None:
    platform = embedded
    box = new_box(platform, "late")
    deleted_at = utcnow() - timedelta(days=31)
    delete_capsule(platform, box.capsule_id, operator=box.owner_email, now=deleted_at)
    with pytest.raises(RecoveryWindowError, match=r"30-day recovery window ended on"):
        restore_capsule(platform, box.capsule_id, operator=box.owner_email)
    with pytest.raises(InvalidInputError, match="not deleted"):
        restore_capsule(platform, new_box(platform, "live").capsule_id, operator=box.owner_email)

    purge(platform, operator=NIGHTLY)
    with pytest.raises(NotFoundError, match=r"was purged on .* after its recovery window"):
        restore_capsule(platform, box.capsule_id, operator=box.owner_email)
    with pytest.raises(NotFoundError, match="does not exist"):
        restore_capsule(platform, "00000000-0000-4000-8000-000000000000", operator=box.owner_email)


def test_restore_inside_the_window_with_an_injected_clock(embedded: Platform) -> None:
    box = new_box(embedded, "edge")
    deleted_at = utcnow() - timedelta(days=40)
    delete_capsule(embedded, box.capsule_id, operator=box.owner_email, now=deleted_at)
    restored = restore_capsule(embedded, box.capsule_id, operator=box.owner_email, now=deleted_at + timedelta(days=29))
    assert restored["capsule_id"] == str(box.capsule_id)
