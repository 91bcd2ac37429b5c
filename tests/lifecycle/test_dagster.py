"""The backup assets, jobs and schedules load, are documented, and run in process on the embedded default."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from encaptio_data.assets import lifecycle as assets
from encaptio_data.jobs.lifecycle import (
    backup_full_job,
    backup_incremental_job,
    backup_jobs,
    replica_sync_job,
    restore_drill_job,
)
from encaptio_data.lifecycle.backup import list_backups
from encaptio_data.platform import Platform
from encaptio_data.resources import default_resources
from encaptio_data.schedules.lifecycle import backup_schedules


def _definitions(replica: str | None = None) -> dg.Definitions:
    return dg.Definitions(assets=assets.lifecycle_backup_assets, jobs=backup_jobs, schedules=backup_schedules,
                          resources={**default_resources(),
                                     "replica_store": assets.ReplicaStoreResource(object_store=replica)})


def test_definitions_load_and_every_asset_is_documented() -> None:
    defs = _definitions()
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"database_backups", "vector_snapshots", "restore_drill_evidence", "object_replica"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 40
        assert node.owners and node.group_name == "lifecycle"
        assert any(tag.startswith("dagster/kind/") for tag in node.tags)
    schedules = {s.job_name: s.cron_schedule for s in backup_schedules}
    assert schedules == {"backup_full_job": "0 1 * * *", "backup_incremental_job": "20 0,2-23 * * *",
                         "restore_drill_job": "0 5 1 * *", "replica_sync_job": "40 * * * *"}


def _run(defs: dg.Definitions, name: str) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(name).execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                                            raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


@pytest.mark.slow
def test_backup_jobs_and_the_drill_run_through_dagster(embedded: Platform, tmp_path: Path) -> None:
    defs = _definitions(replica=str(tmp_path / "replica"))
    full = _run(defs, backup_full_job.name)
    assert _metadata(full, "database_backups")["kind"] == "full"
    assert _metadata(full, "vector_snapshots")["status"] == "no table"
    incremental = _run(defs, backup_incremental_job.name)
    backup = _metadata(incremental, "database_backups")
    assert backup["store"] == "sqlite" and backup["rows"] > 0 and backup["snapshot_method"] == "pinned-file"
    assert [row["id"] for row in list_backups(embedded)][0] == backup["backup_id"]

    drill = _run(defs, restore_drill_job.name)
    evidence = _metadata(drill, "restore_drill_evidence")
    assert evidence["passed"] is True and evidence["rto_seconds"] > 0
    checks = [e for e in drill.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert [c.event_specific_data.passed for c in checks] == [True]

    replica = _run(defs, replica_sync_job.name)
    synced = _metadata(replica, "object_replica")
    assert synced["replica_configured"] is True and synced["copied"] >= 4  # backups, manifests, drill evidence
