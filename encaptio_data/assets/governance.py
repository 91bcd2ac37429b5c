"""Governance glue: catalog metadata on every asset, and the weekly compliance report.

Thin glue over ``encaptio_data.governance``. ``with_catalog`` puts each asset's catalog entry
(owner, classification, retention class, and the column schema of the tables it writes, with
each column's group description and classification) into the asset's metadata and tags, so
the web UI shows the catalog next to the lineage. ``compliance_report`` builds the report,
stores it (JSON, HTML, PDF) in the object store and evaluates the catalog check. Metadata
carries counts and request ids, never personal values or hold reasons: Dagster's event log is
not reached by erasure.
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

# Dagster 1.13 exposes check execution records only through its storage layer.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from encaptio_data.assets.metadata import OWNERS, markdown_table
from encaptio_data.db.models import Base
from encaptio_data.governance.catalog import ASSETS, AssetEntry, column_classification
from encaptio_data.governance.compliance import (
    build_compliance_report,
    render_html,
    render_json,
    render_pdf,
    report_counts,
)
from encaptio_data.platform import Platform
from encaptio_data.resources import CacheResource, DatabaseResource, ObjectStoreResource, VectorStoreResource
from encaptio_data.settings import Settings

GOVERNANCE_GROUP = "governance"
CATALOG_COMPLETE = "catalog_complete"
REPORT_PREFIX = "compliance/reports/"


# -- catalog metadata --------------------------------------------------------------------------------


def column_schema(tables: Iterable[str]) -> dg.TableSchema:
    """The columns of the tables an asset writes, described and classified from the model's catalog."""
    names = list(tables)
    columns = []
    for table_name in names:
        table = Base.metadata.tables[table_name]
        groups = table.info.get("catalog", {}).get("groups", {})
        for column in table.columns:
            group = groups.get(column.info.get("catalog_group") or "", {})
            classification = column_classification(column) or "unclassified"
            description = f"[{classification}] {group.get('description', 'not in the catalog')}"
            columns.append(dg.TableColumn(
                name=column.name if len(names) == 1 else f"{table_name}.{column.name}",
                type=str(column.type), description=description,
                constraints=dg.TableColumnConstraints(nullable=bool(column.nullable),
                                                      unique=bool(column.primary_key and len(table.primary_key) == 1)),
                tags={"classification": classification}))
    return dg.TableSchema(columns=columns)


def catalog_metadata(entry: AssetEntry) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "catalog/owner": entry.owner,
        "catalog/description": entry.description,
        "catalog/classification": entry.classification,
        "catalog/retention_class": entry.retention,
    }
    if entry.tables:
        metadata["catalog/tables"] = ", ".join(entry.tables)
        metadata["dagster/column_schema"] = column_schema(entry.tables)
    return metadata


def _with_entry(spec: dg.AssetSpec) -> dg.AssetSpec:
    entry = ASSETS.get(spec.key.to_user_string())
    if entry is None:  # the catalog check names it; the asset itself stays loadable
        return spec
    return spec.replace_attributes(
        owners=sorted({*spec.owners, entry.owner}),
        tags={**spec.tags, "classification": entry.classification, "retention_class": entry.retention},
        metadata={**spec.metadata, **catalog_metadata(entry)},
    )


def with_catalog(assets: Sequence[dg.AssetsDefinition | dg.AssetSpec]) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The same assets, each carrying its catalog entry as owners, tags and metadata."""
    return list(dg.map_asset_specs(_with_entry, assets))


# -- quality status from the Dagster instance ---------------------------------------------------------


def quality_records(instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey]) -> list[dict[str, Any]]:
    """The latest evaluation of each check (any partition), or None for never evaluated."""
    keys = list(check_keys)
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys) if keys else {}
    result = []
    for key in keys:
        record = records.get(key)
        entry: dict[str, Any] = {"asset": key.asset_key.to_user_string(), "check": key.name, "passed": None,
                                 "severity": None, "evaluated_at": None, "partition": None}
        if record is not None and record.status is not AssetCheckExecutionRecordStatus.PLANNED:
            event = record.event.dagster_event if record.event else None
            evaluation = event.event_specific_data if event else None
            entry |= {"passed": bool(getattr(evaluation, "passed", record.status.value == "SUCCEEDED")),
                      "severity": getattr(getattr(evaluation, "severity", None), "value", None),
                      "evaluated_at": datetime.fromtimestamp(record.create_timestamp, UTC).isoformat(),
                      "partition": record.partition}
        result.append(entry)
    return result


def code_location() -> tuple[list[str], list[dg.AssetCheckKey]]:
    """Asset keys and check keys of the code location (imported late: definitions imports this module)."""
    from encaptio_data.definitions import defs

    graph = defs.resolve_asset_graph()
    return sorted(k.to_user_string() for k in graph.get_all_asset_keys()), sorted(graph.asset_check_keys)


def stored_quality_records(settings: Settings) -> list[dict[str, Any]]:
    """Quality status as recorded in the data dir's Dagster instance (the one `encaptio demo` and the UI use)."""
    home = settings.dagster_home
    if not (home / "dagster.yaml").exists():
        return []
    _, check_keys = code_location()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return quality_records(instance, check_keys)


