"""Backup assets: database backups, vector snapshots, restore-drill evidence, the object replica.

Thin glue over ``encaptio_data.lifecycle`` (backup, snapshots, drill, replica). Metadata carries
ids, counts, timings and check names, never file names or row contents: Dagster's event log is
not reached by erasure.
"""

import os

import dagster as dg

from encaptio_data.assets.metadata import OWNERS, markdown_table
from encaptio_data.authz import system_principal
from encaptio_data.lifecycle.backup import run_backup
from encaptio_data.lifecycle.drill import run_drill
from encaptio_data.lifecycle.replica import (
    NONCURRENT_VERSION_EXPIRY,
    abort_stale_multipart,
    expire_noncurrent,
    sync_replica,
    version_protection,
)
from encaptio_data.lifecycle.snapshots import snapshot_vectors
from encaptio_data.platform import Platform
from encaptio_data.resources import DatabaseResource, ObjectStoreResource, VectorStoreResource
from encaptio_data.settings import get_settings
from encaptio_data.stores.objects import ObjectStore, open_object_store

BACKUP_GROUP = "lifecycle"
DRILL_PASSED = "drill_passed"


class ReplicaStoreResource(dg.ConfigurableResource):
    """The object store's replica: another region's bucket (s3://bucket[/prefix]) or a directory.

    Unset (and ENCAPTIO_REPLICA_OBJECT_STORE unset when the run starts) means no replica is
    configured; the replica asset then says so instead of pretending to copy.
    """

    object_store: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    def target(self) -> str | None:
        return self.object_store or os.environ.get("ENCAPTIO_REPLICA_OBJECT_STORE") or None

    def get(self) -> ObjectStore | None:
        target = self.target()
        if target is None:
            return None
        overrides: dict[str, object] = {"object_store": target}
        if self.s3_endpoint_url:
            overrides["s3_endpoint_url"] = self.s3_endpoint_url
        if self.s3_region:
            overrides["s3_region"] = self.s3_region
        return open_object_store(get_settings(**overrides))


def _platform(database: DatabaseResource, object_store: ObjectStoreResource,
              vector_store: VectorStoreResource | None = None) -> Platform:
    """A Platform over the run's resources, sharing the stores they already opened."""
    platform = Platform(database.settings())
    platform.db = database.get()
    platform.objects = object_store.get()
    if vector_store is not None:
        platform.vectors = vector_store.get()
    return platform


class BackupConfig(dg.Config):
    kind: str = "full"


@dg.asset(
    group_name=BACKUP_GROUP,
    owners=OWNERS,
    kinds={"python", "sqlite", "postgres"},
    description=(
        "Backups of the relational store. Embedded default: an online SQLite snapshot (the live file pinned by "
        "a read transaction no checkpoint writes under, else the backup API), AES-256-GCM under a per-backup data key wrapped by the master key, in the object store "
        "under backups/sqlite/ with a manifest of row counts and digests per table. Production: pgBackRest full "
        "(both repositories) or incremental (repo1) backups with continuous WAL archiving, a named restore point "
        "with its manifest, and `pgbackrest verify` after each backup. Config `kind`: full | incremental."
    ),
)
def database_backups(context: dg.AssetExecutionContext, config: BackupConfig, database: DatabaseResource,
                     object_store: ObjectStoreResource) -> dg.MaterializeResult:
    platform = _platform(database, object_store)
    result = run_backup(platform, config.kind, operator=system_principal("dagster", run=context.run.run_id[:8]))
    context.log.info(f"backup {result['backup_id']} ({result['store']}, {result['kind']}) in {result['seconds']}s")
    metadata = {
        "backup_id": result["backup_id"],
        "store": result["store"],
        "kind": result["kind"],
        "size_bytes": dg.MetadataValue.int(int(result["size_bytes"] or 0)),
        "snapshot_at": result["snapshot_at"],
        "tables": result["tables"],
        "rows": dg.MetadataValue.int(result["rows"]),
        "seconds": dg.MetadataValue.float(float(result["seconds"])),
        "phases": dg.MetadataValue.json(result["phases"]),
    }
    if "snapshot_method" in result:
        metadata["snapshot_method"] = result["snapshot_method"]
    if "verify" in result:
        metadata["pgbackrest_verify"] = dg.MetadataValue.json(result["verify"])
        metadata["restore_point"] = result["restore_point"]
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=BACKUP_GROUP,
    owners=OWNERS,
    kinds={"python", "lancedb"},
    description=(
        "Encrypted snapshots of the LanceDB chunk table: the current version is tagged for the length of the "
        "copy, its immutable files (version manifest, data, deletion and index files) are sealed with AES-256-GCM "
        "into backups/lancedb/<snapshot>/ with a manifest, and the tag is removed so later cleanups and erasures "
        "are never blocked. Kept for the 30-day rolling window like every backup."
    ),
)
def vector_snapshots(context: dg.AssetExecutionContext, database: DatabaseResource,
                     object_store: ObjectStoreResource, vector_store: VectorStoreResource) -> dg.MaterializeResult:
    platform = _platform(database, object_store, vector_store)
    result = snapshot_vectors(platform, actor=f"dagster:{context.run.run_id[:8]}")
    return dg.MaterializeResult(metadata={
        "snapshot_id": str(result["snapshot_id"]),
        "status": result["status"],
        "table_version": result.get("version", 0),
        "rows": dg.MetadataValue.int(int(result.get("rows", 0))),
        "files": result["files"],
        "bytes": dg.MetadataValue.int(int(result.get("bytes", 0))),
    })


