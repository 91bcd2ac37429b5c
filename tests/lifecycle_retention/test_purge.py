"""The purge: past the window, gone from every store; holds, the window and dry runs keep things; crashes converge."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.audit import verify_chain
from encaptio_data.db.enums import HoldScope
from encaptio_data.db.models import Capsule, Chunk, Content, ContentExtraction, LegalHold, utcnow
from encaptio_data.lifecycle import purge as purge_module
from encaptio_data.lifecycle.purge import purge
from encaptio_data.lifecycle.retention import delete_capsule, restore_capsule
from encaptio_data.platform import Platform
from encaptio_data.privacy.erasure import scan_directory, verify_erased
from encaptio_data.search.index import open_chunks_table
from tests.lifecycle_retention.conftest import NIGHTLY, Box, hits, new_box, run_pipeline



def _old(days: int = 31):
    return utcnow() - timedelta(days=days)


def _vector_rows(platform: Platform, box: Box) -> int:
    table = open_chunks_table(platform.vectors)
    return table.count_rows(f"capsule_id = '{box.capsule_id}'")


def _state(platform: Platform, box: Box) -> dict:
    with platform.db.session() as session:
        return {
            "capsule": session.get(Capsule, box.capsule_id) is not None,
            "content": session.scalar(sa.select(sa.func.count()).select_from(Content)
                                      .where(Content.capsule_id == box.capsule_id)),
            "chunks": session.scalar(sa.select(sa.func.count()).select_from(Chunk)
                                     .where(Chunk.capsule_id == box.capsule_id)),
            "versions": sum(1 for _ in platform.objects.list_versions(box.key)),
        }


def _lancedb_files_with(platform: Platform, needle: str) -> list[str]:
    return scan_directory(Path(platform.settings.resolved_lancedb_uri), [needle], {}, skip=set())


def test_purge_removes_rows_versions_vectors_and_cache_keys(platform: Platform) -> None:
    box, bystander = new_box(platform, "purged", versions=2), new_box(platform, "kept")
    run_pipeline(platform)
    (content_id,) = box.content_ids(platform)
    assert hits(platform, box, box.marker) == [str(content_id)]
    # Searches cached for the tenant hold the text of their hits until invalidated.
    assert any(box.marker.encode() in (platform.cache.get(k) or b"") for k in platform.cache.keys("search:"))
    assert _lancedb_files_with(platform, box.marker), "planting failed: the text should be in LanceDB files"

    delete_capsule(platform, box.capsule_id, operator=box.owner_email, now=_old(31))
    report = purge(platform, operator=NIGHTLY)

    soft = report["classes"]["soft_deleted"]
    assert soft["purged"]["capsules"] == 1 and soft["purged"]["content"] == 1
    assert soft["purged"]["object_versions"] == 2  # the old version of the upload too
    assert soft["held"] == []
    assert _state(platform, box) == {"capsule": False, "content": 0, "chunks": 0, "versions": 0}
    with platform.db.session() as session:
        assert session.get(ContentExtraction, content_id) is None
    assert _vector_rows(platform, box) == 0
    assert _lancedb_files_with(platform, box.marker) == [], "LanceDB data files or old versions keep the text"
    verification = verify_erased(platform, None, [box.marker])  # database, objects, vectors, cache (+ data dir)
    assert verification.passed, verification.findings

    assert _state(platform, bystander)["content"] == 1
    assert hits(platform, bystander, bystander.marker), "compaction must leave other capsules searchable"
    assert verify_chain(platform.db).valid
    again = purge(platform, operator=NIGHTLY)
    assert again["classes"]["soft_deleted"]["purged"] == {}


def test_legal_hold_blocks_the_purge_and_says_why(platform: Platform) -> None:
    box = new_box(platform, "held")
    run_pipeline(platform)
    delete_capsule(platform, box.capsule_id, operator=box.owner_email, now=_old(45))
    before = _state(platform, box)
    with platform.db.session() as session:
        hold = LegalHold(organization_id=box.organization_id, scope=HoldScope.CAPSULE, scope_id=box.capsule_id,
                         reason="litigation 2026-17", placed_by="counsel@acme.test")
        session.add(hold)
    report = purge(platform, operator=NIGHTLY)
    (held,) = report["classes"]["soft_deleted"]["held"]
    assert held["item"] == f"capsule:{box.capsule_id}" and held["reason"] == "litigation 2026-17"
    assert held["scope"] == "capsule" and held["hold_id"] == str(hold.id)
    assert _state(platform, box) == before and before["content"] == 1

    with platform.db.session() as session:
        session.get(LegalHold, hold.id).released_at = utcnow()
    assert purge(platform, operator=NIGHTLY)["classes"]["soft_deleted"]["purged"]["capsules"] == 1
    assert not _state(platform, box)["capsule"]


def test_a_hold_on_a_user_keeps_the_capsule_they_uploaded_to(embedded: Platform) -> None:
    box = new_box(embedded, "uploader")
    run_pipeline(embedded)
    delete_capsule(embedded, box.capsule_id, operator=box.owner_email, now=_old(45))
    with embedded.db.session() as session:
        session.add(LegalHold(organization_id=box.organization_id, scope=HoldScope.USER, scope_id=box.owner_id,
                              reason="regulator inquiry", placed_by="counsel@acme.test"))
    (held,) = purge(embedded, operator=NIGHTLY)["classes"]["soft_deleted"]["held"]
    assert held["scope"] == "user" and held["reason"] == "regulator inquiry"


def test_dry_run_changes_nothing_and_the_window_is_respected(platform: Platform) -> None:
    expired, recent = new_box(platform, "expired"), new_box(platform, "recent")
    run_pipeline(platform)
    delete_capsule(platform, expired.capsule_id, operator=expired.owner_email, now=_old(31))
    delete_capsule(platform, recent.capsule_id, operator=recent.owner_email, now=_old(10))
    before = (_state(platform, expired), _state(platform, recent), open_chunks_table(platform.vectors).version)

    dry = purge(platform, dry_run=True, operator=NIGHTLY)
    soft = dry["classes"]["soft_deleted"]
    assert dry["dry_run"] and soft["purged"]["capsules"] == 1 and soft["purged"]["object_versions"] == 1
    assert {"reason": "capsule within its recovery window", "count": 1} in soft["skipped"]
    assert (_state(platform, expired), _state(platform, recent),
            open_chunks_table(platform.vectors).version) == before

    purge(platform, operator=NIGHTLY)
    assert not _state(platform, expired)["capsule"]
    assert _state(platform, recent) == before[1], "inside the window nothing is touched"
    restore_capsule(platform, recent.capsule_id, operator=recent.owner_email)
    run_pipeline(platform)
    assert hits(platform, recent, recent.marker)


@pytest.mark.parametrize("step", ["purge_vectors", "invalidate_search_cache"])
def test_a_crash_in_the_middle_then_a_rerun_converges(platform: Platform, monkeypatch: pytest.MonkeyPatch,
                                                      step: str) -> None:
    box = new_box(platform, "crash", versions=2)
    run_pipeline(platform)
    delete_capsule(platform, box.capsule_id, operator=box.owner_email, now=_old(40))

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr(purge_module, step, killed)
        with pytest.raises(KeyboardInterrupt):
            purge(platform, operator=NIGHTLY)
    assert _state(platform, box)["capsule"], "rows go last, so a crash keeps them (and the purge can find the rest)"
    assert _state(platform, box)["versions"] == 0, "external stores go first"

    report = purge(platform, operator=NIGHTLY)
    assert report["classes"]["soft_deleted"]["purged"]["capsules"] == 1
    assert _state(platform, box) == {"capsule": False, "content": 0, "chunks": 0, "versions": 0}
    assert _lancedb_files_with(platform, box.marker) == []
    assert verify_erased(platform, None, [box.marker]).passed
    assert verify_chain(platform.db).valid


def test_content_deleted_alone_is_purged_alone_and_a_live_version_is_kept(embedded: Platform) -> None:
    from encaptio_data.content.pipeline import soft_delete_content

    platform = embedded
    box, live = new_box(platform, "alone"), new_box(platform, "sibling")
    run_pipeline(platform)
    (content_id,) = box.content_ids(platform)
    soft_delete_content(platform.db, platform.vectors, platform.cache, content_id)
    with platform.db.session() as session:
        session.get(Content, content_id).deleted_at = _old(35)
    report = purge(platform, operator=NIGHTLY)["classes"]["soft_deleted"]["purged"]
    assert (report["capsules"], report["content"], report["object_versions"]) == (0, 1, 1)
    assert _state(platform, box) == {"capsule": True, "content": 0, "chunks": 0, "versions": 0}
    assert _state(platform, live)["content"] == 1
