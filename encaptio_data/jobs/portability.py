"""The organization export job: one op over `portability.export_organization`.

Launched like the DSAR jobs (a run per request, config in the run), from the web UI, a
sensor, or `encaptio export org`, which executes it in process against the data dir's
persistent instance so the run shows in the UI. The export id is the run's root run id
(as a UUID), so re-executing a failed run rewrites the same partial archive instead of
leaving a second one. The op's output and metadata carry no download token: the link is
re-issued from the export id by whoever needs it (the CLI, the webhook payload), so no
bearer secret lands in Dagster's run storage or event log.
"""

import uuid
from typing import Any

import dagster as dg

from encaptio_data.platform import Platform
from encaptio_data.portability import export_organization
from encaptio_data.resources import DatabaseResource
from encaptio_data.settings import Settings

EXPORT_ID_NAMESPACE = uuid.UUID("3f4b0a52-6c1e-4f57-9a4e-0d6f3b8c2e71")
SECRET_FIELDS = ("token", "presigned_url")


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


@dg.op(name="export_organization", description="Write every row, file, extracted text, search chunk and analytics "
       "aggregate of one organization to a ZIP with a sha256 manifest; notify the requester.",
       tags={"domain": "portability"})
def export_organization_op(context: dg.OpExecutionContext, config: OrganizationExportConfig,
                           database: DatabaseResource) -> dict:
    export_id = config.export_id or str(uuid.uuid5(EXPORT_ID_NAMESPACE, context.run.root_run_id or context.run_id))
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


@dg.job(name="organization_export_job", tags={"domain": "portability"},
        description="Export one organization (every capsule, file, text, chunk, row and aggregate) as a verifiable "
                    "ZIP, to a directory or behind a 7-day link.")
def organization_export_job() -> None:
    export_organization_op()


def run_organization_export(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    """Execute the job in process on the data dir's Dagster instance; the op's result.

    A failed run raises the op's own error (same class, same one line), so the CLI reports a
    refused export exactly as the domain function would; the run and its traceback stay in the
    instance for the UI, not on the console.
    """
    from encaptio_data import errors
    from encaptio_data.jobs.run import open_instance

    instance = open_instance(settings)
    run_config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                  "ops": {"export_organization": {"config": config}}}
    database = DatabaseResource(data_dir=str(settings.data_dir), database_url=settings.database_url)
    result = organization_export_job.execute_in_process(run_config=run_config, instance=instance,
                                                        resources={"database": database}, raise_on_error=False)
    if result.success:
        return {**result.output_for_node("export_organization"), "run_id": result.run_id}
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failures[0].step_failure_data.error if failures else None
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        raise errors.EncaptioError(f"organization export run {result.run_id} failed")
    line = (error.message.strip().splitlines() or ["failed"])[0]
    qualified, separator, message = line.partition(": ")
    if separator and qualified.rsplit(".", 1)[-1] == error.cls_name:  # "module.Class: message"
        line = message
    kind = getattr(errors, error.cls_name or "", None)
    if isinstance(kind, type) and issubclass(kind, errors.EncaptioError):
        raise kind(line)
    raise errors.EncaptioError(f"organization export run {result.run_id} failed: {line}")
