"""Analytics and privacy assets: interaction events → daily engagement → anonymized releases and exports;
extracted text and event free text → PII findings; raw-event retention.

Thin glue over ``encaptio_data.analytics``: each asset calls one domain function and turns its
report into metadata; the checks run in the asset's own step, on the partition it just wrote.
"""

import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from encaptio_data.analytics.aggregate import materialize_day, raw_event_counts, reconcile_day, stale_days, views_by_day
from encaptio_data.analytics.charts import bar_chart_markdown
from encaptio_data.analytics.dp import DEFAULT_EPSILON, budget_status, releasable_weeks, release_week
from encaptio_data.analytics.export import DEFAULT_WINDOW_DAYS, export_analytics
from encaptio_data.analytics.live import reconcile_live_views
from encaptio_data.analytics.pii import findings_summary, scan_all, undeclared_pii
from encaptio_data.analytics.retention import RAW_EVENT_RETENTION_DAYS, finalize_old_days
from encaptio_data.assets.metadata import OWNERS, markdown_table
from encaptio_data.authz import system_principal
from encaptio_data.db.models import DailyEngagementRun
from encaptio_data.platform import Platform
from encaptio_data.resources import CacheResource, DatabaseResource, ObjectStoreResource
from encaptio_data.quality.suites import DAILY_ENGAGEMENT, daily_engagement_frame, ephemeral_context, validate
from encaptio_data.stores.objects import put_if_changed

ANALYTICS_GROUP = "analytics"
PRIVACY_GROUP = "privacy"
PARTITIONS_START = "2026-01-01"

AGGREGATES_RECONCILE = "aggregates_reconcile_with_raw_events"
LIVE_VIEWS_RECONCILE = "live_view_counters_reconcile"
K_ANONYMITY_MEASURED = "k_anonymity_measured"
NO_UNDECLARED_PII = "no_pii_in_undeclared_columns"
EXPORT_KEY = "analytics/exports/engagement.parquet"

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=0, timezone="UTC")


def _platform(database: DatabaseResource, object_store: ObjectStoreResource | None = None,
              cache: CacheResource | None = None) -> Platform:
    """A Platform over the run's resources (the domain functions take one), sharing their open stores."""
    platform = Platform(database.settings())
    platform.db = database.get()
    if object_store is not None:
        platform.objects = object_store.get()
    if cache is not None:
        platform.cache = cache.get()
    return platform


interaction_events = dg.AssetSpec(
    "interaction_events",
    group_name=ANALYTICS_GROUP,
    owners=OWNERS,
    kinds={"sql"},
    description=(
        "Raw interaction events (view, search, chat_turn, dwell, completion) written by the product into the "
        "`interaction_events` table through `analytics.events.record_events`, which seals a signed-in user's "
        "query or question under their key beside a blind index the aggregation counts by. Not materialized "
        "here: the daily aggregation reads it, retention deletes "
        f"whole days of it after {RAW_EVENT_RETENTION_DAYS} days once they are aggregated."
    ),
)


