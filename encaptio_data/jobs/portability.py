"""The organization export job: one op over `portability.export_organization`, and how it is queued.

`encaptio export org` submits a run of `organization_export_job` to the instance's run queue
the way `dagster job launch` does (the code location's job snapshot and execution plan, then
`instance.submit_run`), so the QueuedRunCoordinator's limits apply and `dagster-daemon run`
launches it like any other run; the web UI, a sensor or `dagster job launch` queue the same
run. `--in-process` executes it in the calling process instead, for operators without a
daemon. The export id is the run's root run id (as a UUID), known when the run is created, so
re-executing a failed run rewrites the same partial archive instead of leaving a second one.

The op's output and metadata carry no download token: the link is re-issued from the export id
by whoever needs it (the CLI, the webhook payload), so no bearer secret lands in Dagster's run
storage or event log. The requester travels in the run config (their export_org permission is
checked when the run executes) and, as a keyed reference without the email, in a run tag.
"""

import os
import sys
import time
import uuid
from typing import Any

import dagster as dg

from encaptio_data.platform import Platform
from encaptio_data.portability import export_organization
from encaptio_data.resources import DatabaseResource
from encaptio_data.settings import Settings

EXPORT_ID_NAMESPACE = uuid.UUID("3f4b0a52-6c1e-4f57-9a4e-0d6f3b8c2e71")
SECRET_FIELDS = ("token", "presigned_url")
JOB_NAME = "organization_export_job"
OP_NAME = "export_organization"
# workspace.yaml's code location: the daemon finds a queued run's code by this name.
LOCATION_NAME = "encaptio_data"
DEFINITIONS_MODULE = "encaptio_data.definitions"
REQUESTER_TAG = "encaptio/requested_by"
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"
# The console gets nothing below CRITICAL: the run's events are in the instance for the UI.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class OrganizationExportConfig(dg.Config):
    organization_id: str
    format: str = "json"
    out_dir: str | None = None
    link: bool = False
    embeddings: bool | None = None
    export_id: str | None = None
    webhook_url: str | None = None
    # The person the export is for: their export_org permission is checked when the run executes.
    requested_by: str


def export_id_for(run_id: str) -> str:
    return str(uuid.uuid5(EXPORT_ID_NAMESPACE, run_id))


@dg.op(name=OP_NAME, description="Write every row, file, extracted text, search chunk and analytics "
       "aggregate of one organization to a ZIP with a sha256 manifest; notify the requester.",
       tags={"domain": "portability"})
def export_organization_op(context: dg.OpExecutionContext, config: OrganizationExportConfig,
                           database: DatabaseResource) -> dict:
    export_id = config.export_id or export_id_for(context.run.root_run_id or context.run_id)
    platform = Platform(database.settings())
    try:
        result = export_organization(
            platform, config.organization_id, table_format=config.format, out_dir=config.out_dir, link=config.link,
            embeddings=config.embeddings, export_id=export_id, webhook_url=config.webhook_url,
            operator=config.requested_by, progress=context.log.info)
    finally:
        platform.close()
    public = {k: v for k, v in result.as_dict().items() if k not in SECRET_FIELDS}
    context.add_output_metadata({
        "export_id": result.export_id, "organization_id": result.organization_id, "format": result.format,
        "bytes": result.bytes, "sha256": result.sha256, "reused": result.reused,
        "counts": dg.MetadataValue.json(result.counts),
        "location": result.path or result.key or "",
        "expires_at": public["expires_at"] or "",
    })
    return public


@dg.job(name=JOB_NAME, tags={"domain": "portability"},
        description="Export one organization (every capsule, file, text, chunk, row and aggregate) as a verifiable "
                    "ZIP, to a directory or behind a 7-day link.")
def organization_export_job() -> None:
    export_organization_op()


def _run_config(config: dict[str, Any]) -> dict[str, Any]:
    return {**QUIET_LOGS, "ops": {OP_NAME: {"config": config}}}


def _raise_failure(run_id: str, events: list[dg.DagsterEvent]) -> None:
    """Raise the op's own error (same class, same one line), so the CLI reports a refused export
    exactly as the domain function would; the traceback stays in the instance for the UI."""
    from encaptio_data import errors

    failures = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failures[0].step_failure_data.error if failures else None
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        raise errors.EncaptioError(f"organization export run {run_id} failed (see the run in the Dagster UI)")
    line = (error.message.strip().splitlines() or ["failed"])[0]
    qualified, separator, message = line.partition(": ")
    if separator and qualified.rsplit(".", 1)[-1] == error.cls_name:  # "module.Class: message"
        line = message
    kind = getattr(errors, error.cls_name or "", None)
    if isinstance(kind, type) and issubclass(kind, errors.EncaptioError):
        raise kind(line)
    raise errors.EncaptioError(f"organization export run {run_id} failed: {line}")


