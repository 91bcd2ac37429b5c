"""Backup jobs: full (daily), incremental (hourly), the restore drill, and the object replica.

The full and incremental jobs materialize the same asset with a different `kind`, so there
is one backup code path; the full job also snapshots the vector table.
"""

import dagster as dg

from encaptio_data.assets.lifecycle import database_backups, object_replica, restore_drill_evidence, vector_snapshots

backup_full_job = dg.define_asset_job(
    "backup_full_job",
    selection=dg.AssetSelection.assets(database_backups, vector_snapshots),
    config={"ops": {"database_backups": {"config": {"kind": "full"}}}},
    description="Full database backup (both pgBackRest repositories, or a SQLite copy) and a vector table snapshot.",
    tags={"domain": "lifecycle"},
)

backup_incremental_job = dg.define_asset_job(
    "backup_incremental_job",
    selection=dg.AssetSelection.assets(database_backups),
    config={"ops": {"database_backups": {"config": {"kind": "incremental"}}}},
    description="Incremental database backup to repo1 (on SQLite, a complete copy: SQLite has no incremental one).",
    tags={"domain": "lifecycle"},
)

restore_drill_job = dg.define_asset_job(
    "restore_drill_job",
    selection=dg.AssetSelection.assets(restore_drill_evidence),
    description="Restore the latest backup and a point in time into scratch, check them, measure RTO and RPO. "
                "Run on demand as well as monthly.",
    tags={"domain": "lifecycle"},
)

replica_sync_job = dg.define_asset_job(
    "replica_sync_job",
    selection=dg.AssetSelection.assets(object_replica),
    description="Copy new object versions to the replica, mirror erasures, and expire noncurrent versions.",
    tags={"domain": "lifecycle"},
)

backup_jobs = [backup_full_job, backup_incremental_job, restore_drill_job, replica_sync_job]
