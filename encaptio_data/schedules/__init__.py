"""Schedules: recurring maintenance."""

import dagster as dg

from encaptio_data.jobs import search_index_job

search_index_schedule = dg.ScheduleDefinition(
    job=search_index_job,
    cron_schedule="15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly index maintenance: compact small fragments, fold rows added since into the full-text, scalar "
        "and vector indexes, and clean up table versions older than the 30-day recovery window."
    ),
)
