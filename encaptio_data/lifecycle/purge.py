"""Purge: whatever is past its retention leaves every store it is in.

One pass per data class (``lifecycle.retention.DataClass``), each reporting what it purged,
what a legal hold kept (with the hold) and what it left for another reason. A dry run
computes the same report and changes nothing.

Order matters for crash safety, as in erasure: everything outside the database (object
versions, LanceDB rows, archived rows, cache keys) is located from rows we still hold, so
the external stores are cleaned first and the rows removed last, in one transaction with
their audit entry. A crash anywhere leaves the rows; the re-run finds the same candidates,
repeats the (idempotent) external deletions and finishes.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from encaptio_data import audit, authz
from encaptio_data.authz import Permission, Principal
from encaptio_data.analytics.aggregate import day_bounds, day_expression, raw_event_counts
from encaptio_data.content.pipeline import invalidate_search_cache
from encaptio_data.content.uploads import UPLOADS_PREFIX
from encaptio_data.db.enums import BackupStatus, HoldScope, OrganizationTier, RetentionAction
from encaptio_data.db.models import (
    AuditEntry,
    Backup,
    Capsule,
    Content,
    DailyEngagement,
    DailyEngagementRun,
    DailyTopQuery,
    Interaction,
    InteractionEvent,
    PiiScanState,
    User,
    utcnow,
)
from encaptio_data.errors import ObjectNotFoundError
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle import archive
from encaptio_data.lifecycle.retention import DataClass, Hold, Holds, Policies, Tally
from encaptio_data.platform import Platform
from encaptio_data.privacy.access import EXPIRES_FIELD, EXPORTS_PREFIX
from encaptio_data.privacy.erasure import purge_vectors
from encaptio_data.privacy.subjects import subject_ref
from encaptio_data.search.index import open_chunks_table
from encaptio_data.stores.objects import ObjectStore

ACTOR = "retention"
BACKUPS_PREFIX = "backups/"
RESTORABLE = {BackupStatus.SUCCEEDED.value, BackupStatus.VERIFIED.value}


@dataclass
class ClassReport(Tally):
    data_class: str
    purged: Counter[str] = field(default_factory=Counter)
    held: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"purged": dict(self.purged), "held": self.held, "skipped": self.skipped}


def _value_set(ids: Iterable[uuid.UUID]) -> pa.Array:
    return pa.array(sorted(str(i) for i in ids), pa.string())


def purge(platform: Platform, now: datetime | None = None, *, dry_run: bool = False,
          operator: Principal | str | None = None) -> dict[str, Any]:
    """Purge every data class past its retention; safe to re-run after a crash at any point.

    The operator needs run_purge (platform-wide: admins, and the nightly job as system:dagster).
    A dry run changes nothing and needs no permission: it shows what `retention show` and the
    compliance report already show.
    """
    now = now or utcnow()
    actor = ACTOR if dry_run else authz.authorize(platform, operator, Permission.RUN_PURGE).actor
    with platform.db.session() as session:
        policies, holds = Policies.load(session), Holds.load(session)
    reports = [
        _soft_deleted(platform, policies, holds, now, dry_run, actor),
        _raw_events(platform, policies, holds, now, dry_run, actor),
        _analytics(platform, policies, holds, now, dry_run, actor),
        _backups(platform, policies, holds, now, dry_run, actor),
        _temporary_files(platform, policies, now, dry_run),
        _expired_exports(platform, policies, holds, now, dry_run, actor),
        _sessions(),
        # Last: the entries the passes above wrote are the newest and never in the truncated prefix.
        _audit_log(platform, policies, holds, now, dry_run, actor),
    ]
    return {
        "now": now.isoformat(), "dry_run": dry_run,
        "classes": {r.data_class: r.as_dict() for r in reports},
        "totals": {"purged": sum(sum(r.purged.values()) for r in reports),
                   "held": sum(len(r.held) for r in reports)},
    }


# -- soft-deleted capsules and content --------------------------------------------------------


def _object_deletions(objects: ObjectStore, deletions: dict[str, set[str | None]], dry_run: bool) -> int:
    """key → versions to erase (None: every version). Returns how many versions went (or would)."""
    removed = 0
    for key, versions in sorted(deletions.items()):
        if None in versions:
            if dry_run:
                removed += sum(1 for v in objects.list_versions(key) if v.key == key)
            else:
                removed += objects.delete_all_versions(key)
            continue
        for version_id in sorted(v for v in versions if v is not None):
            try:
                objects.head(key, version_id)
            except ObjectNotFoundError:
                continue
            if not dry_run:
                objects.delete(key, version_id)
            removed += 1
    return removed


def _vector_rows(platform: Platform, content_ids: list[uuid.UUID]) -> int:
    from encaptio_data.errors import NotFoundError

    try:
        table = open_chunks_table(platform.vectors, create=False)
    except NotFoundError:
        return 0
    # Content ids are UUIDs we generated, so their text form is safe inside the filter.
    return sum(table.count_rows(f"content_id IN ({', '.join(repr(str(i)) for i in ids)})")
               for ids in archive.batched(content_ids))


def _soft_deleted(platform: Platform, policies: Policies, holds: Holds, now: datetime, dry_run: bool,
                  actor: str) -> ClassReport:
    report = ClassReport(DataClass.SOFT_DELETED.value)
    db = platform.db
    with db.session() as session:
        capsules = session.execute(sa.select(Capsule.id, Capsule.organization_id, Capsule.owner_id,
                                             Capsule.deleted_at)).all()
        content = session.execute(sa.select(Content.id, Content.capsule_id, Content.organization_id,
                                            Content.uploaded_by, Content.deleted_at, Content.object_key,
                                            Content.object_version)).all()
        held_users = holds.ids(HoldScope.USER)
        visitors: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        if held_users:
            # A held person's interactions with a capsule would go with it (foreign keys cascade).
            for capsule_id, user_id in session.execute(sa.select(Interaction.capsule_id, Interaction.user_id)
                                                       .where(Interaction.user_id.in_(held_users)).distinct()):
                visitors[capsule_id].add(user_id)

    def expired(organization_id: uuid.UUID, deleted_at: datetime) -> bool:
        return deleted_at <= policies.get(DataClass.SOFT_DELETED, organization_id).cutoff(now)

    owner_of = {c.id: c.owner_id for c in capsules}
    by_capsule: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for item in content:
        by_capsule[item.capsule_id].append(item)
    doomed_capsules, doomed_content, settled = [], [], set()
    for capsule in (c for c in capsules if c.deleted_at is not None):
        if not expired(capsule.organization_id, capsule.deleted_at):
            # Its content still gets its own turn below: what was deleted earlier on its own expires earlier.
            report.skip("capsule within its recovery window")
            continue
        settled.add(capsule.id)
        items = by_capsule[capsule.id]
        hold = holds.find(content=[i.id for i in items], capsule=[capsule.id],
                          user=[capsule.owner_id, *(i.uploaded_by for i in items), *visitors[capsule.id]],
                          organization=[capsule.organization_id])
        if hold is not None:
            report.hold(f"capsule:{capsule.id}", hold)
            continue
        doomed_capsules.append(capsule)
        doomed_content += items
    for item in content:
        if item.deleted_at is None or item.capsule_id in settled:
            continue
        if not expired(item.organization_id, item.deleted_at):
            report.skip("content within its recovery window")
            continue
        hold = holds.find(content=[item.id], capsule=[item.capsule_id],
                          user=[item.uploaded_by, owner_of.get(item.capsule_id)], organization=[item.organization_id])
        if hold is not None:
            report.hold(f"content:{item.id}", hold)
            continue
        doomed_content.append(item)
    if not doomed_content and not doomed_capsules:
        return report

    content_ids = [item.id for item in doomed_content]
    doomed_ids = set(content_ids)
    capsule_ids = {c.id for c in doomed_capsules}
    # Rows share a key only as versions of one upload: a version a surviving row points at must stay.
    surviving_keys = {item.object_key for item in content if item.id not in doomed_ids}
    deletions: dict[str, set[str | None]] = defaultdict(set)
    for item in doomed_content:
        deletions[item.object_key].add(item.object_version if item.object_key in surviving_keys else None)
    for capsule in doomed_capsules:
        # Uploads never registered as content (rejected, or not yet picked up) go with the capsule.
        for version in platform.objects.list_versions(f"{UPLOADS_PREFIX}{capsule.organization_id}/{capsule.id}/"):
            deletions[version.key].add(None)
    report.purged["capsules"] = len(doomed_capsules)
    report.purged["content"] = len(doomed_content)
    report.purged["object_versions"] = _object_deletions(platform.objects, deletions, dry_run)
    if capsule_ids:
        report.purged["archived_rows"] = archive.erase_from_archive(platform.objects, capsule_ids=capsule_ids,
                                                                    dry_run=dry_run)
    touched = {(item.organization_id, item.capsule_id) for item in doomed_content}
    touched |= {(c.organization_id, c.id) for c in doomed_capsules}
    if dry_run:
        report.purged["vector_rows"] = _vector_rows(platform, content_ids)
        return report
    # Soft deletion already took the rows out of LanceDB; this makes it physical (compaction and
    # cleanup of old versions), so no data file or version still holds the text.
    report.purged["vector_rows"] = purge_vectors(platform, content_ids)
    report.purged["cache_keys"] = invalidate_search_cache(platform.cache, touched)

    with db.session() as session:
        for ids in archive.batched(content_ids):
            session.execute(sa.delete(Content).where(Content.id.in_(ids)))
            session.execute(sa.delete(PiiScanState).where(PiiScanState.source == "content",
                                                          PiiScanState.source_key.in_([i.hex for i in ids])))
        for ids in archive.batched(sorted(capsule_ids)):
            session.execute(sa.delete(Capsule).where(Capsule.id.in_(ids)))
        for capsule in doomed_capsules:
            # Ids only: restore_capsule reads this to tell "purged" from "never existed".
            audit.append_in(session, actor=actor, action="capsule.purged", organization_id=capsule.organization_id,
                            target=str(capsule.id), details={"deleted_at": capsule.deleted_at.isoformat()})
        audit.append_in(session, actor=actor, action="retention.purged",
                        details={"data_class": report.data_class, **report.purged})
    db.compact_deleted()
    return report


# -- raw interaction events -------------------------------------------------------------------


def _raw_events(platform: Platform, policies: Policies, holds: Holds, now: datetime, dry_run: bool,
                actor: str) -> ClassReport:
    report = ClassReport(DataClass.RAW_EVENTS.value)
    db = platform.db
    with db.session() as session:
        organization_of = {k: v for k, v in session.execute(sa.select(Capsule.id, Capsule.organization_id))}
        runs = {r.day: (r.events_read, r.raw_purged_at) for r in session.scalars(sa.select(DailyEngagementRun))}
    cutoff_of = {org: policies.get(DataClass.RAW_EVENTS, org).day_cutoff(now) for org in set(organization_of.values())}
    groups: dict[datetime, list[uuid.UUID]] = defaultdict(list)
    for capsule_id, org in organization_of.items():
        groups[cutoff_of[org]].append(capsule_id)
    held_users = holds.ids(HoldScope.USER)
    held_capsules = holds.ids(HoldScope.CAPSULE) | {c for c, o in organization_of.items()
                                                    if o in holds.ids(HoldScope.ORGANIZATION)}
    totals = raw_event_counts(db, end=max(groups).date()) if groups else {}
    day = day_expression(db).label("day")
    deleted_total = 0
    for cutoff, capsule_ids in sorted(groups.items()):
        # One group (every organization on the same policy) needs no capsule filter at all.
        scope = InteractionEvent.capsule_id.in_(capsule_ids) if len(groups) > 1 else sa.true()
        with db.engine.connect() as conn:
            counts = {date.fromisoformat(d): int(n) for d, n in conn.execute(
                sa.select(day, sa.func.count()).select_from(InteractionEvent.__table__)
                .where(scope, InteractionEvent.occurred_at < cutoff).group_by(day))}
        for event_day, count in sorted(counts.items()):
            events_read, purged_at = runs.get(event_day, (None, None))
            if events_read is None:
                report.skip("day not aggregated yet: its raw events stay until daily_engagement has it", count)
                continue
            if purged_at is None and events_read != totals.get(event_day):
                report.skip("day's aggregate is stale (events changed since): waiting for its re-aggregation", count)
                continue
            start, end = day_bounds(event_day)
            in_day = sa.and_(scope, InteractionEvent.occurred_at >= start, InteractionEvent.occurred_at < end)
            keep = sa.or_(InteractionEvent.user_id.in_(held_users) if held_users else sa.false(),
                          InteractionEvent.capsule_id.in_(held_capsules) if held_capsules else sa.false())
            with db.session() as session:
                kept = session.execute(sa.select(InteractionEvent.user_id, InteractionEvent.capsule_id,
                                                 sa.func.count()).where(in_day, keep)
                                       .group_by(InteractionEvent.user_id, InteractionEvent.capsule_id)).all()
                for user_id, capsule_id, n in kept:
                    hold = holds.find(capsule=[capsule_id], user=[user_id],
                                      organization=[organization_of.get(capsule_id)])
                    if hold is not None:
                        report.hold(f"interaction_events:{event_day.isoformat()}", hold, n)
                if dry_run:
                    report.purged["events"] += count - sum(n for *_, n in kept)
                    continue
                deleted = session.execute(sa.delete(InteractionEvent).where(in_day, sa.not_(keep))).rowcount or 0
                run = session.get(DailyEngagementRun, event_day)
                if run is not None and run.raw_purged_at is None:
                    # The raw rows are gone: the aggregates are final, a backfill must not rebuild them.
                    run.raw_purged_at = now
            report.purged["events"] += deleted
            deleted_total += deleted

    # The same whole-day cutoffs for the rows the archive holds (the retention clock runs on there).
    org_cutoffs = {str(org): c for org, c in cutoff_of.items()}
    default_cutoff = policies.get(DataClass.RAW_EVENTS).day_cutoff(now)
    held_values = [(column, _value_set(ids)) for column, ids in (
        ("user_id", held_users), ("capsule_id", held_capsules),
        ("organization_id", holds.ids(HoldScope.ORGANIZATION)))]

    def expired_archived(table: pa.Table) -> pa.Array:
        occurred = table.column("occurred_at")
        cutoffs = [org_cutoffs.get(o, default_cutoff) for o in table.column("organization_id").to_pylist()]
        expired = pc.less(occurred, pa.array(cutoffs, occurred.type))
        held = functools.reduce(pc.or_, [pc.is_in(table.column(c), value_set=v) for c, v in held_values])
        held = pc.and_(expired, pc.fill_null(held, False))
        for row in table.filter(held).select(["capsule_id", "user_id", "organization_id"]).to_pylist():
            hold = holds.find(capsule=[uuid.UUID(row["capsule_id"])],
                              user=[uuid.UUID(row["user_id"]) if row["user_id"] else None],
                              organization=[uuid.UUID(row["organization_id"])])
            if hold is not None:
                report.hold("archive:interaction_events", hold)
        return pc.and_(expired, pc.invert(held))

    report.purged["archived_events"] = archive.remove_rows(platform.objects, archive.EVENTS.name, expired_archived,
                                                           dry_run=dry_run)
    if not dry_run and (deleted_total or report.purged["archived_events"]):
        audit.append(db, actor=actor, action="retention.purged",
                     details={"data_class": report.data_class, **report.purged})
    return report


# -- analytics aggregates whose policy action is delete ---------------------------------------


def _analytics(platform: Platform, policies: Policies, holds: Holds, now: datetime, dry_run: bool,
               actor: str) -> ClassReport:
    report = ClassReport(DataClass.ANALYTICS.value)
    db = platform.db
    with db.session() as session:
        organization_of = {k: v for k, v in session.execute(sa.select(Capsule.id, Capsule.organization_id))}
    capsules_of: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for capsule_id, org in organization_of.items():
        capsules_of[org].append(capsule_id)
    for org in sorted(capsules_of):
        policy = policies.get(DataClass.ANALYTICS, org)
        cutoff = policy.cutoff(now).date()
        expired = sa.and_(DailyEngagement.organization_id == org, DailyEngagement.day < cutoff)
        with db.session() as session:
            rows = session.execute(sa.select(DailyEngagement.capsule_id, sa.func.count()).where(expired)
                                   .group_by(DailyEngagement.capsule_id)).all()
            if not rows:
                continue
            if policy.action != RetentionAction.DELETE.value:
                reason = ("action archive: archive_job moves them to archive/"
                          if policy.action == RetentionAction.ARCHIVE.value
                          else f"action {policy.action} does not apply to analytics aggregates")
                report.skip(reason, sum(n for _, n in rows))
                continue
            held = set()
            for capsule_id, n in rows:
                hold = holds.find(capsule=[capsule_id], organization=[org])
                if hold is not None:
                    held.add(capsule_id)
                    report.hold(f"daily_engagement:organization:{org}", hold, n)
            doomed = [c for c, _ in rows if c not in held]
            if not doomed:
                continue
            if dry_run:
                report.purged["daily_engagement"] += sum(n for c, n in rows if c not in held)
                continue
            for ids in archive.batched(doomed):
                report.purged["daily_engagement"] += session.execute(
                    sa.delete(DailyEngagement).where(expired, DailyEngagement.capsule_id.in_(ids))).rowcount or 0
                report.purged["daily_top_queries"] += session.execute(
                    sa.delete(DailyTopQuery).where(DailyTopQuery.day < cutoff, DailyTopQuery.capsule_id.in_(ids))
                ).rowcount or 0
    deleting = {str(org): policy.cutoff(now).date() for org in capsules_of
                if (policy := policies.get(DataClass.ANALYTICS, org)).action == RetentionAction.DELETE.value}
    if deleting:
        held_orgs = {str(o) for o in holds.ids(HoldScope.ORGANIZATION)}
        held_capsules = _value_set(holds.ids(HoldScope.CAPSULE))

        def expired_archived(table: pa.Table) -> pa.Array:
            orgs = table.column("organization_id").to_pylist()
            cutoffs = pa.array([deleting.get(o) for o in orgs], pa.date32())
            mask = pc.fill_null(pc.less(table.column("day"), cutoffs), False)
            held = pc.or_(pc.is_in(table.column("capsule_id"), value_set=held_capsules),
                          pa.array([o in held_orgs for o in orgs]))
            return pc.and_(mask, pc.invert(held))

        for name in (archive.ENGAGEMENT.name, archive.TOP_QUERIES.name):
            report.purged[f"archived_{name}"] += archive.remove_rows(platform.objects, name, expired_archived,
                                                                     dry_run=dry_run)
    if any(report.purged.values()) and not dry_run:
        audit.append(db, actor=actor, action="retention.purged",
                     details={"data_class": report.data_class, **report.purged})
    return report


# -- backups ----------------------------------------------------------------------------------


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _backup_keys(objects: ObjectStore, backup: dict[str, Any], stored: list[str]) -> list[str]:
    """The objects of a backup: what its location and manifest name under backups/, and every key
    there carrying its id (the backup module names each file of a backup after it). A pgBackRest
    repository is not among them: pgBackRest expires it by its own repo*-retention-full."""
    references = set()
    for ref in [backup["location"] or "", *_strings(backup["manifest"])]:
        ref = ref.removeprefix(objects.uri.rstrip("/") + "/")
        if ref.startswith(BACKUPS_PREFIX):
            references.add(ref)
    return sorted(key for key in stored if backup["id"] in key or key in references
                  or any(key.startswith(ref.rstrip("/") + "/") for ref in references))


def _backups(platform: Platform, policies: Policies, holds: Holds, now: datetime, dry_run: bool,
             actor: str) -> ClassReport:
    from encaptio_data.lifecycle.backup import list_backups

    report = ClassReport(DataClass.BACKUPS.value)
    cutoff = policies.get(DataClass.BACKUPS).cutoff(now)
    # The backup module's catalog: the rows, plus SQLite backups only the object store still knows.
    backups = list_backups(platform)
    newest: dict[str, str] = {}
    for backup in backups:
        if backup["status"] in RESTORABLE:
            newest.setdefault(backup["store"], backup["id"])
    old = {b["id"]: b for b in backups if b["started_at"] < cutoff}
    for backup_id in set(newest.values()) & set(old):
        report.skip("newest restorable backup of its store (a rolling window never ends with none)")
        del old[backup_id]
    kept = [b for b in backups if b["id"] not in old]
    # A backup that a kept one builds on (an incremental's base) is kept too, transitively.
    changed = True
    while changed:
        changed = False
        texts = [json.dumps(b["manifest"], default=str) + (b["location"] or "") for b in kept]
        for backup_id, backup in list(old.items()):
            if any(backup_id in text for text in texts):
                report.skip("base of a backup that is kept")
                kept.append(old.pop(backup_id))
                changed = True
    # Backups are whole-platform copies: whatever a hold protects is in every one of them.
    hold = holds.first()
    if hold is not None:
        for backup_id in old:
            report.hold(f"backup:{backup_id}", hold)
        return report
    if not old:
        return report
    stored = sorted({v.key for v in platform.objects.list_versions(BACKUPS_PREFIX)})
    keys = {key for backup in old.values() for key in _backup_keys(platform.objects, backup, stored)}
    report.purged["backups"] = len(old)
    report.purged["object_versions"] = _object_deletions(platform.objects, {key: {None} for key in keys}, dry_run)
    if dry_run:
        return report
    with platform.db.session() as session:
        ids = [uuid.UUID(backup_id) for backup_id in old]
        session.execute(sa.delete(Backup).where(Backup.id.in_(ids)))
        audit.append_in(session, actor=actor, action="retention.purged",
                        details={"data_class": report.data_class, **report.purged, "ids": sorted(old)})
    return report


# -- delivered exports behind expired links ---------------------------------------------------


def export_owner(key: str) -> uuid.UUID | None:
    """The organization of a stored export, from its key: exports/<org>/<request>.zip[.enc] (access
    exports) or exports/organizations/<org>/<export>.zip[.enc] (organization exports)."""
    parts = key.removeprefix(EXPORTS_PREFIX).split("/")
    if parts and parts[0] == "organizations":
        parts = parts[1:]
    try:
        return uuid.UUID(parts[0]) if len(parts) == 2 else None
    except ValueError:
        return None


def _expired_exports(platform: Platform, policies: Policies, holds: Holds, now: datetime, dry_run: bool,
                     actor: str) -> ClassReport:
    """Every version of a stored export whose link has expired: the one path for access exports
    (privacy/access.py) and organization exports (portability/links.py). The expiry is the
    ``expires-at`` stamped on the object when it was stored, else its first version's time plus
    the link lifetime; a shorter exports policy takes over when it ends sooner."""
    report = ClassReport(DataClass.EXPORTS.value)
    versions: dict[str, list[Any]] = defaultdict(list)
    for version in platform.objects.list_versions(EXPORTS_PREFIX):
        versions[version.key].append(version)
    doomed: list[str] = []
    for key, stored in sorted(versions.items()):
        organization_id = export_owner(key)
        if organization_id is None:
            report.skip("not a stored export (unexpected key under exports/)")
            continue
        policy = policies.get(DataClass.EXPORTS, organization_id)
        due = min(v.last_modified for v in stored) + timedelta(days=policy.retain_days)
        stamped = next((v.metadata.get(EXPIRES_FIELD) for v in stored if v.metadata.get(EXPIRES_FIELD)), None)
        if stamped:
            due = min(due, datetime.fromisoformat(stamped))
        if now < due:
            report.skip("link not expired yet")
            continue
        subject = next((v.metadata.get("subject") for v in stored if v.metadata.get("subject")), None)
        hold = holds.find(user=[uuid.UUID(subject)] if subject else [], organization=[organization_id])
        if hold is not None:
            report.hold(f"export:{key.removesuffix('.enc')}", hold)  # the sealed and the plain copy: one export
            continue
        doomed.append(key)
    if not doomed:
        return report
    report.purged["exports"] = len({key.removesuffix(".enc") for key in doomed})
    report.purged["object_versions"] = _object_deletions(platform.objects, {key: {None} for key in doomed}, dry_run)
    if not dry_run:
        audit.append(platform.db, actor=actor, action="retention.purged",
                     details={"data_class": report.data_class, **report.purged})
    return report


# -- temporary files and sessions -------------------------------------------------------------


def _temporary_files(platform: Platform, policies: Policies, now: datetime, dry_run: bool) -> ClassReport:
    from encaptio_data.lifecycle.replica import abort_stale_multipart

    report = ClassReport(DataClass.TEMPORARY_FILES.value)
    if dry_run:
        report.skip("dry run: incomplete uploads are counted only as they are aborted or swept")
        return report
    # The replica job calls the same function for the replica; on the local store it sweeps
    # interrupted writes by file age (the file system's clock, not `now`).
    max_age = timedelta(days=policies.get(DataClass.TEMPORARY_FILES).retain_days)
    result = abort_stale_multipart(platform.objects, max_age, now=now)
    if not result["supported"]:
        report.skip(f"object store {result['store']} offers no way to find incomplete uploads")
    report.purged["incomplete_uploads"] = result["aborted"]
    return report


def _sessions() -> ClassReport:
    report = ClassReport(DataClass.SESSIONS.value)
    report.skip("sessions live only in the cache, written with ttl=SESSION_TTL_SECONDS: the cache expires them")
    return report


# -- the audit trail --------------------------------------------------------------------------


def _audit_log(platform: Platform, policies: Policies, holds: Holds, now: datetime, dry_run: bool,
               actor: str) -> ClassReport:
    """Truncate the oldest entries: a hash chain can lose a prefix (with a checkpoint), never a middle."""
    report = ClassReport(DataClass.AUDIT_LOG.value)
    db = platform.db
    held_refs: dict[str, Hold] = {}
    with db.session() as session:
        user_holds = holds.ids(HoldScope.USER)
        if user_holds:
            keys = KeyStore(platform.settings.keys_dir)
            for user in session.scalars(sa.select(User).where(User.id.in_(user_holds))):
                held_refs[subject_ref(keys, user.organization_id, user.email)] = holds.by_scope[HoldScope.USER][user.id]
        last: AuditEntry | None = None
        count = 0
        stop = None
        for entry in session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000):
            if entry.occurred_at >= policies.get(DataClass.AUDIT_LOG, entry.organization_id).cutoff(now):
                stop = entry
                break
            hold = holds.find(organization=[entry.organization_id]) or held_refs.get(entry.subject_ref or "")
            if hold is not None:
                report.hold(f"audit_log:{entry.seq}", hold)
                stop = entry
                break
            last, count = entry, count + 1
        if stop is not None:
            shortest = min(policies.get(DataClass.AUDIT_LOG, tier=t).retain_days for t in OrganizationTier)
            blocked = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
                AuditEntry.seq > stop.seq, AuditEntry.occurred_at < now - timedelta(days=shortest))) or 0
            report.skip("older than the shortest audit retention but after an entry that must stay (a hash chain "
                        "is truncated from its start only)", blocked)
    if last is None:
        return report
    truncation = getattr(audit, "TRUNCATION_ACTION", None)
    if truncation is None:
        report.skip("encaptio_data/audit.py: verify_chain does not honour truncation checkpoints yet, so no entry "
                    "is purged", count)
        return report
    report.purged["entries"] = count
    if dry_run:
        return report
    with db.session() as session:
        # The checkpoint goes in first (it links to the current tail), then the prefix goes; its
        # hash becomes the genesis the chain is verified from.
        audit.append_in(session, actor=actor, action=truncation,
                        details={"through_seq": last.seq, "genesis": last.hash, "entries": count,
                                 "through": last.occurred_at.isoformat()})
        session.execute(sa.delete(AuditEntry).where(AuditEntry.seq <= last.seq))
    return report