@dg.asset(
    group_name=ANALYTICS_GROUP,
    owners=OWNERS,
    kinds={"python", "sql"},
    deps=[interaction_events],
    partitions_def=daily_partitions,
    check_specs=[
        dg.AssetCheckSpec(AGGREGATES_RECONCILE, asset="daily_engagement", blocking=True,
                          description="The Great Expectations suite `daily_engagement` (counts non-negative, every "
                                      "kind of event within the day's events) passes, and read = aggregated + "
                                      "quarantined + excluded, agreeing with the raw table and the quarantine."),
        dg.AssetCheckSpec(LIVE_VIEWS_RECONCILE, asset="daily_engagement",
                          description="The cache's live view counters agree with the aggregated views "
                                      "(plus views withheld for consent or quarantined) within 2 %."),
    ],
    description=(
        "Engagement per capsule and UTC day (views, sessions, searches, chat turns, dwell, completions, distinct "
        "pseudonymous users) in `daily_engagement`, with the top search queries issued by at least 5 distinct "
        "people in `daily_top_queries`. Subjects with a restriction, an objection to analytics or a withdrawn "
        "analytics consent contribute nothing; invalid events are quarantined with a reason in "
        "`analytics_quarantine`. Re-materializing a day rebuilds it whole (backfills, late events)."
    ),
)
def daily_engagement(context: dg.AssetExecutionContext, database: DatabaseResource, cache: CacheResource):
    day = date.fromisoformat(context.partition_key)
    platform = _platform(database)
    report = materialize_day(platform, day)
    if report.frozen:
        context.log.info(f"{day}: raw events already deleted by retention; the aggregates are final and kept")
    for reason, count in report.quarantine_reasons.items():
        context.log.warning(f"{day}: {count} event(s) quarantined: {reason}")
    reconciliation = reconcile_day(platform.db, day)
    suite = validate(ephemeral_context(), DAILY_ENGAGEMENT, daily_engagement_frame(platform.db, day))
    live = reconcile_live_views(cache.get(), platform.db, day)
    chart_days = views_by_day(platform.db, day, 28)
    yield dg.MaterializeResult(metadata={
        "events_read": report.events_read,
        "events_aggregated": report.events_aggregated,
        "events_quarantined": report.events_quarantined,
        "events_excluded_consent": report.events_excluded,
        "subjects_excluded_consent": report.subjects_excluded,
        "quarantine_reasons": dg.MetadataValue.json(report.quarantine_reasons),
        "capsules": report.capsules,
        "views": report.views,
        "top_queries_published": report.top_queries,
        "top_queries_withheld_pii": report.top_queries_withheld_pii,
        "pseudonym_key_id": report.pseudonym_key_id,
        "final_after_retention": report.frozen,
        "timings": dg.MetadataValue.json(report.timings),
        "preview": dg.MetadataValue.md(markdown_table(report.preview)),
        "views_per_day": dg.MetadataValue.md(bar_chart_markdown(
            [d for d, _ in chart_days], [v for _, v in chart_days], title=f"Views per day, 28 days to {day}")),
    })
    gx_metadata = {f"gx_{name}": value for name, value in suite.statistics.items()}
    if suite.examples:
        gx_metadata["gx_failing_examples"] = dg.MetadataValue.md(markdown_table(suite.examples))
    yield dg.AssetCheckResult(check_name=AGGREGATES_RECONCILE, passed=bool(reconciliation["passed"]) and suite.passed,
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={**{k: dg.MetadataValue.json(v) if isinstance(v, list) else v
                                           for k, v in reconciliation.items() if v is not None}, **gx_metadata})
    yield dg.AssetCheckResult(check_name=LIVE_VIEWS_RECONCILE, passed=bool(live["passed"]),
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={k: dg.MetadataValue.json(v) if isinstance(v, list) else v
                                        for k, v in live.items() if v is not None})


class ReleaseConfig(dg.Config):
    epsilon: float = DEFAULT_EPSILON
    fresh: bool = False


@dg.asset(
    group_name=PRIVACY_GROUP,
    owners=OWNERS,
    kinds={"python", "sql", "s3"},
    deps=[daily_engagement],
    description=(
        "Weekly engagement per capsule released with differential privacy (OpenDP discrete Laplace; privacy unit "
        "a subject-day, contributions bounded per subject and day) as JSON under `analytics/releases/`. Every "
        "release is recorded with its epsilon in the `privacy_budget` ledger; a release beyond a week's budget is "
        "refused. A complete week is released once; re-runs re-publish it at no cost unless `fresh` is set."
    ),
)
def anonymized_analytics(context: dg.AssetExecutionContext, config: ReleaseConfig, database: DatabaseResource,
                         object_store: ObjectStoreResource) -> dg.MaterializeResult:
    platform = _platform(database, object_store)
    releases = []
    for monday in releasable_weeks(platform.db, datetime.now(UTC).date()):
        report = release_week(platform, monday, epsilon=config.epsilon, fresh=config.fresh)
        releases.append(report)
        context.log.info(f"{report.period}: {'re-published' if report.reused else 'released'} {report.release_id}, "
                         f"epsilon spent {report.epsilon_spent}, remaining {report.epsilon_remaining}")
    spent = sum(r.epsilon_spent for r in releases)
    summary = [{"period": r.period, "release": r.release_id[:8], "new": not r.reused,
                "epsilon_spent_now": r.epsilon_spent, "epsilon_remaining": r.epsilon_remaining,
                "views_scale": r.metrics.get("views", {}).get("scale"), "object": r.object_key} for r in releases]
    latest = releases[-1] if releases else None
    metadata: dict[str, object] = {
        "releases": len(releases),
        "new_releases": sum(1 for r in releases if not r.reused),
        "epsilon_spent": round(spent, 6),
        "epsilon_per_release": config.epsilon,
        "ledger": dg.MetadataValue.md(markdown_table(summary)),
    }
    if latest is not None:
        metadata["latest_period"] = latest.period
        metadata["latest_budget"] = dg.MetadataValue.json(budget_status(platform.db, latest.period))
        metadata["latest_noise"] = dg.MetadataValue.json(latest.metrics)
        metadata["latest_preview"] = dg.MetadataValue.md(markdown_table(latest.rows))
    return dg.MaterializeResult(metadata=metadata)


