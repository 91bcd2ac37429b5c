"""The lifecycle assets, jobs and schedules: they load, materialize and keep hold reasons out of Dagster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from encaptio_data.analytics.aggregate import materialize_day
from encaptio_data.assets.analytics import analytics_assets
from encaptio_data.assets.retention import ARCHIVE_MATCHES_MANIFESTS, AUDIT_CHAIN_VERIFIES, lifecycle_assets
from encaptio_data.db.enums import HoldScope
from encaptio_data.db.models import LegalHold
from encaptio_data.jobs.retention import archive_schedule, lifecycle_jobs, lifecycle_schedules, purge_schedule
from encaptio_data.lifecycle.retention import delete_capsule
from encaptio_data.platform import Platform
from encaptio_data.resources import CacheResource, DatabaseResource, ObjectStoreResource, VectorStoreResource
from tests.lifecycle_retention.conftest import add_event, at, new_box, run_pipeline


def test_lifecycle_definitions_load_and_are_documented() -> None:
    from encaptio_data.resources import default_resources

    defs = dg.Definitions(assets=[*lifecycle_assets, *analytics_assets], jobs=lifecycle_jobs,
                          schedules=lifecycle_schedules, resources=default_resources())
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for name in ("retention_purge", "cold_archive"):
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == "lifecycle" and node.owners and len(node.description) > 200
        assert {"dagster/kind/python", "dagster/kind/s3"} <= set(node.tags)
    assert (purge_schedule.cron_schedule, archive_schedule.cron_schedule) == ("0 3 * * *", "30 3 * * *")
    assert {j.name for j in lifecycle_jobs} == {"purge_job", "archive_job"}


def test_assets_materialize_with_counts_and_without_hold_reasons(embedded: Platform) -> None:
    platform = embedded
    now = datetime.now(UTC)
    gone, held = new_box(platform, "gone"), new_box(platform, "held")
    run_pipeline(platform)
    for box in (gone, held):
        delete_capsule(platform, box.capsule_id, operator=box.owner_email, now=now - timedelta(days=40))
    with platform.db.session() as session:
        session.add(LegalHold(organization_id=held.organization_id, scope=HoldScope.CAPSULE, scope_id=held.capsule_id,
                              reason="confidential matter of Jane Roe", placed_by="counsel@acme.test"))
    cold_month_start = (now - timedelta(days=30)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    day = (cold_month_start - timedelta(days=1)).date()  # last day of the newest month that is cold
    live = new_box(platform, "live")
    add_event(platform, live.capsule_id, None, at(day, 9))
    materialize_day(platform, day, now=now)

    data_dir = str(platform.settings.data_dir)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(lifecycle_assets, instance=instance, resources={
        "database": DatabaseResource(data_dir=data_dir), "object_store": ObjectStoreResource(data_dir=data_dir),
        "vector_store": VectorStoreResource(data_dir=data_dir), "cache": CacheResource(data_dir=data_dir)},
        selection=["retention_purge", "cold_archive"])
    assert result.success
    metadata = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node(
        "retention_purge") + result.asset_materializations_for_node("cold_archive")}
    purge_md, archive_md = metadata["retention_purge"], metadata["cold_archive"]
    assert purge_md["purged"].value["soft_deleted"]["capsules"] == 1 and purge_md["held_total"].value == 1
    assert f"capsule:{held.capsule_id}" in purge_md["held"].value
    assert archive_md["rows_archived"].value["interaction_events"] == 1
    assert "interaction_events/month=" in archive_md["manifest_preview"].value
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {AUDIT_CHAIN_VERIFIES: True, ARCHIVE_MATCHES_MANIFESTS: True}
    logged = " ".join(str(record.dagster_event) for record in instance.all_logs(result.run_id))
    assert "Jane Roe" not in logged and "Jane Roe" not in str(metadata)
