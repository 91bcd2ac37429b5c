"""Lifecycle: backups, restore drills, the object store replica, retention, archival and purge.

Backups and restore (this package's backup side):

* ``backup`` — ``run_backup``, ``list_backups``, ``verify_backup``, ``restore``: the SQLite
  online backup (AES-256-GCM, object store) on the embedded default, pgBackRest on PostgreSQL;
  every restore re-applies the erasure ledger read from the current database.
* ``pgbackrest`` — the stanza (config, WAL archiving, backups, verify, restores) and the
  scratch clusters restores are checked in; also the production S3 repository settings.
* ``snapshots`` — consistent, encrypted copies of a LanceDB table version.
* ``replica`` — copy every object version to a second store; noncurrent-version expiry and
  stale multipart uploads, enforced by our code with an injectable clock.
* ``drill`` — ``run_drill``: restore the latest backup and a point in time into scratch,
  check everything, measure RTO and RPO, record the evidence, alert on failure.

Retention as policy, legal holds, archival and purge live in ``retention``, ``archive`` and
``purge``; the purge also enforces the backups' 30-day rolling window.

Nothing here imports Dagster; assets/jobs/schedules ``lifecycle.py`` (backups) and
``retention.py`` are the glue.
"""
