"""Raw events past 90 days: aggregated first, deleted (legal holds kept), their day final afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from encaptio_data.analytics.aggregate import materialize_day, reconcile_day
from encaptio_data.analytics.retention import expire_raw_events
from encaptio_data.db.enums import HoldScope
from encaptio_data.db.models import (
    AnalyticsQuarantine,
    DailyEngagement,
    DailyEngagementRun,
    InteractionEvent,
    LegalHold,
)
from encaptio_data.platform import Platform
from tests.analytics.world import DAY, at, build_world


def test_old_days_are_aggregated_then_deleted_and_become_final(platform: Platform) -> None:
    world = build_world(platform)
    held_user = world.users[2]
    for i, user in enumerate(world.users[:3]):
        world.event(world.capsules[0], user, f"s{i}", "view", at(DAY, 9, i))
    world.event(world.capsules[0], world.users[4], "s-recent", "view", at(DAY + timedelta(days=60), 9))
    future = world.event(world.capsules[0], None, "s-future", "view", at(DAY + timedelta(days=400), 9))
    with platform.db.session() as s:
        s.add(LegalHold(organization_id=world.organization, scope=HoldScope.USER, scope_id=held_user,
                        reason="litigation", placed_by="counsel@analytica.test"))
    now = datetime.combine(DAY + timedelta(days=100), datetime.min.time(), UTC)

    report = expire_raw_events(platform, now=now)
    assert report.days_materialized == [DAY.isoformat()]  # never aggregated before: aggregated first
    assert report.days_purged == [DAY.isoformat()]
    assert report.events_deleted == 2 and report.events_held == 1
    assert report.quarantined_out_of_range == {"future_timestamp": 1}
    with platform.db.session() as s:
        assert s.scalars(sa.select(DailyEngagement.views).where(DailyEngagement.day == DAY)).one() == 3
        remaining = s.scalars(sa.select(InteractionEvent.user_id)).all()
        assert sorted(map(str, remaining), key=str) == sorted(map(str, [held_user, world.users[4], None]), key=str)
        assert s.get(DailyEngagementRun, DAY).raw_purged_at == now
        assert s.scalars(sa.select(AnalyticsQuarantine.event_id)).all() == [future]

    # The day is final: a backfill does not overwrite it with what little raw data is left.
    again = materialize_day(platform, DAY, now=now)
    assert again.frozen and again.events_aggregated == 3
    assert reconcile_day(platform.db, DAY)["passed"]
    # A second pass has nothing new to do.
    second = expire_raw_events(platform, now=now)
    assert (second.days_purged, second.events_deleted, second.quarantined_out_of_range) == ([], 0, {})
