"""The analytics assets run in Dagster against the real resources, checks included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from encaptio_data.analytics.aggregate import event_days, materialize_day
from encaptio_data.assets import analytics
from encaptio_data.corpus import CorpusSpec
from encaptio_data.demo import seed_demo
from encaptio_data.platform import Platform
from encaptio_data.resources import CacheResource, DatabaseResource, ObjectStoreResource
from tests.analytics.world import DAY, at, build_world

MONDAY = datetime(2026, 10, 5, tzinfo=UTC)  # seven demo days from here are one complete ISO week


def _resources(platform: Platform) -> dict[str, dg.ConfigurableResource]:
    settings = platform.settings
    data_dir = str(settings.data_dir)
    return {
        "database": DatabaseResource(data_dir=data_dir, database_url=settings.database_url),
        "object_store": ObjectStoreResource(data_dir=data_dir, object_store=settings.object_store,
                                            s3_endpoint_url=settings.s3_endpoint_url),
        "cache": CacheResource(data_dir=data_dir, redis_url=settings.redis_url),
    }


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str]]:
    return {e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()}


def test_daily_engagement_partition_materializes_with_its_checks(platform: Platform,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCAPTIO_CACHE_NAMESPACE", platform.settings.cache_namespace)
    world = build_world(platform)
    for i, user in enumerate(world.users[:6]):
        world.event(world.capsules[0], user, f"s{i}", "view", at(DAY, 9, i))
    world.event(world.capsules[0], None, "bad", "dwell", at(DAY, 10), {"seconds": -1})
    result = dg.materialize([analytics.interaction_events, analytics.daily_engagement], partition_key=DAY.isoformat(),
                            instance=dg.DagsterInstance.ephemeral(), resources=_resources(platform),
                            selection=[analytics.daily_engagement])
    assert result.success
    materialization = result.asset_materializations_for_node("daily_engagement")[0]
    metadata = materialization.metadata
    assert metadata["views"].value == 6 and metadata["events_quarantined"].value == 1
    assert metadata["quarantine_reasons"].value == {"malformed_payload": 1}
    chart = metadata["views_per_day"].value
    assert chart.startswith("![") and "data:image/png;base64," in chart and len(chart) < 40_000
    assert _checks(result) == {analytics.AGGREGATES_RECONCILE: (True, "ERROR"),
                               analytics.LIVE_VIEWS_RECONCILE: (True, "WARN")}


def test_privacy_assets_run_on_the_demo_corpus(embedded_platform: Platform) -> None:
    platform = embedded_platform
    seed_demo(platform, CorpusSpec(organizations=1, users_per_organization=6, capsules_per_organization=2,
                                   files_per_capsule=1, events_per_capsule=120, days=7, start=MONDAY))
    days = event_days(platform.db)
    for day in days:
        materialize_day(platform, date.fromisoformat(day))
    result = dg.materialize(
        [analytics.interaction_events, analytics.daily_engagement, analytics.anonymized_analytics,
         analytics.engagement_export, analytics.pii_findings, analytics.interaction_event_retention],
        selection=[analytics.anonymized_analytics, analytics.engagement_export, analytics.pii_findings,
                   analytics.interaction_event_retention],
        instance=dg.DagsterInstance.ephemeral(), resources=_resources(platform))
    assert result.success
    checks = _checks(result)
    assert checks[analytics.K_ANONYMITY_MEASURED] == (True, "ERROR")
    assert analytics.NO_UNDECLARED_PII in checks
    release = result.asset_materializations_for_node("anonymized_analytics")[0].metadata
    assert release["new_releases"].value >= 1 and release["epsilon_spent"].value > 0
    export = result.asset_materializations_for_node("engagement_export")[0].metadata
    assert export["k"].value == 5 and (export["rows"].value == 0 or export["min_group_size"].value >= 5)
    # A re-run re-publishes the same releases and spends nothing.
    again = dg.materialize([analytics.daily_engagement, analytics.anonymized_analytics],
                           selection=[analytics.anonymized_analytics], instance=dg.DagsterInstance.ephemeral(),
                           resources=_resources(platform))
    assert again.asset_materializations_for_node("anonymized_analytics")[0].metadata["epsilon_spent"].value == 0


def test_schedule_targets_the_day_that_ended() -> None:
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 10, 8, 0, 30, tzinfo=UTC))
    request = analytics.daily_engagement_schedule(context)
    assert request.partition_key == "2026-10-07"
    assert analytics.daily_partitions.get_first_partition_key() == "2026-01-01"
    assert (date.fromisoformat(analytics.daily_partitions.get_last_partition_key()) - date.today()) <= timedelta(days=1)
