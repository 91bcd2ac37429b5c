"""The code location: every asset, check, job, schedule and sensor, with the store resources.

workspace.yaml loads this module; `encaptio demo` executes the same Definitions in process.
"""

from __future__ import annotations

import dagster as dg

from encaptio_data.assets import analytics as analytics_assets
from encaptio_data.assets import content as content_assets
from encaptio_data.assets import governance as governance_assets
from encaptio_data.assets import lifecycle as backup_assets
from encaptio_data.assets import retention as retention_assets
from encaptio_data.assets.freshness import with_freshness_policies
from encaptio_data.io_managers import io_manager_resources
from encaptio_data.jobs import content_pipeline_job, search_index_job
from encaptio_data.jobs.executors import celery_jobs
from encaptio_data.assets.lifecycle import ReplicaStoreResource
from encaptio_data.jobs.lifecycle import backup_jobs
from encaptio_data.jobs.portability import organization_export_job
from encaptio_data.jobs.privacy import dsar_jobs
from encaptio_data.jobs.retention import archive_job, archive_schedule, purge_job, purge_schedule
from encaptio_data.quality.checks import quality_checks, quality_resources
from encaptio_data.resources import default_resources
from encaptio_data.schedules import search_index_schedule
from encaptio_data.schedules.lifecycle import backup_schedules
from encaptio_data.sensors import uploads_sensor
from encaptio_data.sensors.alerts import run_failure_alert_sensor
from encaptio_data.sensors.privacy import consent_withdrawal_sensor, dsar_deadline_sensor, dsar_request_sensor

defs = dg.Definitions(
    # The analytics list is explicit: it holds an AssetSpec (interaction_events) that
    # load_assets_from_modules does not pick up.
    assets=governance_assets.with_catalog(with_freshness_policies([
        *dg.load_assets_from_modules([content_assets, retention_assets, backup_assets]),
        *analytics_assets.analytics_assets, *governance_assets.governance_assets])),
    asset_checks=[*dg.load_asset_checks_from_modules([content_assets]), *quality_checks],
    jobs=[content_pipeline_job, search_index_job, *dsar_jobs.values(), purge_job, archive_job,
          *analytics_assets.analytics_jobs, *backup_jobs, *governance_assets.governance_jobs, organization_export_job, *celery_jobs()],
    schedules=[search_index_schedule, purge_schedule, archive_schedule, *analytics_assets.analytics_schedules,
               *backup_schedules, *governance_assets.governance_schedules],
    sensors=[uploads_sensor, dsar_request_sensor, consent_withdrawal_sensor, dsar_deadline_sensor,
             *analytics_assets.analytics_sensors, run_failure_alert_sensor],
    resources={**default_resources(), **quality_resources(), **io_manager_resources(),
               "replica_store": ReplicaStoreResource()},
)
