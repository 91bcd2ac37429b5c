"""The other data classes: raw events, analytics, backups, temporary files, sessions and the audit trail."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
import sqlalchemy as sa

from encaptio_data.authz import system_principal
from encaptio_data import audit
from encaptio_data.analytics.aggregate import materialize_day
from encaptio_data.db.enums import BackupKind, BackupStatus, HoldScope, OrganizationTier, RetentionAction
from encaptio_data.db.models import (
    AuditEntry,
    Backup,
    DailyEngagement,
    DailyEngagementRun,
    InteractionEvent,
    LegalHold,
    RetentionPolicy,
)
from encaptio_data.lifecycle.purge import purge
from encaptio_data.platform import Platform
from tests.lifecycle_retention.conftest import NIGHTLY, add_event, at, new_box

# Backups and drills are what the schedules do: they run as the Dagster system principal.
OPERATOR = system_principal("dagster", run="test")

DAY = date(2026, 1, 12)
NOW = datetime(2026, 4, 30, 12, tzinfo=UTC)  # DAY is 108 days back: past the 90-day raw-event retention


def _events(platform: Platform) -> set[uuid.UUID]:
    with platform.db.session() as session:
        return set(session.scalars(sa.select(InteractionEvent.id)))


def test_raw_events_go_only_once_their_day_is_aggregated_and_holds_keep_theirs(embedded: Platform) -> None:
    platform = embedded
    box = new_box(platform, "events")
    held_user = uuid.uuid4()
    with platform.db.session() as session:
        from encaptio_data.db.models import User

        session.add(User(id=held_user, organization_id=box.organization_id, email="held@example.org", name="Held"))
        session.add(LegalHold(organization_id=box.organization_id, scope=HoldScope.USER, scope_id=held_user,
                              reason="litigation", placed_by="counsel@acme.test"))
    aggregated = [add_event(platform, box.capsule_id, box.owner_id, at(DAY, h)) for h in (9, 10)]
    held = add_event(platform, box.capsule_id, held_user, at(DAY, 11))
    unaggregated = add_event(platform, box.capsule_id, None, at(DAY + timedelta(days=1)))
    recent = add_event(platform, box.capsule_id, None, at(NOW.date() - timedelta(days=30)))
    materialize_day(platform, DAY, now=NOW)

    dry = purge(platform, NOW, dry_run=True, operator=NIGHTLY)["classes"]["raw_events"]
    assert dry["purged"]["events"] == 2 and _events(platform) == {*aggregated, held, unaggregated, recent}

    report = purge(platform, NOW, operator=NIGHTLY)["classes"]["raw_events"]
    assert report["purged"]["events"] == 2
    assert report["held"] == [{"item": f"interaction_events:{DAY}", "hold_id": report["held"][0]["hold_id"],
                               "scope": "user", "scope_id": str(held_user), "reason": "litigation", "count": 1}]
    assert any(s["reason"].startswith("day not aggregated yet") and s["count"] == 1 for s in report["skipped"])
    assert _events(platform) == {held, unaggregated, recent}
    with platform.db.session() as session:
        run = session.get(DailyEngagementRun, DAY)
        assert run.raw_purged_at is not None  # the day's aggregates are final now
        assert session.scalar(sa.select(DailyEngagement.views).where(DailyEngagement.day == DAY)) == 3
    assert purge(platform, NOW, operator=NIGHTLY)["classes"]["raw_events"]["purged"]["events"] == 0


def test_analytics_follow_their_policy_action(embedded: Platform) -> None:
    platform = embedded
    standard = new_box(platform, "std", org_slug="std")
    deleting = new_box(platform, "del", org_slug="del")
    enterprise = new_box(platform, "ent", org_slug="ent", tier=OrganizationTier.ENTERPRISE)
    with platform.db.session() as session:
        session.add(RetentionPolicy(data_class="analytics", tier=OrganizationTier.STANDARD,
                                    organization_id=deleting.organization_id, retain_days=30,
                                    action=RetentionAction.DELETE))
        for box in (standard, deleting, enterprise):
            for day in (NOW.date() - timedelta(days=400), NOW.date() - timedelta(days=10)):
                session.add(DailyEngagement(day=day, capsule_id=box.capsule_id, organization_id=box.organization_id,
                                            events=1, views=1, unique_sessions=1, searches=0, chat_turns=0,
                                            dwell_events=0, completions=0, total_dwell_seconds=0.0, unique_users=1))
    report = purge(platform, NOW, operator=NIGHTLY)["classes"]["analytics"]
    assert report["purged"]["daily_engagement"] == 1  # the org whose own policy deletes after 30 days
    assert {"reason": "action archive: archive_job moves them to archive/", "count": 1} in report["skipped"]
    with platform.db.session() as session:
        left = session.execute(sa.select(DailyEngagement.organization_id, sa.func.count())
                               .group_by(DailyEngagement.organization_id)).all()
    assert dict(left) == {standard.organization_id: 2, deleting.organization_id: 1, enterprise.organization_id: 2}


def _backup(platform: Platform, days: int, *, status: BackupStatus = BackupStatus.SUCCEEDED, location: str = "",
            manifest: dict[str, Any] | None = None, data: bool = True) -> uuid.UUID:
    backup_id = uuid.uuid4()
    location = location or f"backups/sqlite/{backup_id}.db.enc"
    if data and location.startswith("backups/"):
        platform.objects.put(location, b"encrypted backup bytes")
        platform.objects.put(location, b"encrypted backup bytes, second version")
    started = NOW - timedelta(days=days)
    with platform.db.session() as session:
        session.add(Backup(id=backup_id, store="sqlite", kind=BackupKind.FULL, status=status, started_at=started,
                           finished_at=started + timedelta(minutes=5), location=location, manifest=manifest or {}))
    return backup_id


def _backup_ids(platform: Platform) -> set[uuid.UUID]:
    with platform.db.session() as session:
        return set(session.scalars(sa.select(Backup.id)))


def test_backups_roll_over_after_30_days_keeping_what_restores_need(embedded: Platform) -> None:
    from encaptio_data.lifecycle.backup import run_backup

    platform = embedded
    expired = _backup(platform, 45)
    crashed = _backup(platform, 40, status=BackupStatus.FAILED)
    base = _backup(platform, 35)
    pgbackrest = _backup(platform, 50, location="pgbackrest:main/20260101-000000F", data=False)
    platform.objects.put(f"backups/postgresql/20260101-000000F-{pgbackrest}.manifest.json", b"{}")
    # A backup only the object store still lists (its row went with a restore of an older database).
    lost = uuid.uuid4()
    stamp = (NOW - timedelta(days=45)).strftime("%Y%m%dT%H%M%S.%fZ")
    for suffix in (".db.enc", ".manifest.json"):
        platform.objects.put(f"backups/sqlite/{stamp}-{lost}{suffix}", b"{}")
    real = uuid.UUID(run_backup(platform, operator=OPERATOR)["backup_id"])  # the backup module's own layout
    with platform.db.session() as session:
        session.get(Backup, real).started_at = NOW - timedelta(days=40)
    incremental = _backup(platform, 2, manifest={"base_backup_id": str(base)})

    assert purge(platform, NOW, dry_run=True, operator=NIGHTLY)["classes"]["backups"]["purged"] == {"backups": 5,
                                                                                  "object_versions": 9}
    assert _backup_ids(platform) == {expired, crashed, base, pgbackrest, real, incremental}
    report = purge(platform, NOW, operator=NIGHTLY)["classes"]["backups"]
    assert report["purged"] == {"backups": 5, "object_versions": 9}
    assert report["skipped"] == [{"reason": "base of a backup that is kept", "count": 1}]
    assert _backup_ids(platform) == {base, incremental}
    assert [v.key for v in platform.objects.list_versions("backups/")] == sorted(
        [f"backups/sqlite/{base}.db.enc"] * 2 + [f"backups/sqlite/{incremental}.db.enc"] * 2)


def test_backups_keep_the_newest_restorable_one_and_holds_keep_them_all(embedded: Platform) -> None:
    platform = embedded
    only = _backup(platform, 60)
    older = _backup(platform, 90)
    with platform.db.session() as session:
        from encaptio_data.accounts import ensure_organization

        org = ensure_organization(session, name="Acme", slug="acme")
        session.add(LegalHold(organization_id=org.id, scope=HoldScope.ORGANIZATION, scope_id=org.id,
                              reason="audit by regulator", placed_by="counsel@acme.test"))
    report = purge(platform, NOW, operator=NIGHTLY)["classes"]["backups"]
    assert [h["item"] for h in report["held"]] == [f"backup:{older}"]
    assert any(s["reason"].startswith("newest restorable backup") for s in report["skipped"])
    assert _backup_ids(platform) == {only, older}


def test_incomplete_local_writes_are_swept_after_7_days(embedded: Platform) -> None:
    incoming = embedded.settings.root / "objects" / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    stale, fresh = incoming / "stale.tmp", incoming / "fresh.tmp"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"a put in progress")
    eight_days_ago = time.time() - 8 * 86_400
    os.utime(stale, (eight_days_ago, eight_days_ago))
    assert purge(embedded, dry_run=True, operator=NIGHTLY)["classes"]["temporary_files"]["skipped"]
    report = purge(embedded, operator=NIGHTLY)["classes"]["temporary_files"]
    assert report["purged"]["incomplete_uploads"] == 1
    assert not stale.exists() and fresh.exists()
    sessions = purge(embedded, operator=NIGHTLY)["classes"]["sessions"]
    assert sessions["purged"] == {} and "ttl=SESSION_TTL_SECONDS" in sessions["skipped"][0]["reason"]


@pytest.mark.parametrize("platform", ["production"], indirect=True)  # S3 only: the local case is above
def test_incomplete_multipart_uploads_are_aborted_after_7_days(platform: Platform) -> None:
    store: Any = platform.objects
    client = boto3.client("s3", endpoint_url=platform.settings.s3_endpoint_url, region_name="us-east-1")
    client.create_multipart_upload(Bucket=store.bucket, Key=f"{store.prefix}/uploads/big.bin")
    # The clock is set from the upload's own start: moto reports a fixed date in 2010 for every upload.
    (upload,) = client.list_multipart_uploads(Bucket=store.bucket)["Uploads"]
    soon, later = upload["Initiated"] + timedelta(days=2), upload["Initiated"] + timedelta(days=8)
    assert purge(platform, soon, operator=NIGHTLY)["classes"]["temporary_files"]["purged"]["incomplete_uploads"] == 0
    assert purge(platform, later, dry_run=True, operator=NIGHTLY)["classes"]["temporary_files"]["purged"] == {}
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    assert purge(platform, later, operator=NIGHTLY)["classes"]["temporary_files"]["purged"]["incomplete_uploads"] == 1
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


# -- the audit trail ---------------------------------------------------------------------------


def _checkpoint_verify_chain(db: Any) -> audit.ChainReport:
    """verify_chain as proposed for encaptio_data/audit.py (see the report): it starts from the
    checkpoint an audit.truncated entry records when the oldest entries were purged."""
    from encaptio_data.audit import GENESIS, ChainReport, entry_hash

    with db.session() as session:
        first = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq).limit(1)).first()
        expected_prev = GENESIS
        if first is not None and first.prev_hash != GENESIS:
            checkpoints = session.scalars(sa.select(AuditEntry.details).where(
                AuditEntry.action == "audit.truncated"))
            if any(c.get("genesis") == first.prev_hash and int(c.get("through_seq", -1)) < first.seq
                   for c in checkpoints):
                expected_prev = first.prev_hash
        count = 0
        for entry in session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000):
            count += 1
            if entry.prev_hash != expected_prev:
                return ChainReport(count, False, entry.seq, f"entry {entry.seq} does not follow the one before it "
                                                           "(an entry was removed or inserted)")
            recomputed = entry_hash(occurred_at=entry.occurred_at, actor=entry.actor, action=entry.action,
                                    organization_id=entry.organization_id, subject_ref=entry.subject_ref,
                                    target=entry.target, details=entry.details, prev_hash=entry.prev_hash)
            if recomputed != entry.hash:
                return ChainReport(count, False, entry.seq,
                                   f"entry {entry.seq} was edited (its hash no longer matches)")
            expected_prev = entry.hash
    return ChainReport(count, True)


def _append_at(platform: Platform, when: datetime, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> int:
    with monkeypatch.context() as patch:
        patch.setattr(audit, "utcnow", lambda: when)
        return audit.append(platform.db, actor="test", action="test.event", **kwargs)


def _seqs(platform: Platform) -> list[int]:
    with platform.db.session() as session:
        return list(session.scalars(sa.select(AuditEntry.seq).order_by(AuditEntry.seq)))


@pytest.fixture
def checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit module with truncation checkpoints: the real one once it has them, else the proposal above."""
    if not hasattr(audit, "TRUNCATION_ACTION"):
        monkeypatch.setattr(audit, "TRUNCATION_ACTION", "audit.truncated", raising=False)
        monkeypatch.setattr(audit, "verify_chain", _checkpoint_verify_chain)


