"""The object replica and the version lifecycle our code enforces (local stores and moto's S3)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from encaptio_data.content.uploads import register_uploads, upload_key
from encaptio_data.db.enums import HoldScope
from encaptio_data.db.models import Capsule, LegalHold, utcnow
from encaptio_data.lifecycle.replica import (
    SOURCE_VERSION,
    ReplicaError,
    abort_stale_multipart,
    expire_noncurrent,
    sync_replica,
    version_protection,
)
from encaptio_data.platform import Platform
from encaptio_data.stores.objects import LocalObjectStore, ObjectStore, S3ObjectStore
from tests.privacy.conftest import plant


def _s3(endpoint: str) -> S3ObjectStore:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"encaptio-replica-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return S3ObjectStore(bucket, prefix="objects", endpoint_url=endpoint, sse=None)


@pytest.fixture(params=["local", "s3"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ObjectStore, ObjectStore]]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "source"), LocalObjectStore(tmp_path / "replica")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        yield _s3(endpoint), _s3(endpoint)


def _contents(store: ObjectStore, key: str) -> list[bytes]:
    return [store.get(key, v.version_id) for v in store.list_versions(key) if v.key == key and not v.is_delete_marker]


def test_sync_copies_each_version_once_and_mirrors_current_state_and_erasures(
        stores: tuple[ObjectStore, ObjectStore]) -> None:
    source, replica = stores
    source.put("docs/a", b"a1")
    source.put("docs/a", b"a2", metadata={"note": "second"})
    source.put("docs/b", b"b1")
    source.delete("docs/b")

    first = sync_replica(source, replica)
    assert first["copied"] == 3 and first["delete_markers"] == 1
    assert _contents(replica, "docs/a") == [b"a2", b"a1"] and replica.get("docs/a") == b"a2"
    latest = replica.head("docs/a")
    assert latest.metadata["note"] == "second"
    assert latest.metadata[SOURCE_VERSION] == source.head("docs/a").version_id
    assert not replica.exists("docs/b") and _contents(replica, "docs/b") == [b"b1"]

    again = sync_replica(source, replica)
    assert again["copied"] == 0 and again["delete_markers"] == 0 and again["versions_removed"] == 0

    source.put("docs/c", b"c1")
    newer = source.put("docs/c", b"c2")
    sync_replica(source, replica)
    source.delete("docs/c", newer.version_id)  # the older version is current again
    source.delete_all_versions("docs/a")  # an erasure
    mirrored = sync_replica(source, replica)
    assert mirrored["versions_removed"] == 3
    assert _contents(replica, "docs/a") == [] and not replica.exists("docs/a")
    assert replica.get("docs/c") == b"c1" and _contents(replica, "docs/c") == [b"c1"]


def test_sync_refuses_to_empty_the_replica_because_the_source_was_emptied(tmp_path: Path) -> None:
    source, replica = LocalObjectStore(tmp_path / "source"), LocalObjectStore(tmp_path / "replica")
    for i in range(20):
        source.put(f"k/{i}", str(i).encode())
    sync_replica(source, replica)
    for i in range(20):
        source.delete_all_versions(f"k/{i}")
    with pytest.raises(ReplicaError, match="refused"):
        sync_replica(source, replica)
    assert len(list(replica.list("k/"))) == 20
    assert sync_replica(source, replica, max_delete_fraction=1.0)["versions_removed"] == 20


def test_noncurrent_versions_expire_by_the_injected_clock_never_the_current(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("k", b"1")
    store.put("k", b"2")
    current = store.put("k", b"3")
    store.put("gone", b"x")
    store.delete("gone")
    now = utcnow()

    assert expire_noncurrent(store, timedelta(days=30), now + timedelta(days=29))["versions_deleted"] == 0
    assert len(_contents(store, "k")) == 3
    report = expire_noncurrent(store, timedelta(days=30), now + timedelta(days=31))
    assert report["versions_deleted"] == 3 and report["delete_markers_removed"] == 1
    assert _contents(store, "k") == [b"3"] and store.head("k").version_id == current.version_id
    assert list(store.list_versions("gone")) == []
    # Years later the current version is still there.
    expire_noncurrent(store, timedelta(days=30), now + timedelta(days=3650))
    assert store.get("k") == b"3"


def test_expiry_keeps_versions_a_content_row_reads_and_those_under_legal_hold(embedded: Platform) -> None:
    held, free = plant(embedded, "held"), plant(embedded, "free")
    register_uploads(embedded.db, embedded.objects)  # content rows now point at the first versions
    keys = {subject.canary: upload_key(subject.organization_id, subject.capsule_id, f"{subject.canary}.md")
            for subject in (held, free)}
    for key in keys.values():
        embedded.objects.put(key, b"a newer version the pipeline has not registered yet")
    stray = upload_key(free.organization_id, free.capsule_id, "stray.md")
    embedded.objects.put(stray, b"old")
    embedded.objects.put(stray, b"new")
    with embedded.db.session() as session:
        capsule = session.get(Capsule, held.capsule_id)
        session.add(LegalHold(organization_id=capsule.organization_id, scope=HoldScope.CAPSULE, scope_id=capsule.id,
                              reason="litigation", placed_by="counsel@acme.test"))

    report = expire_noncurrent(embedded.objects, timedelta(days=30), utcnow() + timedelta(days=60),
                               protect=version_protection(embedded.db))
    assert report["versions_deleted"] == 1 and report["protected"] == 2
    assert _contents(embedded.objects, stray) == [b"new"]
    for key in keys.values():
        assert len(_contents(embedded.objects, key)) == 2


def test_stale_multipart_uploads_are_aborted_after_seven_days(s3_endpoint: str, tmp_path: Path) -> None:
    store = _s3(s3_endpoint)
    client = store._client
    client.create_multipart_upload(Bucket=store.bucket, Key="objects/big.bin")
    # moto reports every upload as initiated at one fixed moment; the clock is injected from there.
    initiated = client.list_multipart_uploads(Bucket=store.bucket)["Uploads"][0]["Initiated"]
    assert abort_stale_multipart(store, now=initiated + timedelta(days=1)) == {
        "supported": True, "store": store.uri, "aborted": 0, "in_progress": 1}
    assert abort_stale_multipart(store, now=initiated + timedelta(days=8))["aborted"] == 1
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert abort_stale_multipart(LocalObjectStore(tmp_path / "local"))["store"] == "local"
