"""Consistent, encrypted snapshots of the LanceDB vector tables in the object store.

A Lance table is a sequence of immutable versions: each version's manifest
(``_versions/<n>.manifest``) lists the data, deletion and index files it reads, and no file is
ever changed once written. So a consistent snapshot is a copy of one version's files, taken
while writers go on adding versions. The version is tagged for the length of the copy so that a
concurrent cleanup cannot delete a file before it is copied; the tag is removed afterwards,
because a tag pins its files for good: it would make every later cleanup (the hourly index
maintenance, and the physical deletion an erasure relies on) fail or keep the erased rows.

Each file is sealed with the same AES-256-GCM format as the database backups and stored under
``backups/lancedb/<snapshot>/<table>.lance/<path>.enc`` beside a ``manifest.json``. A restore
copies them into a fresh directory and opens that version; rows whose content no longer exists
in the database (erased since the snapshot) are pruned, because the vectors are derived data
and the database is the truth. Snapshots, like every backup, are kept for the 30-day rolling
window by the retention purge (``lifecycle.purge``, data class ``backups``), the same window the
table's own version cleanup keeps (``search.index.RECOVERY_WINDOW``, not LanceDB's 7-day default).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import sqlalchemy as sa

from encaptio_data import audit
from encaptio_data.db.enums import BackupKind, BackupStatus
from encaptio_data.db.models import Backup, Content, utcnow
from encaptio_data.errors import NotFoundError
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle.backup import (
    BackupError,
    BackupIntegrityError,
    private_workdir,
    set_backup_row,
    seal,
    unseal,
)
from encaptio_data.platform import Platform
from encaptio_data.search.index import CHUNKS_TABLE

SNAPSHOT_PREFIX = "backups/lancedb/"
_STAMP = "%Y%m%dT%H%M%S.%fZ"


class _Hashing(io.RawIOBase):
    """Counts and hashes the bytes read through it."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._source.read(len(buffer))
        if not chunk:
            return 0
        buffer[: len(chunk)] = chunk
        self.digest.update(chunk)
        self.size += len(chunk)
        return len(chunk)


