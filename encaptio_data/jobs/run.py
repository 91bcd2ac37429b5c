"""Execute the asset graph in process against the persistent Dagster instance in the data dir.

`encaptio demo` uses this, so its runs, materializations and check results are the ones the
web UI (`make ui`, same DAGSTER_HOME) shows afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dagster as dg

from encaptio_data.bootstrap import ensure_dagster_home
from encaptio_data.settings import Settings


def open_instance(settings: Settings) -> dg.DagsterInstance:
    home = ensure_dagster_home(settings)
    # The resources read ENCAPTIO_* when the run starts, like any run the daemon launches;
    # DAGSTER_HOME must agree so that `make ui` shows this run.
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.from_config(str(home))


@dataclass
class RunSummary:
    run_id: str
    success: bool
    materialized: list[str] = field(default_factory=list)
    checks: list[dict[str, object]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def checks_passed(self) -> int:
        return sum(1 for check in self.checks if check["passed"])

    def as_dict(self) -> dict[str, object]:
        return {"run_id": self.run_id, "success": self.success, "assets_materialized": self.materialized,
                "checks": self.checks, "checks_passed": self.checks_passed, "failures": self.failures}


def materialize_all(settings: Settings, *, selection: str | None = None) -> RunSummary:
    from encaptio_data.definitions import defs

    instance = open_instance(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    if selection:
        job = job.get_subset(asset_selection=dg.AssetSelection.from_coercible(selection.split(",")).resolve(
            defs.resolve_asset_graph()))
    # The console gets warnings and errors only; every event is still in the instance for the UI.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=quiet)
    summary = RunSummary(run_id=result.run_id, success=result.success)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            summary.materialized.append(event.asset_key.to_user_string())
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            summary.checks.append({
                "asset": evaluation.asset_key.to_user_string(),
                "check": evaluation.check_name,
                "passed": evaluation.passed,
                "severity": evaluation.severity.value,
            })
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            summary.failures.append(f"{event.step_key}: {error.message.strip().splitlines()[0] if error else 'failed'}")
    return summary
