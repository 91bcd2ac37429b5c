"""One contract for the vector store, run on a local directory and on S3 (moto)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import boto3
import lancedb
import pyarrow as pa
import pytest

from encaptio_data.errors import InvalidKeyError, NotFoundError, SettingsError, StoreUnavailableError
from encaptio_data.settings import get_settings
from encaptio_data.stores.vectors import (
    LocalVectorStore,
    S3VectorStore,
    VectorStore,
    open_vector_store,
)

VECTOR = pa.list_(pa.float32(), 4)
SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("text", pa.string()), pa.field("vector", VECTOR)])


def _rows(*rows: tuple[str, str, list[float]]) -> pa.Table:
    ids, texts, vectors = zip(*rows, strict=True)
    return pa.table({"id": ids, "text": texts, "vector": pa.array(vectors, type=VECTOR)}, schema=SCHEMA)


def _create(store: VectorStore, name: str, *rows: tuple[str, str, list[float]]) -> lancedb.table.Table:
    table = store.connect().create_table(name, schema=SCHEMA)
    if rows:
        table.add(_rows(*rows))
    return table


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], VectorStore]:
    """Makes independent stores (own connection) on one location, as separate workers would."""
    if request.param == "local":
        return lambda: LocalVectorStore(tmp_path / "lancedb")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return lambda: S3VectorStore(f"s3://{bucket}/vectors", endpoint_url=endpoint, region="us-east-1")


@pytest.fixture
def store(make_store: Callable[[], VectorStore]) -> VectorStore:
    return make_store()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the contract ---------------------------------------------------------------------


def test_an_empty_store(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)
    store.check()
    assert store.table_names() == []
    assert store.count_rows() == {}
    assert store.connect() is store.connect()


def test_add_search_delete(store: VectorStore) -> None:
    _create(
        store,
        "chunks",
        ("a", "alpha", [1, 0, 0, 0]),
        ("b", "beta", [0, 1, 0, 0]),
    )
    table = store.open_table("chunks")
    table.add(_rows(("c", "gamma", [0, 0, 1, 0]), ("d", "delta", [0, 0, 0, 1])))

    nearest = table.search([0.1, 0.9, 0.05, 0]).limit(2).to_list()
    assert [row["id"] for row in nearest] == ["b", "a"]
    assert nearest[0]["text"] == "beta"

    table.delete("id = 'b'")
    assert table.search([0.1, 0.9, 0.05, 0]).limit(1).to_list()[0]["id"] == "a"
    assert store.count_rows() == {"chunks": 3}
    assert store.open_table("chunks").count_rows() == 3


def test_tables_are_listed_and_counted(store: VectorStore) -> None:
    _create(store, "b-table", ("x", "x", [1, 1, 1, 1]))
    _create(store, "a_table")
    assert store.table_names() == ["a_table", "b-table"]
    assert store.count_rows() == {"a_table": 0, "b-table": 1}


def test_a_missing_table_is_not_found(store: VectorStore) -> None:
    with pytest.raises(NotFoundError, match="'nope'"):
        store.open_table("nope")


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "a.lance", "with space", "a\\b", "x" * 129, "é"])
def test_invalid_table_names(store: VectorStore, name: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.open_table(name)
    with pytest.raises(InvalidKeyError):
        store.drop_table(name)


def test_drop_table(store: VectorStore) -> None:
    _create(store, "keep", ("k", "k", [1, 0, 0, 0]))
    _create(store, "drop-me", ("d", "d", [0, 1, 0, 0]))
    store.drop_table("drop-me")
    with pytest.raises(NotFoundError, match="drop-me"):
        store.open_table("drop-me")
    assert store.count_rows() == {"keep": 1}
    _create(store, "drop-me")
    assert store.open_table("drop-me").count_rows() == 0


def test_drop_table_unlists_it(store: VectorStore) -> None:
    if isinstance(store, S3VectorStore):
        pytest.skip(
            "moto bug: in a versioned bucket, ListObjectsV2 with a delimiter still returns a "
            "CommonPrefix for a prefix whose keys are all delete markers (moto/s3/models.py "
            "list_objects filters delete markers from keys, not from folders), so LanceDB "
            "keeps listing a dropped table; AWS S3 does not"
        )
    _create(store, "keep")
    _create(store, "drop-me")
    store.drop_table("drop-me")
    assert store.table_names() == ["keep"]


def test_dropping_a_missing_table_is_not_found(store: VectorStore) -> None:
    with pytest.raises(NotFoundError, match="'nope'"):
        store.drop_table("nope")


def test_concurrent_writers_lose_no_commit(store: VectorStore, make_store: Callable[[], VectorStore]) -> None:
    _create(store, "chunks")
    # Two workers holding the same table version: the second commit must see the first
    # (a conditional put on S3) and rebase onto it instead of overwriting it.
    first = store.open_table("chunks")
    second = make_store().open_table("chunks")
    assert first.version == second.version
    first.add(_rows(("a", "a", [1, 0, 0, 0])))
    second.add(_rows(("b", "b", [0, 1, 0, 0])))
    assert sorted(store.open_table("chunks").to_arrow()["id"].to_pylist()) == ["a", "b"]


# --- configuration and failures ------------------------------------------------------


def test_s3_storage_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    store = S3VectorStore("s3://bucket/prefix/", endpoint_url="http://127.0.0.1:9000", region="eu-west-1")
    assert store.uri == "s3://bucket/prefix"
    assert store.storage_options == {
        "aws_region": "eu-west-1",
        "aws_endpoint": "http://127.0.0.1:9000",
        "aws_virtual_hosted_style_request": "false",
        "allow_http": "true",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
    }
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert S3VectorStore("s3://bucket", region="us-east-1").storage_options == {"aws_region": "us-east-1"}
    assert "allow_http" not in S3VectorStore("s3://bucket", endpoint_url="https://minio.internal").storage_options


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix", "gs://bucket/x"])
def test_s3_uri_must_name_a_bucket(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://BUCKET"):
        S3VectorStore(uri)


def test_unreachable_s3_is_a_one_line_store_error() -> None:
    uri = "s3://bucket/vectors"
    store = S3VectorStore(uri, endpoint_url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(StoreUnavailableError) as caught:
        store.check()
    assert str(caught.value) == f"vector store {uri} is unavailable: Connection refused"


def test_missing_bucket_is_a_store_error(s3_endpoint: str) -> None:
    store = S3VectorStore("s3://no-such-bucket-here/vectors", endpoint_url=s3_endpoint)
    with pytest.raises(StoreUnavailableError) as caught:
        store.check()
    assert str(caught.value) == (
        "vector store s3://no-such-bucket-here/vectors is unavailable: "
        "NoSuchBucket: The specified bucket does not exist"
    )


def test_local_path_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-directory"
    path.write_text("x")
    with pytest.raises(StoreUnavailableError, match="not-a-directory"):
        LocalVectorStore(path).check()


def test_open_vector_store_defaults_to_the_data_dir(tmp_path: Path) -> None:
    store = open_vector_store(get_settings(data_dir=tmp_path))
    assert isinstance(store, LocalVectorStore)
    assert store.uri == str(tmp_path.resolve() / "lancedb")


def test_open_vector_store_on_s3(s3_endpoint: str, s3_bucket: str) -> None:
    settings = get_settings(lancedb_uri=f"s3://{s3_bucket}/lancedb", s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    store = open_vector_store(settings)
    assert isinstance(store, S3VectorStore)
    _create(store, "chunks", ("a", "a", [1, 0, 0, 0]))
    assert store.count_rows() == {"chunks": 1}
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [obj["Key"] for obj in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys and all(key.startswith("lancedb/chunks.lance/") for key in keys)


@pytest.mark.parametrize("uri", ["s3://", "gs://bucket/lancedb"])
def test_open_vector_store_rejects_an_unusable_uri(uri: str) -> None:
    with pytest.raises(SettingsError, match="ENCAPTIO_LANCEDB_URI"):
        open_vector_store(get_settings(lancedb_uri=uri))


def test_drop_table_unlists_it_from_an_unversioned_bucket(s3_endpoint: str) -> None:
    """The S3 half of the test above, where moto's delete-marker bug cannot show."""
    bucket = f"encaptio-unversioned-{uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    store = S3VectorStore(f"s3://{bucket}/vectors", endpoint_url=s3_endpoint)
    _create(store, "keep")
    _create(store, "drop-me")
    store.drop_table("drop-me")
    assert store.table_names() == ["keep"]