def test_audit_entries_stay_while_the_audit_module_has_no_checkpoints(embedded: Platform,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(audit, "TRUNCATION_ACTION", raising=False)
    for days in (800, 700, 500):
        _append_at(embedded, NOW - timedelta(days=days), monkeypatch)
    report = purge(embedded, NOW, operator=NIGHTLY)["classes"]["audit_log"]
    assert report["purged"] == {} and "audit.py" in report["skipped"][-1]["reason"]
    assert report["skipped"][-1]["count"] == 3
    assert len(_seqs(embedded)) == 3 and audit.verify_chain(embedded.db).valid


@pytest.mark.usefixtures("checkpoints")
def test_audit_truncation_keeps_the_chain_verifiable(embedded: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    platform = embedded
    with platform.db.session() as session:
        from encaptio_data.accounts import ensure_organization

        enterprise = ensure_organization(session, name="Big", slug="big", tier=OrganizationTier.ENTERPRISE).id
    old = [_append_at(platform, NOW - timedelta(days=d), monkeypatch) for d in (900, 800)]
    kept_enterprise = _append_at(platform, NOW - timedelta(days=700), monkeypatch, organization_id=enterprise)
    blocked = _append_at(platform, NOW - timedelta(days=600), monkeypatch)
    recent = _append_at(platform, NOW - timedelta(days=5), monkeypatch)

    dry = purge(platform, NOW, dry_run=True, operator=NIGHTLY)["classes"]["audit_log"]
    assert dry["purged"] == {"entries": 2} and len(_seqs(platform)) == 5

    report = purge(platform, NOW, operator=NIGHTLY)["classes"]["audit_log"]
    assert report["purged"] == {"entries": 2}
    assert any(s["reason"].startswith("older than the shortest audit retention") and s["count"] == 1
               for s in report["skipped"])  # `blocked` waits behind the enterprise entry
    remaining = _seqs(platform)
    assert not set(old) & set(remaining) and {kept_enterprise, blocked, recent} <= set(remaining)
    assert audit.verify_chain(platform.db).valid
    assert purge(platform, NOW, operator=NIGHTLY)["classes"]["audit_log"]["purged"] == {}

    with platform.db.session() as session:  # tampering is still caught after a truncation
        session.execute(sa.delete(AuditEntry).where(AuditEntry.seq == blocked))
    assert not audit.verify_chain(platform.db).valid


@pytest.mark.usefixtures("checkpoints")
def test_a_hold_on_an_organization_stops_the_audit_truncation(embedded: Platform,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    platform = embedded
    box = new_box(platform, "audit")
    first = _append_at(platform, NOW - timedelta(days=900), monkeypatch)
    _append_at(platform, NOW - timedelta(days=800), monkeypatch, organization_id=box.organization_id)
    with platform.db.session() as session:
        session.add(LegalHold(organization_id=box.organization_id, scope=HoldScope.ORGANIZATION,
                              scope_id=box.organization_id, reason="records request", placed_by="counsel@acme.test"))
    report = purge(platform, NOW, operator=NIGHTLY)["classes"]["audit_log"]
    assert report["purged"] == {"entries": 1} and report["held"][0]["reason"] == "records request"
    assert first not in _seqs(platform) and audit.verify_chain(platform.db).valid
