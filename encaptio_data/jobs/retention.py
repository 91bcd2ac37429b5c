"""The nightly lifecycle jobs: purge, then archive.

Purge runs first: archiving rows that the purge deletes half an hour later would only
write files to remove them again. Both come after the analytics jobs (00:30 aggregation,
02:30 releases), so the days they check for aggregates were aggregated that night.
"""

import dagster as dg

from encaptio_data.assets.retention import cold_archive, retention_purge

purge_job = dg.define_asset_job(
    "purge_job",
    selection=dg.AssetSelection.assets(retention_purge),
    description="Remove everything past retention from every store (legal holds kept); idempotent.",
    tags={"domain": "lifecycle"},
)

archive_job = dg.define_asset_job(
    "archive_job",
    selection=dg.AssetSelection.assets(cold_archive),
    description="Move cold rows to Parquet under archive/ with manifests, deleting them only once verified.",
    tags={"domain": "lifecycle"},
)

purge_schedule = dg.ScheduleDefinition(
    job=purge_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly purge of soft-deleted capsules past their recovery window, expired raw events, "
                "backups, incomplete uploads and (with checkpoint support) old audit entries.",
)

archive_schedule = dg.ScheduleDefinition(
    job=archive_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly archive of cold interaction events and expired analytics to Parquet, after the purge.",
)

lifecycle_jobs = [purge_job, archive_job]
lifecycle_schedules = [purge_schedule, archive_schedule]