def test_purge_history_leaves_no_byte_of_deleted_rows_in_any_version(store: VectorStore, s3_endpoint: str) -> None:
    # The erasure path in miniature: delete, compact, clean up, then purge what the storage
    # itself kept. In a versioned bucket LanceDB's cleanup leaves noncurrent versions behind.
    from datetime import timedelta

    canary = f"canary-{uuid4().hex}"
    table = _create(store, "erasable", ("a", canary, [1, 0, 0, 0]), ("b", "keep me", [0, 1, 0, 0]))
    table.add(_rows(("c", "another version", [0, 0, 1, 0])))
    table.delete("id = 'a'")
    table.compact_files(materialize_deletions=True, materialize_deletions_threshold=0.0)
    table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)

    def stored_bytes() -> list[bytes]:
        if isinstance(store, LocalVectorStore):
            return [p.read_bytes() for p in Path(store.uri).rglob("*") if p.is_file()]
        bucket = store.uri.removeprefix("s3://").split("/")[0]
        client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        versions = client.list_object_versions(Bucket=bucket, Prefix="vectors/").get("Versions", [])
        return [client.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
                for v in versions]

    if isinstance(store, S3VectorStore):
        assert any(canary.encode() in data for data in stored_bytes()), "the bucket should still hold it"
        assert store.purge_history() > 0
    else:
        assert store.purge_history() == 0
    assert not any(canary.encode() in data for data in stored_bytes())
    assert sorted(store.open_table("erasable").to_arrow().column("text").to_pylist()) == ["another version",
                                                                                          "keep me"]
    assert store.purge_history() == 0  # nothing left to purge: idempotent