def _export_window(platform: Platform) -> tuple[date, date] | None:
    with platform.db.session() as session:
        last = session.scalar(sa.select(sa.func.max(DailyEngagementRun.day)))
    if last is None:
        return None
    return last - timedelta(days=DEFAULT_WINDOW_DAYS - 1), last


@dg.asset(
    group_name=PRIVACY_GROUP,
    owners=OWNERS,
    kinds={"python", "parquet", "s3"},
    deps=[daily_engagement],
    check_specs=[dg.AssetCheckSpec(K_ANONYMITY_MEASURED, asset="engagement_export", blocking=True,
                                   description="Every published group covers at least k distinct subjects, "
                                               "recounted from the events behind the export.")],
    description=(
        f"A k-anonymous (k = 5) export of the {DEFAULT_WINDOW_DAYS} days up to the latest aggregated day: event "
        "counts by capsule, period, geography and event type, generalized (day → week → month, country → region) "
        f"then suppressed until every group holds at least k people. Parquet at `{EXPORT_KEY}` (versioned)."
    ),
)
def engagement_export(context: dg.AssetExecutionContext, database: DatabaseResource,
                      object_store: ObjectStoreResource):
    platform = _platform(database, object_store)
    window = _export_window(platform)
    if window is None:
        context.log.info("no aggregated day yet: nothing to export")
        yield dg.MaterializeResult(metadata={"rows": 0})
        yield dg.AssetCheckResult(check_name=K_ANONYMITY_MEASURED, passed=True, metadata={"rows": 0})
        return
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "engagement.parquet"
        answer = export_analytics(platform, "parquet", path, date_from=window[0], date_to=window[1],
                                  operator=system_principal("dagster", run=context.run.run_id[:8]))
        version, _ = put_if_changed(platform.objects, EXPORT_KEY, path.read_bytes(),
                                    content_type="application/vnd.apache.parquet")
    measured, k = answer["min_group_size"], answer["k"]
    yield dg.MaterializeResult(metadata={
        "rows": answer["rows"], "k": k, "min_group_size": measured if measured is not None else 0,
        "generalization": answer["generalization"], "suppressed_groups": answer["suppressed"],
        "suppressed_events": answer["suppressed_events"], "events": answer["events"],
        "quasi_identifiers": dg.MetadataValue.json(answer["quasi_identifiers"]),
        "window": f"{answer['date_from']} .. {answer['date_to']}",
        "generalizations_tried": dg.MetadataValue.md(markdown_table(answer["generalizations_tried"])),
        "object": f"{EXPORT_KEY}@{version.version_id}",
    })
    yield dg.AssetCheckResult(check_name=K_ANONYMITY_MEASURED, passed=measured is None or measured >= k,
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"k": k, "min_group_size": measured if measured is not None else 0,
                                        "rows": answer["rows"]})