def _filesystem(platform: Platform, base_uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem and root path for a table's base URI (a directory or s3://)."""
    import pyarrow.fs as pafs

    parts = urlsplit(base_uri)
    if parts.scheme == "s3":
        settings = platform.settings
        endpoint = settings.s3_endpoint_url
        options: dict[str, Any] = {"region": settings.s3_region}
        if endpoint:
            endpoint_parts = urlsplit(endpoint)
            options |= {"endpoint_override": endpoint_parts.netloc, "scheme": endpoint_parts.scheme or "https"}
        if os.environ.get("AWS_ACCESS_KEY_ID"):
            options |= {"access_key": os.environ["AWS_ACCESS_KEY_ID"],
                        "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                        "session_token": os.environ.get("AWS_SESSION_TOKEN")}
        return pafs.S3FileSystem(**options), f"{parts.netloc}{parts.path}".rstrip("/")
    path = parts.path if parts.scheme == "file" else base_uri
    return pafs.LocalFileSystem(), path.rstrip("/")


def _version_files(table: Any, version: int) -> tuple[str, list[dict[str, str]]]:
    rows = [row for row in table.to_lance().tracked_files(min_version=version).read_all().to_pylist()
            if row["version"] == version]
    if not any(row["type"] == "manifest" for row in rows):
        raise BackupError(f"vector table {table.name} version {version} has no manifest (cleaned up meanwhile?)")
    base = {row["base_uri"] for row in rows}
    if len(base) != 1:
        raise BackupError(f"vector table {table.name} version {version} spans several base URIs {sorted(base)}")
    return base.pop(), sorted(({"path": row["path"], "type": row["type"]} for row in rows), key=lambda r: r["path"])


def snapshot_vectors(platform: Platform, *, table_name: str = CHUNKS_TABLE, actor: str | None = None) -> dict[str, Any]:
    """Copy the table's current version, encrypted, to the object store; returns the manifest summary."""
    actor = actor or platform.settings.operator or "system:backup"
    try:
        table = platform.vectors.open_table(table_name)
    except NotFoundError:
        return {"snapshot_id": None, "table": table_name, "status": "no table", "files": 0}
    keys = KeyStore(platform.settings.keys_dir)
    snapshot_id = uuid.uuid4()
    started = time.monotonic()
    now = utcnow()
    version = table.version
    tag = f"encaptio-snapshot-{snapshot_id.hex[:12]}"
    prefix = f"{SNAPSHOT_PREFIX}{now.strftime(_STAMP)}-{snapshot_id}/"
    with platform.db.session() as session:
        session.add(Backup(id=snapshot_id, store="lancedb", kind=BackupKind.SNAPSHOT, status=BackupStatus.RUNNING))
    table.tags.create(tag, version)
    try:
        base_uri, files = _version_files(table, version)
        filesystem, root = _filesystem(platform, base_uri)
        rows = table.to_lance().checkout_version(version).count_rows()
        total = 0
        for entry in files:
            with filesystem.open_input_stream(f"{root}/{entry['path']}") as raw:
                hashing = _Hashing(raw)
                stored = platform.objects.put(
                    f"{prefix}{table_name}.lance/{entry['path']}.enc",
                    seal(keys, io.BufferedReader(hashing), label=f"{snapshot_id}/{entry['path']}"),
                    metadata={"snapshot-id": str(snapshot_id)})
            entry |= {"bytes": hashing.size, "sha256": hashing.digest.hexdigest(), "key": stored.key,
                      "version_id": stored.version_id, "stored_sha256": stored.sha256}
            total += hashing.size
        manifest = {"snapshot_id": str(snapshot_id), "store": "lancedb", "table": table_name, "version": version,
                    "tag": tag, "created_at": now.isoformat(), "rows": rows, "files": files, "bytes": total,
                    "source": base_uri, "key_id": keys.master_key_id(), "prefix": prefix,
                    "manifest_key": f"{prefix}manifest.json",
                    "seconds": round(time.monotonic() - started, 3)}
        platform.objects.put(f"{prefix}manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode(),
                             content_type="application/json", metadata={"snapshot-id": str(snapshot_id)})
    except Exception as exc:
        set_backup_row(platform.db, snapshot_id, status=BackupStatus.FAILED, finished_at=utcnow(),
                       manifest={"error": str(exc)[:500]})
        raise
    finally:
        table.tags.delete(tag)
    set_backup_row(platform.db, snapshot_id, status=BackupStatus.SUCCEEDED, finished_at=utcnow(), location=prefix,
             size_bytes=total, key_id=keys.master_key_id(), manifest=manifest)
    audit.append(platform.db, actor=actor, action="backup.completed", target=str(snapshot_id),
                 details={"store": "lancedb", "table": table_name, "version": version, "files": len(files)})
    return {"snapshot_id": str(snapshot_id), "table": table_name, "version": version, "rows": rows,
            "files": len(files), "bytes": total, "location": prefix, "status": "succeeded",
            "seconds": manifest["seconds"]}


def list_snapshots(platform: Platform) -> list[dict[str, Any]]:
    """Snapshots in the object store, oldest first (the time is in each key)."""
    found = []
    for version in platform.objects.list(SNAPSHOT_PREFIX):
        rest = version.key[len(SNAPSHOT_PREFIX):]
        folder, _, name = rest.partition("/")
        if name != "manifest.json":
            continue
        stamp, _, snapshot_id = folder.partition("-")
        try:
            created = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
        except ValueError:
            continue
        found.append({"snapshot_id": snapshot_id, "created_at": created, "manifest_key": version.key,
                      "prefix": f"{SNAPSHOT_PREFIX}{folder}/"})
    return sorted(found, key=lambda s: s["created_at"])


def _snapshot(platform: Platform, snapshot_id: str | None) -> dict[str, Any]:
    snapshots = list_snapshots(platform)
    if not snapshots:
        raise NotFoundError(f"no vector snapshot in {platform.objects.uri}/{SNAPSHOT_PREFIX}")
    if snapshot_id is None:
        return snapshots[-1]
    for entry in snapshots:
        if entry["snapshot_id"] == snapshot_id:
            return entry
    raise NotFoundError(f"no vector snapshot {snapshot_id}")


def restore_vectors(platform: Platform, target: Path | str, *, snapshot_id: str | None = None,
                    prune: bool = True) -> dict[str, Any]:
    """Restore a snapshot (default the latest) into the directory `target`, or "live" to replace
    the platform's own local table; every file is authenticated and its sha256 checked."""
    import lancedb

    entry = _snapshot(platform, snapshot_id)
    manifest = json.loads(platform.objects.get(entry["manifest_key"]))
    keys = KeyStore(platform.settings.keys_dir)
    started = time.monotonic()
    live = str(target) == "live"
    if live:
        live_root = Path(platform.settings.resolved_lancedb_uri)
        if "://" in str(live_root):
            raise BackupError("restoring over a vector store on S3 is not supported: restore into a directory and "
                              "upload that table")
        live_root.mkdir(parents=True, exist_ok=True)
        with private_workdir(".vector-restore-", parent=live_root) as work:
            result = _restore_into(platform, keys, manifest, work, prune=prune)
            current = live_root / f"{manifest['table']}.lance"
            retired = live_root / f".{manifest['table']}.lance.replaced-{uuid.uuid4().hex[:8]}"
            if current.exists():
                os.replace(current, retired)
            os.replace(work / f"{manifest['table']}.lance", current)
            shutil.rmtree(retired, ignore_errors=True)
        result["target"] = "live"
    else:
        directory = Path(target)
        if (directory / f"{manifest['table']}.lance").exists():
            raise BackupError(f"{directory} already holds a table {manifest['table']!r}")
        directory.mkdir(parents=True, exist_ok=True)
        result = _restore_into(platform, keys, manifest, directory, prune=prune)
        result["target"] = str(directory)
        lancedb.connect(str(directory)).open_table(manifest["table"])
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _restore_into(platform: Platform, keys: KeyStore, manifest: dict[str, Any], directory: Path, *,
                  prune: bool) -> dict[str, Any]:
    import lancedb
    from lancedb.expr import col

    table_dir = directory / f"{manifest['table']}.lance"
    for entry in manifest["files"]:
        destination = table_dir / entry["path"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open(destination, "wb") as sink, platform.objects.open(entry["key"], entry["version_id"]) as stream:
            opened = unseal(keys, stream, sink, name=entry["key"])
        expected_label = f"{manifest['snapshot_id']}/{entry['path']}"
        if opened["plaintext_sha256"] != entry["sha256"] or opened["label"] != expected_label:
            raise BackupIntegrityError(f"{entry['key']} does not match the snapshot manifest: refused")
    table = lancedb.connect(str(directory)).open_table(manifest["table"])
    if table.version != manifest["version"] or table.count_rows() != manifest["rows"]:
        raise BackupIntegrityError(f"restored vector table is version {table.version} with {table.count_rows()} rows, "
                                   f"the snapshot says version {manifest['version']} with {manifest['rows']}: refused")
    pruned = 0
    if prune and "content_id" in table.schema.names and table.count_rows():
        with platform.db.session() as session:
            existing = {str(c) for c in session.scalars(sa.select(Content.id))}
        stale = {row["content_id"] for row in table.to_lance().to_table(columns=["content_id"]).to_pylist()} - existing
        if stale:
            before = table.count_rows()
            table.delete(col("content_id").isin(sorted(stale)))
            pruned = before - table.count_rows()
    return {"snapshot_id": manifest["snapshot_id"], "table": manifest["table"], "version": manifest["version"],
            "rows": manifest["rows"], "rows_pruned": pruned, "files": len(manifest["files"])}
