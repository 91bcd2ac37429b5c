"""Backup schedules (UTC). The daily full runs at 01:00, before the nightly purge (03:00) and
archive (03:30); the hourly incremental skips that hour, because pgBackRest holds one backup
lock per stanza and a second backup would fail rather than wait."""

import dagster as dg

from encaptio_data.jobs.lifecycle import backup_full_job, backup_incremental_job, replica_sync_job, restore_drill_job

backup_full_schedule = dg.ScheduleDefinition(
    job=backup_full_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily full backup of the database and snapshot of the vector table.",
)

backup_incremental_schedule = dg.ScheduleDefinition(
    job=backup_incremental_job,
    cron_schedule="20 0,2-23 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly incremental backup (WAL archiving covers the time between backups on PostgreSQL).",
)

restore_drill_schedule = dg.ScheduleDefinition(
    job=restore_drill_job,
    cron_schedule="0 5 1 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Monthly restore drill: latest backup and a point in time into scratch, RTO and RPO measured.",
)

replica_sync_schedule = dg.ScheduleDefinition(
    job=replica_sync_job,
    cron_schedule="40 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly object replica sync and noncurrent-version expiry.",
)

backup_schedules = [backup_full_schedule, backup_incremental_schedule, restore_drill_schedule, replica_sync_schedule]