def run_organization_export(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    """Execute the job in this process on the data dir's Dagster instance (`--in-process`); the op's result."""
    from encaptio_data.jobs.run import open_instance

    instance = open_instance(settings)
    database = DatabaseResource(data_dir=str(settings.data_dir), database_url=settings.database_url)
    result = organization_export_job.execute_in_process(run_config=_run_config(config), instance=instance,
                                                        resources={"database": database}, raise_on_error=False)
    if not result.success:
        _raise_failure(result.run_id, result.all_events)
    return {**result.output_for_node(OP_NAME), "run_id": result.run_id, "status": "SUCCESS"}


# -- the run queue ----------------------------------------------------------------------------


def queue_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance whose queue the daemon drains: DAGSTER_HOME when set (the production profile's
    instance, scripts/run-production), else the embedded default in the data dir (`make ui`)."""
    from encaptio_data.bootstrap import ensure_dagster_home

    home = os.environ.get("DAGSTER_HOME") or str(ensure_dagster_home(settings))
    os.environ["DAGSTER_HOME"] = home
    return dg.DagsterInstance.from_config(home)


def _location_origin() -> Any:
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    # The origin names the module and interpreter the run worker loads the job from; loading it
    # here, in process, spares a code server just to read the job's snapshot.
    target = LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE, attribute="defs")
    return InProcessCodeLocationOrigin(target, location_name=LOCATION_NAME)


def queue_daemon_running(instance: dg.DagsterInstance) -> bool:
    """True when a `dagster-daemon run` is draining this instance's queue (a recent heartbeat)."""
    status = instance.get_daemon_statuses([QUEUE_DAEMON]).get(QUEUE_DAEMON)
    return bool(status and status.healthy)


def submit_organization_export(settings: Settings, config: dict[str, Any], *, requester_ref: str) -> dict[str, Any]:
    """Queue a run of the export job as `dagster job launch` would; returns its id and state at once."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.utils import make_new_run_id
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    from encaptio_data import errors

    instance = queue_instance(settings)
    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        raise errors.InvalidInputError(
            f"the Dagster instance at {os.environ['DAGSTER_HOME']} has no run queue "
            f"({type(instance.run_coordinator).__name__}): configure QueuedRunCoordinator or pass --in-process")
    run_id = make_new_run_id()
    tags = {REQUESTER_TAG: requester_ref}
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(_location_origin())) as process:
        workspace = process.create_request_context()
        location = workspace.get_code_location(LOCATION_NAME)
        (repository,) = location.get_repositories().values()
        selector = JobSubsetSelector(location_name=LOCATION_NAME, repository_name=repository.name,
                                     job_name=JOB_NAME, op_selection=None)
        remote_job = location.get_job(selector)
        run_config = _run_config(config)
        plan = location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None, known_state=None,
                                           instance=instance).execution_plan_snapshot
        instance.create_run(
            job_name=JOB_NAME, run_id=run_id, run_config=run_config, resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute, op_selection=None, status=None, root_run_id=None,
            parent_run_id=None, tags={**remote_job.tags, **tags}, job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan, parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
            asset_selection=None, asset_check_selection=None, asset_graph=repository.asset_graph)
        run = instance.submit_run(run_id, workspace)
    return {"run_id": run.run_id, "status": run.status.value, "export_id": config.get("export_id") or
            export_id_for(run.run_id), "dagster_home": os.environ["DAGSTER_HOME"],
            "daemon_running": queue_daemon_running(instance)}


def export_result(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """A finished run's export, from its step output's metadata (the same fields the op returns,
    minus the path-or-key split), or its failure raised as the domain's own error."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        from encaptio_data.errors import NotFoundError

        raise NotFoundError(f"no run {run_id} in the Dagster instance at {os.environ.get('DAGSTER_HOME')}")
    if run.status != dg.DagsterRunStatus.SUCCESS:
        events = [r.dagster_event for r in instance.all_logs(run_id) if r.dagster_event is not None]
        _raise_failure(run_id, events)
    (output,) = [r.dagster_event for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)]
    metadata = {key: value.value for key, value in output.step_output_data.metadata.items()}
    config = run.run_config["ops"][OP_NAME]["config"]
    location = metadata.pop("location")
    link = bool(config.get("link"))
    return {**metadata, "path": None if link else location, "key": location if link else None,
            "expires_at": metadata.get("expires_at") or None, "run_id": run_id, "status": run.status.value}


def wait_for_export(instance: dg.DagsterInstance, run_id: str, *, timeout: float, interval: float = 1.0
                    ) -> dict[str, Any]:
    """Block until the run ends (or `timeout` seconds pass); then its export_result."""
    from encaptio_data.errors import EncaptioError

    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return export_result(instance, run_id)
        if time.monotonic() >= deadline:
            state = run.status.value if run else "unknown"
            raise EncaptioError(f"organization export run {run_id} is still {state} after {timeout:g} s; "
                                f"it goes on: `encaptio export status {run_id}` shows the result")
        time.sleep(interval)