# -- the compliance report ----------------------------------------------------------------------------


def _platform(database: DatabaseResource, object_store: ObjectStoreResource, vector_store: VectorStoreResource,
              cache: CacheResource) -> Platform:
    """A Platform over the run's resources, sharing the stores they already opened."""
    platform = Platform(database.settings())
    platform.db = database.get()
    platform.objects = object_store.get()
    platform.vectors = vector_store.get()
    platform.cache = cache.get()
    return platform


def store_report(platform: Platform, report: dict[str, Any]) -> dict[str, str]:
    """The report in three formats under compliance/reports/<time>; returns format → object key."""
    stamp = datetime.fromisoformat(report["generated_at"]).strftime("%Y%m%dT%H%M%SZ")
    stored = {}
    for suffix, render, content_type in ((".json", render_json, "application/json"),
                                         (".html", render_html, "text/html; charset=utf-8"),
                                         (".pdf", render_pdf, "application/pdf")):
        body = render(report)
        key = f"{REPORT_PREFIX}{stamp}{suffix}"
        platform.objects.put(key, body.encode() if isinstance(body, str) else body, content_type=content_type)
        stored[suffix.lstrip(".")] = key
    return stored


@dg.asset(
    group_name=GOVERNANCE_GROUP,
    owners=OWNERS,
    kinds={"python", "sql", "s3", "pdf"},
    deps=[dg.AssetKey("retention_purge"), dg.AssetKey("restore_drill_evidence"), dg.AssetKey("pii_findings")],
    check_specs=[dg.AssetCheckSpec(
        CATALOG_COMPLETE, asset="compliance_report",
        description="Every table, column and asset is in the data catalog (classified, with owner and retention "
                    "class), and no text column outside the personal classification holds PII in a sample of "
                    "its values.")],
    description=(
        "The compliance report: the state of every promise at the time of the run. Data subject requests by "
        "status and deadline (overdue ones named by id), retention adherence (data past its retention and "
        "data kept by legal holds), consent coverage per purpose, backup freshness and the last restore drill's "
        "RTO/RPO, the latest evaluation of every quality check, catalog completeness and PII in unclassified "
        "columns, and audit-chain verification. Stored as JSON, HTML and PDF under compliance/reports/ in the "
        "object store; a section whose store is down is marked unavailable with the reason."
    ),
)
def compliance_report(context: dg.AssetExecutionContext, database: DatabaseResource,
                      object_store: ObjectStoreResource, vector_store: VectorStoreResource,
                      cache: CacheResource) -> dg.MaterializeResult:
    platform = _platform(database, object_store, vector_store, cache)
    asset_keys, check_keys = code_location()
    report = build_compliance_report(platform, quality=lambda: quality_records(context.instance, check_keys),
                                     asset_keys=asset_keys)
    stored = store_report(platform, report)
    counts = report_counts(report)
    for name, reason in report["unavailable"].items():
        context.log.warning(f"compliance report: section {name} unavailable: {reason}")
    requests = report["sections"]["requests"]
    overdue = [{k: r[k] for k in ("id", "type", "status", "due_at", "days_overdue")}
               for r in requests.get("overdue", [])]
    catalog = report["sections"]["catalog"]
    catalog_passed = catalog["status"] == "ok"
    alerts = [{k: a[k] for k in ("table", "column", "entity_type", "rows")} for a in catalog.get("alerts", [])]
    return dg.MaterializeResult(
        metadata={
            "status": report["status"],
            "sections": dg.MetadataValue.json(report["summary"]),
            **{name: value for name, value in counts.items() if value is not None and name != "status"
               and not isinstance(value, list)},
            "unavailable": dg.MetadataValue.json(report["unavailable"]),
            "overdue_requests": dg.MetadataValue.md(markdown_table(overdue)),
            "report_objects": dg.MetadataValue.json(stored),
            "generated_at": report["generated_at"],
        },
        check_results=[dg.AssetCheckResult(
            check_name=CATALOG_COMPLETE, passed=catalog_passed, severity=dg.AssetCheckSeverity.WARN,
            metadata={"problems": dg.MetadataValue.json(catalog.get("problems", [])),
                      "pii_alerts": dg.MetadataValue.md(markdown_table(alerts)),
                      "columns_scanned": int(catalog.get("columns_scanned", 0)),
                      "unavailable": catalog.get("reason", "")})],
    )


compliance_report_job = dg.define_asset_job(
    "compliance_report_job", selection=[compliance_report],
    description="Build and store the compliance report and evaluate the catalog check.")

compliance_report_schedule = dg.ScheduleDefinition(
    name="compliance_report_schedule",
    job=compliance_report_job,
    cron_schedule="0 6 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly compliance report, Mondays 06:00 UTC (after the nightly purge, archive and backups).",
)

governance_assets = [compliance_report]
governance_jobs = [compliance_report_job]
governance_schedules = [compliance_report_schedule]

