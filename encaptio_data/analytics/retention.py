"""Retention of raw interaction events: past 90 days only the aggregates remain.

For every UTC day older than the cutoff that still has raw events, in order:

1. make sure the day's aggregates exist and are current (materialize it if it never was,
   or if its raw events changed since), because after step 2 they can never be rebuilt;
2. delete the day's raw events, except those under an active legal hold (a hold on the
   user, the capsule or the capsule's organization);
3. mark the day final (``raw_purged_at``), so a later backfill cannot overwrite its
   aggregates with the zeros an empty raw table would give.

Before that, events that no daily partition will ever read (timestamped in the future, or
more than two years back, on days never materialized) are quarantined with their reason:
retention must not be the place where bad events disappear without a trace.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from encaptio_data.analytics.aggregate import (
    FUTURE_SKEW,
    MAX_AGE,
    day_bounds,
    materialize_day,
    raw_event_counts,
)
from encaptio_data.db.enums import HoldScope
from encaptio_data.db.models import (
    AnalyticsQuarantine,
    Capsule,
    DailyEngagementRun,
    InteractionEvent,
    LegalHold,
)
from encaptio_data.platform import Platform

RAW_EVENT_RETENTION_DAYS = 90


@dataclass
class RetentionReport:
    cutoff: str
    days_materialized: list[str] = field(default_factory=list)
    days_purged: list[str] = field(default_factory=list)
    events_deleted: int = 0
    events_held: int = 0
    quarantined_out_of_range: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quarantine_out_of_range(platform: Platform, *, now: datetime) -> dict[str, int]:
    """Quarantine events in the future or beyond the maximum age whose day was never materialized."""
    db = platform.db
    events = InteractionEvent.__table__.c
    materialized = sa.select(DailyEngagementRun.day)
    already = sa.select(AnalyticsQuarantine.event_id)
    found: dict[str, int] = {}
    for reason, condition, detail in (
        ("future_timestamp", events.occurred_at > now + FUTURE_SKEW,
         f"occurred more than {int(FUTURE_SKEW.total_seconds() // 60)} minutes after the run's clock"),
        ("stale_timestamp", events.occurred_at < now - MAX_AGE,
         f"occurred more than {MAX_AGE.days} days before the run's clock"),
    ):
        with db.session() as session:
            rows = session.execute(sa.select(InteractionEvent.id, InteractionEvent.capsule_id,
                                             InteractionEvent.event_type, InteractionEvent.occurred_at)
                                   .where(condition, InteractionEvent.id.not_in(already))).all()
            owned = set(session.scalars(materialized))  # a materialized day's quarantine belongs to its run
            fresh = [r for r in rows if r.occurred_at.date() not in owned]
            if fresh:
                session.execute(sa.insert(AnalyticsQuarantine), [
                    {"id": uuid.uuid4(), "event_id": r.id, "day": r.occurred_at.date(), "capsule_id": r.capsule_id,
                     "event_type": str(r.event_type.value), "reason": reason, "detail": detail,
                     "occurred_at": r.occurred_at, "quarantined_at": now} for r in fresh])
        if fresh:
            found[reason] = len(fresh)
    return found


def _held(session: sa.orm.Session) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """(users, capsules) whose events an active legal hold keeps."""
    holds = session.execute(sa.select(LegalHold.scope, LegalHold.scope_id).where(LegalHold.released_at.is_(None))).all()
    users = {scope_id for scope, scope_id in holds if scope == HoldScope.USER}
    capsules = {scope_id for scope, scope_id in holds if scope == HoldScope.CAPSULE}
    organizations = {scope_id for scope, scope_id in holds if scope == HoldScope.ORGANIZATION}
    if organizations:
        capsules |= set(session.scalars(sa.select(Capsule.id).where(Capsule.organization_id.in_(organizations))))
    return users, capsules


def finalize_old_days(platform: Platform, *, now: datetime | None = None,
                      retain_days: int = RAW_EVENT_RETENTION_DAYS) -> RetentionReport:
    """Steps 0 and 1 alone: quarantine unreachable events, and bring every day older than
    ``retain_days`` that still has raw events to current aggregates. Deletes nothing, so a
    purge that only deletes days whose aggregates are current can run after it."""
    now = now or datetime.now(UTC)
    cutoff = now.date() - timedelta(days=retain_days)
    report = RetentionReport(cutoff=cutoff.isoformat())
    report.quarantined_out_of_range = quarantine_out_of_range(platform, now=now)
    counts = raw_event_counts(platform.db, end=cutoff)
    with platform.db.session() as session:
        runs = {r.day: (r.events_read, r.raw_purged_at) for r in session.scalars(sa.select(DailyEngagementRun))}
    for day, count in sorted(counts.items()):
        events_read, purged_at = runs.get(day, (None, None))
        if purged_at is None and events_read != count:
            materialize_day(platform, day, now=now)
            report.days_materialized.append(day.isoformat())
    return report


def expire_raw_events(platform: Platform, *, now: datetime | None = None,
                      retain_days: int = RAW_EVENT_RETENTION_DAYS) -> RetentionReport:
    """Aggregate, then delete, raw events older than ``retain_days`` (whole UTC days)."""
    now = now or datetime.now(UTC)
    report = finalize_old_days(platform, now=now, retain_days=retain_days)
    db = platform.db
    for day in sorted(raw_event_counts(db, end=date.fromisoformat(report.cutoff))):
        start, end = day_bounds(day)
        with db.session() as session:
            users, capsules = _held(session)
            in_day = sa.and_(InteractionEvent.occurred_at >= start, InteractionEvent.occurred_at < end)
            keep = sa.or_(InteractionEvent.user_id.in_(users) if users else sa.false(),
                          InteractionEvent.capsule_id.in_(capsules) if capsules else sa.false())
            deleted = session.execute(sa.delete(InteractionEvent).where(in_day, sa.not_(keep))).rowcount or 0
            held = session.scalar(sa.select(sa.func.count()).select_from(InteractionEvent).where(in_day)) or 0
            run = session.get(DailyEngagementRun, day)
            newly_final = run is not None and run.raw_purged_at is None
            if newly_final:
                run.raw_purged_at = now
                run.details = {**run.details, "events_held_at_purge": int(held)}
        report.events_deleted += int(deleted)
        report.events_held += int(held)
        if deleted or newly_final:
            report.days_purged.append(day.isoformat())
    return report