@dg.asset(
    group_name=PRIVACY_GROUP,
    owners=OWNERS,
    kinds={"python", "sql"},
    deps=[dg.AssetKey("extracted_text"), interaction_events],
    check_specs=[dg.AssetCheckSpec(NO_UNDECLARED_PII, asset="pii_findings",
                                   description="No PII detected in text columns the model does not declare personal "
                                               "(they would escape access exports and erasure).")],
    description=(
        "PII found by Presidio pattern recognizers (email, phone, credit card, IBAN, IP, US SSN, crypto wallet, "
        "medical licence) in extracted content text and in search queries and chat questions, stored in "
        "`pii_findings` as place, kind, score and a keyed hash, never the text. Scans only content whose "
        "extraction is newer than its last scan and event days that changed."
    ),
)
def pii_findings(context: dg.AssetExecutionContext, database: DatabaseResource):
    platform = _platform(database)
    report = scan_all(platform)
    alerts = undeclared_pii(platform.db)
    for alert in alerts:
        context.log.warning(f"PII ({alert['entity_type']}) in undeclared column {alert['table']}.{alert['column']} "
                            f"row {alert['row']}")
    summary = findings_summary(platform.db)
    yield dg.MaterializeResult(metadata={
        **{k: v for k, v in report.as_dict().items() if k != "findings"},
        "new_findings_by_type": dg.MetadataValue.json(dict(report.findings)),
        "findings_total": sum(r["findings"] for r in summary),
        "findings": dg.MetadataValue.md(markdown_table(summary)),
    })
    yield dg.AssetCheckResult(check_name=NO_UNDECLARED_PII, passed=not alerts, severity=dg.AssetCheckSeverity.WARN,
                              metadata={"alerts": len(alerts), "detail": dg.MetadataValue.md(markdown_table(alerts))})


@dg.asset(
    group_name=PRIVACY_GROUP,
    owners=OWNERS,
    kinds={"python", "sql"},
    deps=[daily_engagement],
    description=(
        f"Readiness of raw interaction events for retention: days older than {RAW_EVENT_RETENTION_DAYS} days are "
        "aggregated if they never were (or changed since), so that the nightly purge (retention_purge, which "
        "owns deletion and honours legal holds and per-organization policies) may delete them. Events no "
        "partition would ever read (future or older than two years) are quarantined with their reason first."
    ),
)
def interaction_event_retention(context: dg.AssetExecutionContext,
                                database: DatabaseResource) -> dg.MaterializeResult:
    platform = _platform(database)
    report = finalize_old_days(platform)
    first = date.fromisoformat(PARTITIONS_START)
    for day in report.days_materialized:
        if date.fromisoformat(day) >= first:
            # The aggregates were written by the same domain function the partition runs: tell the UI.
            context.log_event(dg.AssetMaterialization(asset_key="daily_engagement", partition=day,
                                                      metadata={"materialized_by": "interaction_event_retention"}))
    return dg.MaterializeResult(metadata={
        "cutoff": report.cutoff,
        "days_materialized_first": len(report.days_materialized),
        "quarantined_out_of_range": dg.MetadataValue.json(report.quarantined_out_of_range),
    })


daily_engagement_job = dg.define_asset_job(
    "daily_engagement_job",
    selection=dg.AssetSelection.assets(daily_engagement),
    description="Aggregate one UTC day of interaction events (one partition per day).",
)

analytics_privacy_job = dg.define_asset_job(
    "analytics_privacy_job",
    selection=dg.AssetSelection.assets(anonymized_analytics, engagement_export, pii_findings,
                                       interaction_event_retention),
    description="Release complete weeks with differential privacy, refresh the k-anonymous export, scan for PII "
                "and apply raw-event retention.",
)


@dg.schedule(job=daily_engagement_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Each night, aggregate the UTC day that just ended (its partition becomes complete).")
def daily_engagement_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = (context.scheduled_execution_time.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(partition_key=day, run_key=f"daily:{day}")


analytics_privacy_schedule = dg.ScheduleDefinition(
    job=analytics_privacy_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly after the aggregation: DP release of weeks just completed, the k-anonymous export, the "
                "incremental PII scan and raw-event retention.",
)


@dg.sensor(job=daily_engagement_job, minimum_interval_seconds=3600, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Re-materializes past days whose raw events changed after aggregation (late events, "
                       "erasures) or were never aggregated. The run key carries the day's event count, so each "
                       "change is run once.")
def late_events_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    db = database.get()
    first = date.fromisoformat(PARTITIONS_START)
    days = [d for d in stale_days(db) if date.fromisoformat(d) >= first]
    counts = raw_event_counts(db, first) if days else {}
    return dg.SensorResult(run_requests=[
        dg.RunRequest(partition_key=d, run_key=f"late:{d}:{counts.get(date.fromisoformat(d), 0)}") for d in days])


analytics_assets = [interaction_events, daily_engagement, anonymized_analytics, engagement_export, pii_findings,
                    interaction_event_retention]
analytics_jobs = [daily_engagement_job, analytics_privacy_job]
analytics_schedules = [daily_engagement_schedule, analytics_privacy_schedule]
analytics_sensors = [late_events_sensor]
