"""Lifecycle assets: the nightly purge of whatever is past retention, and the cold archive.

Thin glue over ``encaptio_data.lifecycle``. Metadata names items by id and holds by id and
scope, never by the hold's free-text reason (counsel may have written a name there):
Dagster's event log is not reached by erasure.
"""

import dagster as dg

from encaptio_data.assets.metadata import OWNERS, markdown_table
from encaptio_data.authz import system_principal
from encaptio_data.lifecycle.archive import ARCHIVE_EVENTS_AFTER_DAYS, ARCHIVE_PREFIX, archive, verify_archive
from encaptio_data.lifecycle.purge import purge
from encaptio_data.platform import Platform
from encaptio_data.resources import CacheResource, DatabaseResource, ObjectStoreResource, VectorStoreResource

LIFECYCLE_GROUP = "lifecycle"
AUDIT_CHAIN_VERIFIES = "audit_chain_verifies"
ARCHIVE_MATCHES_MANIFESTS = "archive_matches_manifests"


def _platform(database: DatabaseResource, object_store: ObjectStoreResource,
              vector_store: VectorStoreResource | None = None, cache: CacheResource | None = None) -> Platform:
    """A Platform over the run's resources, sharing the stores they already opened."""
    platform = Platform(database.settings())
    platform.db = database.get()
    platform.objects = object_store.get()
    if vector_store is not None:
        platform.vectors = vector_store.get()
    if cache is not None:
        platform.cache = cache.get()
    return platform


def _held_rows(held: list[dict], data_class: str) -> list[dict]:
    return [{"class": data_class, "item": h["item"], "count": h.get("count", 1), "hold": h["hold_id"][:8],
             "scope": f"{h['scope']} {h['scope_id']}"} for h in held]


class PurgeConfig(dg.Config):
    dry_run: bool = False


@dg.asset(
    group_name=LIFECYCLE_GROUP,
    owners=OWNERS,
    kinds={"python", "sql", "s3", "lancedb", "redis"},
    check_specs=[dg.AssetCheckSpec(AUDIT_CHAIN_VERIFIES, asset="retention_purge",
                                   description="The audit hash chain still verifies after the purge (truncation "
                                               "keeps a checkpoint the chain is verified from).")],
    description=(
        "What the retention policies (`encaptio retention show`) say must go, gone from every store: soft-deleted "
        "capsules and content after their 30-day recovery window (rows, every object version, LanceDB rows made "
        "physical by compaction, cache keys, archived rows), raw interaction events past 90 days whose day is "
        "aggregated, analytics whose policy action is delete, backups past the 30-day rolling window, incomplete "
        "uploads after 7 days, stored exports once their 7-day link has expired and, once the audit module honours checkpoints, audit entries past retention. "
        "Legal holds win: held items stay and are listed with the hold. Idempotent; a crashed run is re-run."
    ),
)
def retention_purge(context: dg.AssetExecutionContext, config: PurgeConfig, database: DatabaseResource,
                    object_store: ObjectStoreResource, vector_store: VectorStoreResource, cache: CacheResource):
    from encaptio_data.audit import verify_chain

    platform = _platform(database, object_store, vector_store, cache)
    result = purge(platform, dry_run=config.dry_run,
                   operator=system_principal("dagster", run=context.run.run_id[:8]))
    held, skipped = [], []
    for name, report in result["classes"].items():
        held += _held_rows(report["held"], name)
        skipped += [{"class": name, **item} for item in report["skipped"]]
        for item in report["held"]:
            context.log.info(f"{name}: {item['item']} kept by legal hold {item['hold_id']}")
    yield dg.MaterializeResult(metadata={
        "dry_run": config.dry_run,
        "purged_total": result["totals"]["purged"],
        "held_total": result["totals"]["held"],
        "purged": dg.MetadataValue.json({name: r["purged"] for name, r in result["classes"].items()}),
        "held": dg.MetadataValue.md(markdown_table(held)),
        "skipped": dg.MetadataValue.md(markdown_table(skipped)),
    })
    chain = verify_chain(platform.db)
    yield dg.AssetCheckResult(check_name=AUDIT_CHAIN_VERIFIES, passed=chain.valid,
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"entries": chain.entries, "problem": chain.problem or ""})


class ArchiveConfig(dg.Config):
    dry_run: bool = False
    events_after_days: int = ARCHIVE_EVENTS_AFTER_DAYS


@dg.asset(
    group_name=LIFECYCLE_GROUP,
    owners=OWNERS,
    kinds={"python", "parquet", "s3"},
    deps=[dg.AssetKey("daily_engagement")],
    check_specs=[dg.AssetCheckSpec(ARCHIVE_MATCHES_MANIFESTS, asset="cold_archive",
                                   description="Every archived file exists with the sha256 its manifest records, "
                                               "and each manifest's files add up to its row count.")],
    description=(
        f"Cold data as Parquet under `{ARCHIVE_PREFIX}<dataset>/month=YYYY-MM/` with a manifest per partition "
        "(schema, row counts, sha256 of each file, time range), readable with `read_archive`: interaction events of "
        f"months older than {ARCHIVE_EVENTS_AFTER_DAYS} days whose days are aggregated (the days become final), and "
        "analytics aggregates past their retention where the policy action is archive. Rows leave the database "
        "only after their file read back identical and is in the manifest; legal holds keep rows where they are."
    ),
)
def cold_archive(context: dg.AssetExecutionContext, config: ArchiveConfig, database: DatabaseResource,
                 object_store: ObjectStoreResource):
    platform = _platform(database, object_store)
    result = archive(platform, dry_run=config.dry_run, events_after_days=config.events_after_days,
                     actor=f"dagster:{context.run.run_id[:8]}")
    files, held, skipped = [], [], []
    for name, report in result["datasets"].items():
        files += [{"dataset": name, "file": f["key"].removeprefix(ARCHIVE_PREFIX), "rows": f["rows"],
                   "bytes": f["bytes"], "sha256": f["sha256"][:16], "from": f["min"], "to": f["max"]}
                  for f in report["files"]]
        held += _held_rows(report["held"], name)
        skipped += [{"dataset": name, **item} for item in report["skipped"]]
    yield dg.MaterializeResult(metadata={
        "dry_run": config.dry_run,
        "rows_archived": dg.MetadataValue.json({n: r["rows_archived"] for n, r in result["datasets"].items()}),
        "rows_deleted": dg.MetadataValue.json({n: r["rows_deleted"] for n, r in result["datasets"].items()}),
        "partitions": dg.MetadataValue.json({n: r["partitions"] for n, r in result["datasets"].items()}),
        "manifest_preview": dg.MetadataValue.md(markdown_table(files)),
        "held": dg.MetadataValue.md(markdown_table(held)),
        "skipped": dg.MetadataValue.md(markdown_table(skipped)),
    })
    verification = verify_archive(platform.objects)
    yield dg.AssetCheckResult(check_name=ARCHIVE_MATCHES_MANIFESTS, passed=bool(verification["passed"]),
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"files_checked": verification["files_checked"],
                                        "problems": dg.MetadataValue.json(verification["problems"])})


lifecycle_assets = [retention_purge, cold_archive]
