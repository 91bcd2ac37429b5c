"""Archival: Parquet under archive/ with a manifest, rows deleted only after the file verified, readable back."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa

from encaptio_data.analytics.aggregate import materialize_day
from encaptio_data.db.enums import EventType, HoldScope, OrganizationTier
from encaptio_data.db.models import (
    DailyEngagement,
    DailyEngagementRun,
    DailyTopQuery,
    InteractionEvent,
    LegalHold,
    User,
)
from encaptio_data.errors import IntegrityError
from encaptio_data.lifecycle import archive as archive_module
from encaptio_data.lifecycle.archive import archive, partition_prefix, read_archive, read_manifest, verify_archive
from encaptio_data.lifecycle.purge import purge
from encaptio_data.lifecycle.retention import delete_capsule
from encaptio_data.platform import Platform
from tests.lifecycle_retention.conftest import NIGHTLY, add_event, at, new_box

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)  # January is a whole month older than 30 days; February is not
JAN = [date(2026, 1, 10), date(2026, 1, 20)]


def _event_ids(platform: Platform) -> set[uuid.UUID]:
    with platform.db.session() as session:
        return set(session.scalars(sa.select(InteractionEvent.id)))


def _partition_keys(platform: Platform, dataset: str, month: str) -> list[str]:
    return sorted(v.key for v in platform.objects.list_versions(partition_prefix(dataset, month)))


def test_events_round_trip_through_parquet_and_leave_only_after_verification(
        platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    box = new_box(platform, "archive")
    archived = [add_event(platform, box.capsule_id, box.owner_id, at(JAN[0], h), {"query": f"bread {h}"},
                          EventType.SEARCH) for h in (9, 10, 11)]
    archived += [add_event(platform, box.capsule_id, None, at(JAN[1], h)) for h in (9, 10)]
    unaggregated = add_event(platform, box.capsule_id, None, at(date(2026, 1, 25)))
    too_recent = add_event(platform, box.capsule_id, None, at(date(2026, 2, 20)))
    for day in JAN:
        materialize_day(platform, day, now=NOW)
    everything = _event_ids(platform)

    dry = archive(platform, now=NOW, dry_run=True)["datasets"]["interaction_events"]
    assert (dry["rows_archived"], dry["rows_deleted"]) == (5, 5) and _event_ids(platform) == everything
    assert _partition_keys(platform, "interaction_events", "2026-01") == []

    # A file that does not read back as written: nothing leaves the database, nothing is committed.
    real_get = platform.objects.get

    def corrupted(key: str, version_id: str | None = None) -> bytes:
        data = real_get(key, version_id)
        return data[:-8] + b"\0" * 8 if key.endswith(".parquet") else data

    with monkeypatch.context() as patch:
        patch.setattr(platform.objects, "get", corrupted)
        with pytest.raises(IntegrityError, match="did not read back as written"):
            archive(platform, now=NOW)
    assert _event_ids(platform) == everything
    assert read_manifest(platform.objects, "interaction_events", "2026-01") is None

    # A crash after the manifest commit, before the rows are deleted.
    real_append = archive_module.append

    def append_then_crash(*args: object, **kwargs: object) -> dict:
        real_append(*args, **kwargs)
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr(archive_module, "append", append_then_crash)
        with pytest.raises(KeyboardInterrupt):
            archive(platform, now=NOW)
    assert _event_ids(platform) == everything

    report = archive(platform, now=NOW)["datasets"]["interaction_events"]
    assert (report["rows_archived"], report["rows_deleted"]) == (0, 5), "already archived: deleted, not rewritten"
    assert _event_ids(platform) == {unaggregated, too_recent}
    with platform.db.session() as session:
        assert all(session.get(DailyEngagementRun, day).raw_purged_at == NOW for day in JAN)

    manifest = read_manifest(platform.objects, "interaction_events", "2026-01")
    (entry,) = manifest["files"]
    # One version of one file: what the failed try left uncommitted was swept, not kept beside it.
    assert _partition_keys(platform, "interaction_events", "2026-01") == sorted(
        [entry["key"], f"{partition_prefix('interaction_events', '2026-01')}manifest.json"])
    assert hashlib.sha256(platform.objects.get(entry["key"])).hexdigest() == entry["sha256"]
    assert manifest["rows"] == entry["rows"] == 5
    assert [f["name"] for f in manifest["schema"]][:3] == ["id", "interaction_id", "capsule_id"]
    assert manifest["time_range"]["min"].startswith("2026-01-10T09") and manifest["time_range"]["max"].startswith(
        "2026-01-20T10")
    assert verify_archive(platform.objects)["passed"]

    table = read_archive(platform, "interaction_events")
    assert isinstance(table, pa.Table) and sorted(table.column("id").to_pylist()) == sorted(map(str, archived))
    assert {json.loads(p).get("query") for p in table.column("payload").to_pylist()} == {
        "bread 9", "bread 10", "bread 11", None}
    assert table.column("organization_id").to_pylist() == [str(box.organization_id)] * 5
    window = read_archive(platform, "interaction_events", start=date(2026, 1, 15), end=date(2026, 2, 1),
                          columns=["id", "user_id"])
    assert window.num_rows == 2 and window.column_names == ["id", "user_id"]

    again = archive(platform, now=NOW)["datasets"]["interaction_events"]
    assert (again["rows_archived"], again["rows_deleted"], again["files"]) == (0, 0, [])


def test_archived_events_follow_retention_holds_and_capsule_purges(embedded: Platform) -> None:
    platform = embedded
    now = datetime(2026, 4, 2, 12, tzinfo=UTC)  # February is a whole month older than 30 days
    feb = date(2026, 2, 3)
    kept, gone = new_box(platform, "a"), new_box(platform, "b")
    witness = uuid.uuid4()
    with platform.db.session() as session:
        session.add(User(id=witness, organization_id=kept.organization_id, email="witness@example.org", name="W"))
    held_event = add_event(platform, kept.capsule_id, witness, at(feb, 9))
    add_event(platform, kept.capsule_id, None, at(feb, 10))
    add_event(platform, gone.capsule_id, None, at(feb, 11))
    materialize_day(platform, feb, now=now)
    assert archive(platform, now=now)["datasets"]["interaction_events"]["rows_deleted"] == 3
    with platform.db.session() as session:  # placed after archiving: the held row is in the archive
        session.add(LegalHold(organization_id=kept.organization_id, scope=HoldScope.USER, scope_id=witness,
                              reason="witness statement", placed_by="counsel@acme.test"))

    delete_capsule(platform, gone.capsule_id, operator=gone.owner_email, now=now)
    report = purge(platform, now + timedelta(days=31), operator=NIGHTLY)
    assert report["classes"]["soft_deleted"]["purged"]["archived_rows"] == 1
    assert read_archive(platform, "interaction_events").column("capsule_id").to_pylist() == [str(kept.capsule_id)] * 2

    later = purge(platform, now + timedelta(days=100), operator=NIGHTLY)["classes"]["raw_events"]  # past 90 days from February 3
    assert later["purged"]["archived_events"] == 1
    assert [h["reason"] for h in later["held"]] == ["witness statement"]
    assert read_archive(platform, "interaction_events").column("id").to_pylist() == [str(held_event)]
    assert verify_archive(platform.objects)["passed"]


def test_expired_analytics_move_to_the_archive(embedded: Platform) -> None:
    platform = embedded
    standard, enterprise = new_box(platform, "std", org_slug="std"), new_box(
        platform, "ent", org_slug="ent", tier=OrganizationTier.ENTERPRISE)
    held = new_box(platform, "held", org_slug="std")
    old, recent = NOW.date() - timedelta(days=400), NOW.date() - timedelta(days=20)
    with platform.db.session() as session:
        for box in (standard, enterprise, held):
            for day in (old, recent):
                session.add(DailyEngagement(day=day, capsule_id=box.capsule_id, organization_id=box.organization_id,
                                            events=4, views=3, unique_sessions=2, searches=1, chat_turns=0,
                                            dwell_events=0, completions=0, total_dwell_seconds=0.0, unique_users=2))
                session.add(DailyTopQuery(day=day, capsule_id=box.capsule_id, query_norm="sourdough", count=7,
                                          subjects=5, rank=1))
        session.add(LegalHold(organization_id=held.organization_id, scope=HoldScope.CAPSULE, scope_id=held.capsule_id,
                              reason="dispute", placed_by="counsel@acme.test"))
    result = archive(platform, now=NOW)["datasets"]
    assert result["daily_engagement"]["rows_archived"] == 1 and result["daily_top_queries"]["rows_archived"] == 1
    assert result["daily_engagement"]["held"][0]["reason"] == "dispute"
    (row,) = read_archive(platform, "daily_engagement").to_pylist()
    assert (row["day"], row["capsule_id"], row["organization_id"], row["views"]) == (
        old, str(standard.capsule_id), str(standard.organization_id), 3)
    assert read_archive(platform, "daily_top_queries").column("query_norm").to_pylist() == ["sourdough"]
    with platform.db.session() as session:
        left = {(c, d) for c, d in session.execute(sa.select(DailyEngagement.capsule_id, DailyEngagement.day))}
        assert (standard.capsule_id, old) not in left and len(left) == 5
        assert session.scalar(sa.select(sa.func.count()).select_from(DailyTopQuery)) == 5
    assert read_archive(platform, "daily_engagement", start=recent).num_rows == 0
