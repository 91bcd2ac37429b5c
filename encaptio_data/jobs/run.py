"""Execute the whole asset graph in process against the persistent Dagster instance in the data dir.

`encaptio demo` uses this, so its runs, materializations and check results are the ones the
web UI (`make ui`, same DAGSTER_HOME) shows afterwards. The graph mixes unpartitioned and
partitioned assets, and a Dagster run covers one partition; so the plan is: unpartitioned
assets that feed the partitioned ones, then one run per partition, then the unpartitioned
assets downstream, which is what the sensors and schedules do in production.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from encaptio_data.bootstrap import ensure_dagster_home
from encaptio_data.settings import Settings

# The console gets warnings and errors only; every event is still in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def open_instance(settings: Settings) -> dg.DagsterInstance:
    home = ensure_dagster_home(settings)
    # The resources read ENCAPTIO_* when the run starts, like any run the daemon launches;
    # DAGSTER_HOME must agree so that `make ui` shows this run.
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.from_config(str(home))


@dataclass
class RunSummary:
    run_ids: list[str] = field(default_factory=list)
    success: bool = True
    materialized: list[str] = field(default_factory=list)
    checks: list[dict[str, object]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def checks_passed(self) -> int:
        return sum(1 for check in self.checks if check["passed"])

    @property
    def blocking_failures(self) -> list[dict[str, object]]:
        return [c for c in self.checks if not c["passed"] and c["severity"] == "ERROR"]

    def record(self, result: dg.ExecuteInProcessResult) -> None:
        self.run_ids.append(result.run_id)
        self.success &= result.success
        for event in result.all_events:
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                name = event.asset_key.to_user_string()
                partition = event.partition
                self.materialized.append(f"{name}[{partition[:8]}]" if partition else name)
            elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                self.checks.append({
                    "asset": evaluation.asset_key.to_user_string(), "check": evaluation.check_name,
                    "partition": event.partition, "passed": evaluation.passed,
                    "severity": evaluation.severity.value,
                })
            elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
                self.failures.append(f"{event.step_key}: {_root_cause(event.step_failure_data.error)}")

    def as_dict(self) -> dict[str, object]:
        return {"run_ids": self.run_ids, "success": self.success, "assets_materialized": self.materialized,
                "checks": self.checks, "checks_passed": self.checks_passed, "failures": self.failures}


def _root_cause(error: object) -> str:
    """The innermost error's first line: Dagster wraps the asset's own exception in its own."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    message = getattr(error, "message", "") or "failed"
    return message.strip().splitlines()[0]


def _stages(graph: dg.AssetGraph) -> tuple[set[dg.AssetKey], dict[dg.PartitionsDefinition, set[dg.AssetKey]],
                                           set[dg.AssetKey]]:
    before: set[dg.AssetKey] = set()
    partitioned: dict[dg.PartitionsDefinition, set[dg.AssetKey]] = {}
    after: set[dg.AssetKey] = set()
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if node.partitions_def is not None:
            partitioned.setdefault(node.partitions_def, set()).add(key)
        elif any(graph.get(k).partitions_def is not None for k in graph.get_ancestor_asset_keys(key)):
            after.add(key)
        else:
            before.add(key)
    return before, partitioned, after


def materialize_all(settings: Settings, *, dynamic_partitions: dict[str, list[str]] | None = None,
                    only_partitions: list[str] | None = None, days: list[str] | None = None,
                    unpartitioned: bool = True, on_run: Callable[[str], None] | None = None) -> RunSummary:
    """Materialize every asset (every partition, or `only_partitions`) and run every check.

    Stops at the first failed run: what follows it depends on it. `unpartitioned=False` runs
    only the partitioned assets, as `encaptio ingest` does (new rows are searchable before the
    indexes are rebuilt, so it leaves that to the hourly schedule). Daily partitions run only
    for `days` (the days that have events), not for every day since the partitions start.
    """
    from encaptio_data.definitions import defs

    instance = open_instance(settings)
    for name, keys in (dynamic_partitions or {}).items():
        missing = [k for k in keys if not instance.has_dynamic_partition(name, k)]
        if missing:
            instance.add_dynamic_partitions(name, missing)
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    before, partitioned, after = _stages(graph)
    summary = RunSummary()

    def execute(keys: set[dg.AssetKey], partition_key: str | None = None) -> bool:
        if on_run:
            on_run(f"{', '.join(sorted(k.to_user_string() for k in keys))}" + (f" [{partition_key}]" if partition_key else ""))
        result = job.get_subset(asset_selection=keys).execute_in_process(
            instance=instance, partition_key=partition_key, raise_on_error=False, run_config=QUIET)
        summary.record(result)
        return result.success

    if unpartitioned and before and not execute(before):
        return summary
    for partitions_def, keys in partitioned.items():
        if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            partition_keys = [day for day in (days or []) if partitions_def.has_partition_key(day)]
        elif only_partitions is not None:
            partition_keys = only_partitions
        else:
            partition_keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        for partition_key in partition_keys:
            if not execute(keys, partition_key):
                return summary
    if unpartitioned and after:
        execute(after)
    return summary
