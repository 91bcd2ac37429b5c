"""One contract for both object stores, run against a local directory and moto's S3 server."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from encaptio_data.errors import IntegrityError, InvalidKeyError, ObjectNotFoundError, StoreUnavailableError
from encaptio_data.settings import get_settings
from encaptio_data.stores.objects import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    open_object_store,
    validate_key,
)

MiB = 1024 * 1024
BAD_KEYS = ["../x", "/abs", "a/../b", "a//b", "", "a\x00b", "k" * 2000, "a\\b", "a/./b", "trailing/", "tab\tkey"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raw_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(params=["local", "s3", "s3-prefixed"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return S3ObjectStore(
        bucket=request.getfixturevalue("s3_bucket"),
        prefix="tenant/objects" if request.param == "s3-prefixed" else "",
        endpoint_url=request.getfixturevalue("s3_endpoint"),
    )


@pytest.fixture(params=["local", "s3"])
def unusable_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A store whose every I/O would fail with something other than InvalidKeyError."""
    if request.param == "local":
        blocker = tmp_path / "a-file"
        blocker.write_bytes(b"")
        return LocalObjectStore(blocker / "objects")
    return S3ObjectStore(bucket="encaptio-unreachable", endpoint_url=f"http://127.0.0.1:{unused_port()}")


# The contract ------------------------------------------------------------------------------


