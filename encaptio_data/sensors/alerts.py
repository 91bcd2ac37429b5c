"""Run-failure alerting: every failed run of this code location raises an alert (encaptio_data.alerts)."""

import dagster as dg

from encaptio_data.alerts import raise_alert, run_failure_alert, webhook_url_from_env
from encaptio_data.errors import SettingsError
from encaptio_data.resources import DatabaseResource


def _root_error_type(error: object) -> str | None:
    """The innermost cause's class name: Dagster wraps the asset's own exception in its own."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return getattr(error, "cls_name", None)


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Raises an alert for every failed run of this code location: an error log line, an audit entry "
        "(action alert.run_failed, target = run id) and, when ENCAPTIO_ALERT_WEBHOOK_URL is set, a JSON POST "
        "to it. The alert names the job, partition, failed steps and error types, never error messages. A "
        "webhook that fails is logged and does not stop the sensor; a run is alerted on once."
    ),
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, database: DatabaseResource) -> None:
    run = context.dagster_run
    step_failures = context.get_step_failure_events()
    errors = [_root_error_type(event.step_failure_data.error) for event in step_failures
              if event.step_failure_data and event.step_failure_data.error]
    if not step_failures:
        # The run failed outside any step (a run worker that died, a resource that did not start).
        run_failure = context.failure_event.event_specific_data
        errors = [_root_error_type(getattr(run_failure, "error", None))]
    alert = run_failure_alert(
        run_id=run.run_id, job_name=run.job_name, partition=run.tags.get("dagster/partition"),
        failed_steps=sorted({event.step_key for event in step_failures if event.step_key}),
        error_types=[error for error in errors if error],
    )
    try:
        webhook_url = webhook_url_from_env()
    except SettingsError as exc:
        # A misconfigured webhook must not cost the alert its log line and audit entry.
        context.log.error(f"alert webhook not used: {exc}")
        webhook_url = None
    outcome = raise_alert(database.get(), alert, webhook_url=webhook_url)
    context.log.info(f"{alert.summary}: audit entry {outcome.audit_seq}, webhook {outcome.webhook}"
                     + (f" ({outcome.webhook_error})" if outcome.webhook_error else ""))
