"""The object store's replica, and the version lifecycle our own code enforces.

``sync_replica`` makes a second store (another region's bucket in production) hold every
version the source holds: each version not yet copied is copied, oldest first, carrying its
source version id in the replica's metadata, which is how the next run knows it is there. It
mirrors the source's current state too (a delete marker, or which version is current) and,
because an erasure must reach every copy, it removes replica versions whose source version no
longer exists (``delete_all_versions`` in the source, or expiry). A run that would remove more
than ``max_delete_fraction`` of the replica stops short of it and says so: a source that was
wiped by mistake must not take its replica with it.

S3 lifecycle rules would do the expiry in AWS; moto does not enforce them, the local store has
none, and a rule cannot honour a legal hold. So ``expire_noncurrent`` implements the
noncurrent-version expiration here, with an injectable clock: a version becomes noncurrent when
a newer one (or a delete marker) is written, and is deleted once it has been noncurrent for
longer than the policy (30 days, the recovery window), unless a content row still points at it or
a legal hold covers it. The current version is never deleted. ``abort_stale_multipart`` aborts
multipart uploads left open for more than 7 days (on the local store: the equivalent partial
files); the retention purge does the same for the primary store, the replica job for the replica.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from operator import attrgetter
from typing import Any

import sqlalchemy as sa

from encaptio_data.content.uploads import UPLOADS_PREFIX
from encaptio_data.db.enums import HoldScope
from encaptio_data.db.models import Capsule, Content, LegalHold, utcnow
from encaptio_data.db.session import Database
from encaptio_data.errors import EncaptioError
from encaptio_data.stores.objects import LocalObjectStore, ObjectStore, ObjectVersion

SOURCE_VERSION = "source-version-id"
MULTIPART_MAX_AGE = timedelta(days=7)
# The platform's recovery window: a replaced or deleted object stays recoverable this long.
NONCURRENT_VERSION_EXPIRY = timedelta(days=30)


class ReplicaError(EncaptioError):
    """The replica could not be brought in line with its source, or refused to (mass deletion)."""


@dataclass
class _Key:
    """What the replica holds for one key, kept up to date as the sync writes."""

    versions: list[ObjectVersion] = field(default_factory=list)  # newest first

    @property
    def latest(self) -> ObjectVersion | None:
        return self.versions[0] if self.versions else None


def _by_key(versions: Iterable[ObjectVersion]) -> Iterable[tuple[str, list[ObjectVersion]]]:
    for key, group in groupby(versions, key=attrgetter("key")):
        yield key, list(group)


def _copy(source: ObjectStore, replica: ObjectStore, version: ObjectVersion) -> ObjectVersion:
    metadata = {**version.metadata, SOURCE_VERSION: version.version_id}
    with source.open(version.key, version.version_id) as stream:
        # expected_sha256: the replica refuses (and keeps nothing) if the bytes changed on the way.
        return replica.put(version.key, stream, content_type=version.content_type or "application/octet-stream",
                           metadata=metadata, expected_sha256=version.sha256)


def sync_replica(source: ObjectStore, replica: ObjectStore, *, prefix: str = "",
                 max_delete_fraction: float = 0.25) -> dict[str, Any]:
    """Bring the replica in line with the source; returns counts of what was done.

    Three passes: copy what is missing, remove what the source no longer has, then make each
    key's current state (a version or a delete marker) match. Removal comes before the current
    state, so a key whose newest version was deleted in the source is not copied twice.
    """
    held: dict[str, _Key] = {}
    copied_ids: set[tuple[str, str]] = set()
    for key, versions in _by_key(replica.list_versions(prefix)):
        held[key] = _Key(list(versions))
        copied_ids |= {(key, v.metadata[SOURCE_VERSION]) for v in versions if SOURCE_VERSION in v.metadata}
    report = {"copied": 0, "bytes_copied": 0, "current_restored": 0, "delete_markers": 0, "versions_removed": 0,
              "keys": 0, "removals_refused": 0}
    current: dict[str, ObjectVersion] = {}
    source_ids: set[tuple[str, str]] = set()
    for key, versions in _by_key(source.list_versions(prefix)):
        report["keys"] += 1
        current[key] = versions[0]
        state = held.setdefault(key, _Key())
        for version in reversed(versions):  # oldest first, so the newest ends up current
            if version.is_delete_marker:
                continue
            source_ids.add((key, version.version_id))
            if (key, version.version_id) in copied_ids:
                continue
            state.versions.insert(0, _copy(source, replica, version))
            copied_ids.add((key, version.version_id))
            report["copied"] += 1
            report["bytes_copied"] += version.size

    doomed = [(key, v) for key, state in held.items() for v in state.versions
              if SOURCE_VERSION in v.metadata and (key, v.metadata[SOURCE_VERSION]) not in source_ids]
    total = sum(len(state.versions) for state in held.values())
    if doomed and len(doomed) > max(10, max_delete_fraction * total):
        report["removals_refused"] = len(doomed)
        raise ReplicaError(f"sync would remove {len(doomed)} of {total} replica versions (more than "
                           f"{max_delete_fraction:.0%}): refused; if the source really lost them, run again with a "
                           "higher max_delete_fraction")
    for key, version in doomed:
        replica.delete(key, version.version_id)
        held[key].versions.remove(version)
        report["versions_removed"] += 1
    for key in {key for key, _ in doomed}:
        state = held[key]
        # Only delete markers left: they hide nothing, and S3 would keep them forever.
        if state.versions and all(v.is_delete_marker for v in state.versions):
            replica.delete_all_versions(key)
            state.versions.clear()

    for key, latest in current.items():
        state = held[key]
        mirrored = state.latest
        if latest.is_delete_marker:
            if mirrored is not None and not mirrored.is_delete_marker:
                replica.delete(key)
                state.versions.insert(0, ObjectVersion(key=key, version_id="", sha256="", size=0, content_type="",
                                                       last_modified=utcnow(), metadata={}, is_latest=True,
                                                       is_delete_marker=True))
                report["delete_markers"] += 1
        elif (mirrored is None or mirrored.is_delete_marker
              or mirrored.metadata.get(SOURCE_VERSION) != latest.version_id):
            # The source's current version is an older one again (its newer version or marker was
            # removed): copy it once more so the replica's current version matches.
            state.versions.insert(0, _copy(source, replica, latest))
            report["current_restored"] += 1
    report["source"] = source.uri
    report["replica"] = replica.uri
    return report


def expire_noncurrent(store: ObjectStore, older_than: timedelta, now: datetime | None = None, *, prefix: str = "",
                      protect: Callable[[ObjectVersion], bool] | None = None,
                      remove_expired_delete_markers: bool = True) -> dict[str, Any]:
    """Delete versions that have been noncurrent for longer than `older_than` (S3's
    NoncurrentVersionExpiration, counted from when the next newer version was written)."""
    now = now or utcnow()
    report = {"versions_deleted": 0, "bytes_deleted": 0, "protected": 0, "delete_markers_removed": 0, "keys": 0}
    for key, versions in _by_key(list(store.list_versions(prefix))):
        report["keys"] += 1
        kept = [versions[0]]  # the current version (or marker) is never touched
        for newer, version in zip(versions, versions[1:]):
            noncurrent_for = now - newer.last_modified
            if noncurrent_for <= older_than:
                kept.append(version)
                continue
            if protect is not None and not version.is_delete_marker and protect(version):
                report["protected"] += 1
                kept.append(version)
                continue
            store.delete(key, version.version_id)
            if version.is_delete_marker:
                report["delete_markers_removed"] += 1
            else:
                report["versions_deleted"] += 1
                report["bytes_deleted"] += version.size
        # S3's ExpiredObjectDeleteMarker: a marker with nothing left behind it hides nothing.
        if remove_expired_delete_markers and len(kept) == 1 and kept[0].is_delete_marker:
            store.delete(key, kept[0].version_id)
            report["delete_markers_removed"] += 1
    return report


def version_protection(db: Database) -> Callable[[ObjectVersion], bool]:
    """A `protect` for expire_noncurrent: True for object versions that must outlive the policy.

    Those are versions a content row still points at (the pipeline reads that exact version),
    and every version under an active legal hold (the uploads of a held organization, capsule,
    user's capsules or content item). A replica's versions are matched by their source version id.
    """
    prefixes: set[str] = set()
    keys: set[str] = set()
    with db.session() as session:
        referenced = {(key, version) for key, version in session.execute(
            sa.select(Content.object_key, Content.object_version))}
        holds = session.scalars(sa.select(LegalHold).where(LegalHold.released_at.is_(None))).all()
        for hold in holds:
            if hold.scope == HoldScope.ORGANIZATION:
                prefixes.add(f"{UPLOADS_PREFIX}{hold.scope_id}/")
            elif hold.scope == HoldScope.CAPSULE:
                capsule = session.get(Capsule, hold.scope_id)
                if capsule is not None:
                    prefixes.add(f"{UPLOADS_PREFIX}{capsule.organization_id}/{capsule.id}/")
            elif hold.scope == HoldScope.USER:
                for capsule in session.scalars(sa.select(Capsule).where(Capsule.owner_id == hold.scope_id)):
                    prefixes.add(f"{UPLOADS_PREFIX}{capsule.organization_id}/{capsule.id}/")
                keys |= set(session.scalars(sa.select(Content.object_key).where(Content.uploaded_by == hold.scope_id)))
            elif hold.scope == HoldScope.CONTENT:
                content = session.get(Content, hold.scope_id)
                if content is not None:
                    keys.add(content.object_key)

    def protected(version: ObjectVersion) -> bool:
        source_id = version.metadata.get(SOURCE_VERSION, version.version_id)
        return ((version.key, version.version_id) in referenced or (version.key, source_id) in referenced
                or version.key in keys or any(version.key.startswith(p) for p in prefixes))

    return protected


def abort_stale_multipart(store: ObjectStore, older_than: timedelta = MULTIPART_MAX_AGE,
                          now: datetime | None = None) -> dict[str, Any]:
    """Abort multipart uploads open for longer than `older_than` (they cost storage and are
    invisible to listings). The local store has no multipart uploads: its interrupted writes are
    swept instead, by file age (its clock is the file system's)."""
    if isinstance(store, LocalObjectStore):
        return {"supported": True, "store": "local", "aborted": store.sweep_incomplete(older_than)}
    client, bucket = getattr(store, "_client", None), getattr(store, "bucket", None)
    if client is None or bucket is None or not hasattr(client, "list_multipart_uploads"):
        return {"supported": False, "store": store.uri, "aborted": 0}
    now = now or utcnow()
    prefix = getattr(store, "prefix", "")
    aborted, kept = 0, 0
    paginator = client.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        for upload in page.get("Uploads", []):
            if now - upload["Initiated"] > older_than:
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
            else:
                kept += 1
    return {"supported": True, "store": store.uri, "aborted": aborted, "in_progress": kept}