def test_store_satisfies_the_protocol_and_is_usable(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    store.check()


def test_put_and_get_round_trip_with_metadata_and_content_type(store: ObjectStore) -> None:
    data = b"%PDF-1.7 quarterly report"
    version = store.put(
        "docs/report.pdf", data, content_type="application/pdf", metadata={"owner": "org-1", "source_id": "42"}
    )

    assert version.key == "docs/report.pdf"
    assert version.version_id
    assert version.sha256 == sha256(data)
    assert version.size == len(data)
    assert version.content_type == "application/pdf"
    assert version.metadata == {"owner": "org-1", "source_id": "42"}
    assert version.is_latest and not version.is_delete_marker
    assert version.last_modified.utcoffset() == timedelta(0)
    assert store.get("docs/report.pdf") == data
    assert store.head("docs/report.pdf") == version
    assert store.exists("docs/report.pdf")


def test_defaults_and_empty_objects(store: ObjectStore) -> None:
    version = store.put("empty", b"")

    assert version.content_type == "application/octet-stream"
    assert version.metadata == {}
    assert version.size == 0
    assert store.get("empty") == b""


def test_bytes_like_inputs_are_accepted(store: ObjectStore) -> None:
    store.put("from-bytearray", bytearray(b"abc"))
    store.put("from-memoryview", memoryview(b"def"))

    assert store.get("from-bytearray") == b"abc"
    assert store.get("from-memoryview") == b"def"


def test_every_put_is_a_new_version_and_old_versions_stay_readable(store: ObjectStore) -> None:
    first = store.put("k", b"one")
    second = store.put("k", b"two")
    third = store.put("k", b"three")

    assert len({first.version_id, second.version_id, third.version_id}) == 3
    assert store.get("k") == b"three"
    assert store.get("k", first.version_id) == b"one"
    assert store.get("k", second.version_id) == b"two"
    assert store.head("k", first.version_id).is_latest is False
    assert store.head("k", third.version_id).is_latest is True
    assert store.head("k", first.version_id).sha256 == sha256(b"one")


def test_list_returns_the_latest_version_of_each_key_in_key_order(store: ObjectStore) -> None:
    store.put("b/2", b"x")
    store.put("a/1", b"x")
    store.put("b/1", b"old")
    latest = store.put("b/1", b"new", content_type="text/plain", metadata={"kind": "note"})
    store.put("c", b"x")

    listed = list(store.list())

    assert [version.key for version in listed] == ["a/1", "b/1", "b/2", "c"]
    assert listed[1] == latest
    assert [version.key for version in store.list("b/")] == ["b/1", "b/2"]
    assert [version.key for version in store.list("b/1")] == ["b/1"]
    assert list(store.list("zzz")) == []


def test_list_versions_is_newest_first_per_key_and_filtered_by_prefix(store: ObjectStore) -> None:
    a1 = store.put("a", b"1", metadata={"n": "1"})
    a2 = store.put("a", b"22")
    b1 = store.put("b", b"333")

    entries = list(store.list_versions())

    assert [(entry.key, entry.version_id, entry.is_latest) for entry in entries] == [
        ("a", a2.version_id, True),
        ("a", a1.version_id, False),
        ("b", b1.version_id, True),
    ]
    assert entries[1] == store.head("a", a1.version_id)
    assert [entry.version_id for entry in store.list_versions("b")] == [b1.version_id]


def test_delete_hides_the_key_behind_a_marker_and_keeps_its_versions(store: ObjectStore) -> None:
    kept = store.put("k", b"data")
    store.put("other", b"x")

    store.delete("k")

    assert not store.exists("k")
    for read in (store.get, store.head, store.open):
        with pytest.raises(ObjectNotFoundError, match="'k'"):
            read("k")
    assert [version.key for version in store.list()] == ["other"]
    marker, version = store.list_versions("k")
    assert marker.is_delete_marker and marker.is_latest
    assert (marker.sha256, marker.size) == ("", 0)
    assert version.version_id == kept.version_id and not version.is_latest
    assert store.get("k", kept.version_id) == b"data"
    with pytest.raises(ObjectNotFoundError, match=marker.version_id):
        store.get("k", marker.version_id)


def test_removing_the_delete_marker_restores_the_key(store: ObjectStore) -> None:
    store.put("k", b"data")
    store.delete("k")
    marker = next(store.list_versions("k"))

    store.delete("k", marker.version_id)

    assert store.get("k") == b"data"
    assert [version.key for version in store.list()] == ["k"]


def test_delete_of_a_version_removes_it_for_good(store: ObjectStore) -> None:
    first = store.put("k", b"1")
    second = store.put("k", b"2")

    store.delete("k", second.version_id)

    assert store.get("k") == b"1"
    assert store.head("k") == store.head("k", first.version_id)
    assert store.head("k").is_latest
    with pytest.raises(ObjectNotFoundError, match=second.version_id):
        store.get("k", second.version_id)
    assert [version.version_id for version in store.list_versions("k")] == [first.version_id]


def test_versions_and_delete_markers_interleave_newest_first(store: ObjectStore) -> None:
    first = store.put("k", b"1")
    if isinstance(store, S3ObjectStore):
        # moto timestamps are whole seconds and it lists markers after versions, so only a
        # later second tells the older version from the marker there.
        time.sleep(1.1)
    store.delete("k")
    second = store.put("k", b"2")

    entries = list(store.list_versions("k"))

    assert [(entry.version_id, entry.is_delete_marker) for entry in entries] == [
        (second.version_id, False),
        (entries[1].version_id, True),
        (first.version_id, False),
    ]


def test_deleting_what_does_not_exist_is_a_no_op(store: ObjectStore) -> None:
    store.put("k", b"data")

    store.delete("never-written")
    store.delete("k", "0000000000000000deadbeef")

    assert list(store.list_versions("never-written")) == []
    assert store.get("k") == b"data"


def test_delete_all_versions_leaves_nothing_and_spares_keys_sharing_its_prefix(store: ObjectStore) -> None:
    first = store.put("a/b", b"1")
    store.put("a/b", b"2")
    store.delete("a/b")
    store.put("a/b", b"3")
    sibling = store.put("a/bc", b"keep me")

    assert store.delete_all_versions("a/b") == 4

    assert [version.key for version in store.list_versions("a/b")] == ["a/bc"]
    assert not store.exists("a/b")
    with pytest.raises(ObjectNotFoundError):
        store.get("a/b", first.version_id)
    assert store.head("a/bc") == sibling
    assert store.get("a/bc") == b"keep me"
    assert store.delete_all_versions("a/b") == 0


def test_unknown_keys_and_versions_are_named_in_the_error(store: ObjectStore) -> None:
    for read in (store.get, store.head, store.open):
        with pytest.raises(ObjectNotFoundError, match="'missing'"):
            read("missing")
    store.put("k", b"data")
    with pytest.raises(ObjectNotFoundError, match="no version 'nope' of object 'k'"):
        store.get("k", "nope")
    with pytest.raises(ObjectNotFoundError, match="'nope'"):
        store.head("k", "nope")
    assert not store.exists("missing")


def test_expected_sha256_mismatch_writes_nothing(store: ObjectStore) -> None:
    with pytest.raises(IntegrityError, match="'k'"):
        store.put("k", b"data", expected_sha256=sha256(b"other data"))
    with pytest.raises(IntegrityError, match="'k'"):
        store.put("k", io.BytesIO(b"data"), expected_sha256="0" * 64)

    assert list(store.list_versions()) == []
    assert store.put("k", b"data", expected_sha256=sha256(b"data").upper()).sha256 == sha256(b"data")


def test_non_bytes_data_raises_type_error_and_writes_nothing(store: ObjectStore) -> None:
    for data in ("text", 42, None, io.StringIO("text")):
        with pytest.raises(TypeError, match="bytes"):
            store.put("k", data)  # type: ignore[arg-type]

    assert list(store.list_versions()) == []


@pytest.mark.parametrize(
    "metadata",
    [{"Upper": "x"}, {"sha256": "x"}, {"note": "café"}, {"note": " padded"}, {"note": "x" * 3000}, {"n": 1}],
)
def test_metadata_is_held_to_what_survives_s3_headers(store: ObjectStore, metadata: dict) -> None:
    with pytest.raises(ValueError, match="metadata"):
        store.put("k", b"data", metadata=metadata)

    assert list(store.list_versions()) == []


def test_streaming_put_of_a_large_file_round_trips(store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(10):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            file.write(chunk)
        tail = os.urandom(12345)
        digest.update(tail)
        file.write(tail)

    with path.open("rb") as file:
        version = store.put("big/file.bin", file, content_type="application/x-test")

    assert version.size == 10 * MiB + 12345
    assert version.sha256 == digest.hexdigest()
    streamed = hashlib.sha256()
    with store.open("big/file.bin") as stream:
        while chunk := stream.read(MiB):
            streamed.update(chunk)
    assert streamed.hexdigest() == digest.hexdigest()
    assert sha256(store.get("big/file.bin")) == digest.hexdigest()
    assert store.head("big/file.bin") == version


def test_open_streams_the_same_bytes(store: ObjectStore) -> None:
    old = store.put("k", b"first version")
    store.put("k", b"0123456789" * 1000)

    with store.open("k") as stream:
        pieces = list(iter(lambda: stream.read(7), b""))
    with store.open("k", old.version_id) as stream:
        assert stream.read() == b"first version"
    with store.open("k") as stream:
        assert stream.read(3) == b"012"
    with store.open("k", verify=False) as stream:  # the same bytes, the caller authenticating them
        unverified = bytearray(10_000)
        assert stream.readinto(unverified) == 10_000 and not stream.read()
    with store.open("k", old.version_id, verify=False) as stream:
        assert stream.read() == b"first version"

    assert b"".join(pieces) == b"0123456789" * 1000 == unverified


def test_unicode_keys(store: ObjectStore) -> None:
    keys = ["données/été 2024/résumé.pdf", "日本語/ファイル", "emoji/😀.txt", "Zebra", "zebra"]
    for key in keys:
        store.put(key, key.encode())

    assert [version.key for version in store.list()] == sorted(keys)
    assert all(store.get(key) == key.encode() for key in keys)
    assert [version.key for version in store.list("données/")] == ["données/été 2024/résumé.pdf"]


def test_concurrent_puts_to_one_key_all_become_versions(store: ObjectStore) -> None:
    payloads = [f"payload-{n}".encode() for n in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(lambda payload: store.put("shared", payload), payloads))

    assert len({version.version_id for version in versions}) == len(payloads)
    listed = list(store.list_versions("shared"))
    assert {entry.version_id for entry in listed} == {version.version_id for version in versions}
    assert [entry.is_latest for entry in listed] == [True] + [False] * (len(payloads) - 1)
    for version, payload in zip(versions, payloads, strict=True):
        assert store.get("shared", version.version_id) == payload


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_invalid_keys_are_refused_before_any_io(unusable_store: ObjectStore, key: str) -> None:
    operations = [
        lambda: unusable_store.put(key, b"x"),
        lambda: unusable_store.get(key),
        lambda: unusable_store.open(key),
        lambda: unusable_store.head(key),
        lambda: unusable_store.exists(key),
        lambda: unusable_store.delete(key),
        lambda: unusable_store.delete(key, "v1"),
        lambda: unusable_store.delete_all_versions(key),
    ]
    for operation in operations:
        with pytest.raises(InvalidKeyError):
            operation()


# Keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a", "a/b/c.txt", "données/été.pdf", "x" * 1024, ".hidden/file", "a/..b", "a b"])
def test_validate_key_accepts_ordinary_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", [k for k in BAD_KEYS if len(k) < 100], ids=repr)
def test_validate_key_names_the_key_it_refuses(key: str) -> None:
    with pytest.raises(InvalidKeyError) as raised:
        validate_key(key)

    assert repr(key) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_validate_key_shortens_a_huge_key_and_refuses_non_strings() -> None:
    with pytest.raises(InvalidKeyError, match=r"'kkkk.*\(2000 characters\): it is 2000 UTF-8 bytes"):
        validate_key("k" * 2000)
    with pytest.raises(InvalidKeyError, match="string"):
        validate_key(b"bytes-key")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="1024"):
        validate_key("é" * 513)


# Local store -------------------------------------------------------------------------------


def test_local_uri_names_the_directory(tmp_path: Path) -> None:
    assert LocalObjectStore(tmp_path / "objects").uri == (tmp_path / "objects").resolve().as_uri()


def test_local_corrupt_blob_is_an_integrity_error_naming_the_key(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    version = store.put("docs/a.txt", b"original")
    (blob,) = (tmp_path / "objects").rglob(f"{version.version_id}.blob")
    blob.write_bytes(b"tampered")

    with pytest.raises(IntegrityError, match=f"'docs/a.txt' version '{version.version_id}' is corrupt"):
        store.get("docs/a.txt")
    with store.open("docs/a.txt") as stream, pytest.raises(IntegrityError, match="'docs/a.txt'"):
        stream.read()
    assert store.head("docs/a.txt") == version


def test_local_open_without_verify_leaves_the_check_to_the_caller(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    version = store.put("docs/a.txt", b"original")
    (blob,) = (tmp_path / "objects").rglob(f"{version.version_id}.blob")
    blob.write_bytes(b"tampered")
    with store.open("docs/a.txt", verify=False) as stream:
        assert stream.read() == b"tampered"
    with store.open("docs/a.txt") as stream, pytest.raises(IntegrityError, match="is corrupt"):
        stream.read()


def test_local_crash_leftovers_are_invisible_and_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    committed = store.put("k", b"committed")
    real_write_file = LocalObjectStore._write_file

    def crash_before_meta(self: LocalObjectStore, destination: Path, content: bytes) -> None:
        if destination.suffix == ".json":
            raise KeyboardInterrupt("simulated crash")
        real_write_file(self, destination, content)

    monkeypatch.setattr(LocalObjectStore, "_write_file", crash_before_meta)
    for key in ("k", "ghost"):
        with pytest.raises(KeyboardInterrupt):
            store.put(key, b"half-committed")
    monkeypatch.undo()
    (tmp_path / "objects" / ".incoming" / "interrupted.tmp").write_bytes(b"half-written")

    assert list(store.list()) == [committed]
    assert list(store.list_versions()) == [committed]
    assert store.get("k") == b"committed"
    assert not store.exists("ghost")

    assert store.sweep_incomplete(older_than=timedelta(hours=1)) == 0
    assert store.sweep_incomplete(older_than=timedelta(0)) == 3

    files = {path.name for path in (tmp_path / "objects").rglob("*") if path.is_file()}
    assert files == {"key", f"{committed.version_id}.blob", f"{committed.version_id}.json"}
    assert store.get("k") == b"committed"


def test_local_erasure_leaves_nothing_on_disk(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("person/1", b"personal data")
    store.delete("person/1")
    only = store.put("person/2", b"personal data")

    store.delete_all_versions("person/1")
    store.delete("person/2", only.version_id)

    assert [path for path in (tmp_path / "objects").rglob("*") if path.is_file()] == []


def test_local_files_and_directories_are_private(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("k", b"secret")

    for path in [tmp_path / "objects", *(tmp_path / "objects").rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_local_unusable_directory_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    store = LocalObjectStore(tmp_path / "a-file" / "objects")

    for operation in (store.check, lambda: store.put("k", b"x"), lambda: store.get("k"), lambda: list(store.list())):
        with pytest.raises(StoreUnavailableError, match=f"{tmp_path / 'a-file' / 'objects'} is not usable"):
            operation()


# S3 store ----------------------------------------------------------------------------------


def test_s3_missing_bucket_is_unavailable(s3_endpoint: str) -> None:
    store = S3ObjectStore(bucket="encaptio-no-such-bucket", endpoint_url=s3_endpoint)

    for operation in (store.check, lambda: store.put("k", b"x"), lambda: store.get("k"), lambda: list(store.list())):
        with pytest.raises(StoreUnavailableError, match="'encaptio-no-such-bucket'.*does not exist") as raised:
            operation()
        assert "\n" not in str(raised.value)


def test_s3_bucket_without_versioning_is_unavailable(s3_endpoint: str) -> None:
    raw_client(s3_endpoint).create_bucket(Bucket="encaptio-unversioned")
    store = S3ObjectStore(bucket="encaptio-unversioned", endpoint_url=s3_endpoint)

    for operation in (store.check, lambda: store.put("k", b"x")):
        with pytest.raises(StoreUnavailableError, match="'encaptio-unversioned'.*versioning"):
            operation()


def test_s3_unreachable_endpoint_fails_fast_with_one_line() -> None:
    endpoint = f"http://127.0.0.1:{unused_port()}"
    store = S3ObjectStore(bucket="encaptio-anywhere", endpoint_url=endpoint)

    for operation in (store.check, lambda: store.put("k", b"x"), lambda: store.get("k")):
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="'encaptio-anywhere'.*unreachable") as raised:
            operation()
        assert time.monotonic() - started < 15
        assert endpoint in str(raised.value)
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("size", [10, 9 * MiB], ids=["single-request", "multipart"])
def test_s3_objects_are_encrypted_and_carry_their_sha256(s3_endpoint: str, s3_bucket: str, size: int) -> None:
    store = S3ObjectStore(bucket=s3_bucket, prefix="tenant", endpoint_url=s3_endpoint)
    data = os.urandom(size)
    version = store.put("k", data)

    stored = raw_client(s3_endpoint).head_object(Bucket=s3_bucket, Key="tenant/k", VersionId=version.version_id)

    assert stored["ServerSideEncryption"] == "AES256"
    assert stored["Metadata"]["sha256"] == sha256(data)
    assert store.get("k") == data


def test_s3_prefixed_store_sees_only_its_prefix(s3_endpoint: str, s3_bucket: str) -> None:
    client = raw_client(s3_endpoint)
    for outside in ("outside", "tenant", "tenant-other/x"):
        client.put_object(Bucket=s3_bucket, Key=outside, Body=b"not ours")
    store = S3ObjectStore(bucket=s3_bucket, prefix="/tenant/", endpoint_url=s3_endpoint)
    store.put("mine", b"ours")

    assert store.uri == f"s3://{s3_bucket}/tenant"
    assert [version.key for version in store.list()] == ["mine"]
    assert [version.key for version in store.list_versions()] == ["mine"]
    assert not store.exists("outside")


def test_s3_object_without_a_recorded_sha256_is_not_served(s3_endpoint: str, s3_bucket: str) -> None:
    raw_client(s3_endpoint).put_object(Bucket=s3_bucket, Key="foreign", Body=b"written elsewhere")
    store = S3ObjectStore(bucket=s3_bucket, endpoint_url=s3_endpoint)

    assert store.head("foreign").sha256 == ""
    with pytest.raises(IntegrityError, match="'foreign'.*no recorded sha256"):
        store.get("foreign")


# Settings ----------------------------------------------------------------------------------


def test_open_object_store_defaults_to_a_directory_in_the_data_dir(tmp_path: Path) -> None:
    store = open_object_store(get_settings())

    assert isinstance(store, LocalObjectStore)
    assert store.root == (tmp_path / "data" / "objects").resolve()


def test_open_object_store_uses_a_configured_directory(tmp_path: Path) -> None:
    store = open_object_store(get_settings(object_store=str(tmp_path / "elsewhere")))

    assert isinstance(store, LocalObjectStore)
    assert store.uri == (tmp_path / "elsewhere").resolve().as_uri()


def test_open_object_store_for_an_s3_url(s3_endpoint: str, s3_bucket: str) -> None:
    settings = get_settings(object_store=f"s3://{s3_bucket}/tenant/a", s3_endpoint_url=s3_endpoint, s3_sse="")
    store = open_object_store(settings)

    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix, store.sse) == (s3_bucket, "tenant/a", None)
    assert store.uri == f"s3://{s3_bucket}/tenant/a"
    store.check()
    store.put("k", b"data")
    assert raw_client(s3_endpoint).get_object(Bucket=s3_bucket, Key="tenant/a/k")["Body"].read() == b"data"


# Large puts write on a thread of their own ---------------------------------------------------


class _FailingAfter(io.RawIOBase):
    """A stream of `size` random bytes whose reads fail once `fail_at` bytes were read."""

    def __init__(self, size: int, fail_at: int) -> None:
        self._data = io.BytesIO(os.urandom(size))
        self._fail_at = fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._data.tell() >= self._fail_at:
            raise ValueError("the source went away")
        return self._data.readinto(buffer)


def _writer_threads() -> list[str]:
    import threading

    return [thread.name for thread in threading.enumerate() if thread.name == "object-store-writer"]


def test_a_source_failing_past_the_overlap_threshold_stores_nothing(store: ObjectStore, tmp_path: Path) -> None:
    # 6 MiB in, the writer thread is running (it starts after 4 MiB): the source's own error
    # comes out, the writer is stopped, and no version (nor, locally, a temporary file) remains.
    with pytest.raises(ValueError, match="went away"):
        store.put("big/k", io.BufferedReader(_FailingAfter(10 * MiB, 6 * MiB)))
    assert list(store.list_versions()) == [] and _writer_threads() == []
    if isinstance(store, LocalObjectStore):
        assert list((tmp_path / "objects" / ".incoming").iterdir()) == []


def test_a_local_write_failing_mid_way_leaves_no_version_and_no_temp_file(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import encaptio_data.stores.objects as objects_module

    store = LocalObjectStore(tmp_path / "objects")
    store.put("k", b"committed before")
    real_open = open
    written: list[int] = []

    class FullDisk:
        """The blob file, on a disk that fills up after 6 MiB (past the overlap threshold)."""

        def __init__(self, file) -> None:  # type: ignore[no-untyped-def]
            self._file = file

        def write(self, data: bytes) -> int:
            if sum(written) + len(data) > 6 * MiB:
                raise OSError(28, "No space left on device")
            written.append(len(data))
            return self._file.write(data)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self._file, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc: object) -> None:
            self._file.close()

    def opening(path, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        file = real_open(path, mode, *args, **kwargs)
        return FullDisk(file) if str(path).endswith(".tmp") and "x" in mode and written == [] else file

    monkeypatch.setattr(objects_module, "open", opening, raising=False)
    with pytest.raises(StoreUnavailableError, match="No space left on device"):
        store.put("big/k", io.BytesIO(os.urandom(12 * MiB)))
    monkeypatch.undo()

    assert sum(written) == 6 * MiB  # the failure came from the writer, past the first 4 MiB
    assert not store.exists("big/k") and [v.key for v in store.list_versions()] == ["k"]
    assert list((tmp_path / "objects" / ".incoming").iterdir()) == [] and _writer_threads() == []
    assert store.get("k") == b"committed before"


def test_only_large_puts_start_a_writer_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import encaptio_data.stores.objects as objects_module

    started: list[str] = []

    class Counting(threading.Thread):
        def start(self) -> None:
            started.append(self.name)
            super().start()

    monkeypatch.setattr(objects_module.threading, "Thread", Counting)
    store = LocalObjectStore(tmp_path / "objects")
    small = os.urandom(3 * MiB)
    store.put("small/bytes", small)
    store.put("small/stream", io.BytesIO(small))
    assert started == []
    large = os.urandom(9 * MiB + 17)
    version = store.put("large/stream", io.BytesIO(large))
    assert started == ["object-store-writer"]
    assert version.sha256 == sha256(large) and version.size == len(large) and store.get("large/stream") == large
    assert store.get("small/stream") == small


def test_a_local_flush_behind_failing_leaves_no_version_and_no_temp_file(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # After 16 MiB of its own writes the writer flushes them (fdatasync); an I/O error there fails the put
    # like one in the final fsync would.
    import encaptio_data.stores.objects as objects_module

    flushed: list[int] = []

    def failing(fd: int) -> None:
        flushed.append(fd)
        raise OSError(5, "Input/output error")

    store = LocalObjectStore(tmp_path / "objects")
    monkeypatch.setattr(objects_module, "_fdatasync", failing)
    with pytest.raises(StoreUnavailableError, match="Input/output error"):
        store.put("big/k", io.BytesIO(os.urandom(24 * MiB)))
    monkeypatch.undo()
    assert len(flushed) == 1 and list(store.list_versions()) == []
    assert list((tmp_path / "objects" / ".incoming").iterdir()) == [] and _writer_threads() == []