@dg.asset(
    group_name=BACKUP_GROUP,
    owners=OWNERS,
    kinds={"python", "sqlite", "postgres"},
    deps=[database_backups],
    check_specs=[dg.AssetCheckSpec(DRILL_PASSED, asset="restore_drill_evidence",
                                   description="Every check of the drill passed: checksums, decryption, integrity, "
                                               "manifest, point-in-time canaries, ledger replay.")],
    description=(
        "Evidence that the backups restore: the latest backup and a point in time restored into scratch "
        "databases, checked (sha256 and authentication, PRAGMA integrity_check or pg_amcheck and page "
        "checksums, row counts and digests against the backup's manifest, canaries on each side of the "
        "target time, the erasure ledger replayed), with the measured recovery time (RTO) and data-loss "
        "window (RPO). A failed drill fails its check and alerts (audit entry, log, ENCAPTIO_ALERT_WEBHOOK)."
    ),
)
def restore_drill_evidence(context: dg.AssetExecutionContext, database: DatabaseResource,
                           object_store: ObjectStoreResource) -> dg.MaterializeResult:
    platform = _platform(database, object_store)
    result = run_drill(platform, operator=system_principal("dagster", run=context.run.run_id[:8]))
    checks = [{"check": c["name"], "passed": c["passed"]} for c in result["checks"]]
    if not result["passed"]:
        context.log.error(f"restore drill {result['drill_id']} failed: "
                          + ", ".join(c["check"] for c in checks if not c["passed"]))
    summary = {
        "drill_id": result["drill_id"],
        "passed": result["passed"],
        "rto_seconds": dg.MetadataValue.float(float(result["rto_seconds"] or 0.0)),
        "rpo_seconds": dg.MetadataValue.float(float(result["rpo_seconds"] or 0.0)),
        "backup_id": str(result["backup_id"]),
        "checks": dg.MetadataValue.md(markdown_table(checks, limit=40)),
    }
    restores = [{k: r.get(k) for k in ("restore", "target", "rto_seconds", "rpo_seconds", "skipped") if k in r}
                for r in result["restores"]]
    return dg.MaterializeResult(
        metadata={**summary, "restores": dg.MetadataValue.json(restores),
                  "evidence": dg.MetadataValue.json(result.get("evidence", {}))},
        check_results=[dg.AssetCheckResult(
            check_name=DRILL_PASSED, passed=result["passed"],
            metadata={"failed": dg.MetadataValue.json([c["check"] for c in checks if not c["passed"]]),
                      "rto_seconds": summary["rto_seconds"], "rpo_seconds": summary["rpo_seconds"]})],
    )


@dg.asset(
    group_name=BACKUP_GROUP,
    owners=OWNERS,
    kinds={"python", "s3"},
    description=(
        "The object store's replica (ENCAPTIO_REPLICA_OBJECT_STORE, another region's bucket): every object version "
        "copied once (tracked by source version id), the source's current state and erasures mirrored. Also "
        "enforces the version lifecycle ourselves (S3 rules are not enforced by moto and cannot see legal holds): "
        "noncurrent versions older than 30 days are deleted from both stores unless a content row points at them "
        "or a legal hold covers them, and the replica's multipart uploads open for over 7 days are aborted."
    ),
)
def object_replica(database: DatabaseResource, object_store: ObjectStoreResource,
                   replica_store: ReplicaStoreResource) -> dg.MaterializeResult:
    source = object_store.get()
    replica = replica_store.get()
    protect = version_protection(database.get())
    metadata: dict[str, object] = {"source": source.uri, "replica_configured": replica is not None}
    if replica is not None:
        synced = sync_replica(source, replica)
        metadata |= {"replica": replica.uri, "copied": synced["copied"],
                     "bytes_copied": dg.MetadataValue.int(synced["bytes_copied"]),
                     "versions_removed": synced["versions_removed"], "delete_markers": synced["delete_markers"],
                     "keys": synced["keys"]}
        metadata["replica_expiry"] = dg.MetadataValue.json(
            expire_noncurrent(replica, NONCURRENT_VERSION_EXPIRY, protect=protect))
        metadata["replica_multipart"] = dg.MetadataValue.json(abort_stale_multipart(replica))
    metadata["source_expiry"] = dg.MetadataValue.json(expire_noncurrent(source, NONCURRENT_VERSION_EXPIRY,
                                                                        protect=protect))
    return dg.MaterializeResult(metadata=metadata)


lifecycle_backup_assets = [database_backups, vector_snapshots, restore_drill_evidence, object_replica]
