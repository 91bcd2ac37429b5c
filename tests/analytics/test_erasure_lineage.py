"""An erasure reaches the analytics built from the subject's events: the day is flagged and rebuilt."""

from __future__ import annotations

from datetime import date

import dagster as dg
import sqlalchemy as sa

from encaptio_data.analytics.aggregate import materialize_day, reconcile_day, stale_days
from encaptio_data.assets.analytics import late_events_sensor
from encaptio_data.db.models import DailyEngagement
from encaptio_data.platform import Platform
from encaptio_data.privacy.erasure import erase_subject
from encaptio_data.resources import DatabaseResource
from tests.analytics.world import DAY, NOW, at, build_world


def _unique_users(platform: Platform) -> int:
    with platform.db.session() as s:
        return s.scalar(sa.select(sa.func.sum(DailyEngagement.unique_users)).where(DailyEngagement.day == DAY)) or 0


def test_an_erased_subject_leaves_the_daily_aggregates_through_the_lineage(platform: Platform) -> None:
    world = build_world(platform)
    for i in range(4):
        world.event(world.capsules[0], world.users[i], f"s{i}", "view", at(DAY, 9 + i))
    materialize_day(platform, DAY, now=NOW)
    assert _unique_users(platform) == 4 and DAY.isoformat() not in stale_days(platform.db, now=NOW)

    erase_subject(platform, world.users[0], actor="test")

    # The aggregates still count the subject: the day is flagged, its check fails until rebuilt.
    assert DAY.isoformat() in stale_days(platform.db, now=NOW)
    assert not reconcile_day(platform.db, DAY)["passed"]
    resources = {"database": DatabaseResource(data_dir=str(platform.settings.root),
                                              database_url=platform.settings.resolved_database_url)}
    with dg.build_sensor_context(resources=resources) as context:
        requested = {r.partition_key for r in late_events_sensor(context).run_requests}
    assert DAY.isoformat() in requested

    materialize_day(platform, date.fromisoformat(DAY.isoformat()), now=NOW)
    assert _unique_users(platform) == 3
    assert reconcile_day(platform.db, DAY)["passed"] and DAY.isoformat() not in stale_days(platform.db, now=NOW)
