"""The durable LanceDB copy on S3 (moto's server) and the local serving copy kept in sync.

Chunks are embedded with the real model and searched with the real SearchService; writes
and erasure go through the same functions the pipeline and the erasure job use.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from encaptio_data.authz import Grant, Permission, Principal
from encaptio_data.content.embedding import Embedder, load_embedder
from encaptio_data.db.session import Database
from encaptio_data.errors import EncaptioError, NotFoundError, SettingsError, StoreUnavailableError
from encaptio_data.privacy.erasure import purge_vectors
from encaptio_data.search.index import (
    CHUNKS_TABLE,
    build_indexes,
    chunk_batch,
    open_chunks_table,
    upsert_content_chunks,
)
from encaptio_data.search.service import SearchMode, SearchRequest, SearchService
from encaptio_data.settings import get_settings
from encaptio_data.stores.cache import Cache, MemoryCache
from encaptio_data.stores.vector_replica import (
    SyncedVectorStore,
    SyncReport,
    open_synced_vector_store,
    serving_store,
    sync_periodically,
)
from encaptio_data.stores.vectors import LocalVectorStore, S3VectorStore, VectorStore, open_vector_store

ORG = str(uuid.UUID(int=1))
CAPSULE = str(uuid.UUID(int=2))
COOKING, ASTRONOMY, SECRET = uuid.UUID(int=10), uuid.UUID(int=11), uuid.UUID(int=12)
DOCUMENTS = {
    COOKING: ["Knead the bread dough for ten minutes, then let it rise until doubled in size.",
              "Roast the vegetables in a hot oven with olive oil, garlic and rosemary."],
    ASTRONOMY: ["Jupiter is the largest planet of the solar system, a gas giant with dozens of moons.",
                "A light year is the distance light travels in one year, about nine trillion kilometres."],
    # Stands for a data subject's personal data: the erasure test looks for this marker byte by byte.
    SECRET: ["Quillonby Farthingale lives at 12 Marrowbone Lane and owes the bakery forty pounds."],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder()


@pytest.fixture
def make_service(embedder: Embedder, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The real SearchService for a member of ORG; its database only records refusals, and none happen here."""
    reader = Principal("test:replica-reader", (Grant(frozenset({Permission.SEARCH_ORG}), uuid.UUID(ORG)),))
    db = Database(f"sqlite:///{tmp_path / 'audit.sqlite3'}")

    def make(vectors: VectorStore, cache: Cache | None = None) -> SearchService:
        return SearchService(vectors, cache, principal=reader, db=db, embedder=embedder)

    yield make
    db.dispose()


@pytest.fixture
def durable(s3_endpoint: str, s3_bucket: str) -> S3VectorStore:
    return S3VectorStore(f"s3://{s3_bucket}/lancedb", endpoint_url=s3_endpoint, region="us-east-1")


@pytest.fixture
def synced(durable: S3VectorStore, tmp_path: Path) -> SyncedVectorStore:
    return SyncedVectorStore(durable, tmp_path / "serving")


def _write(store: SyncedVectorStore, embedder: Embedder, content_id: uuid.UUID, texts: list[str]) -> None:
    rows = [{"id": f"{content_id}-{i}", "content_id": str(content_id), "capsule_id": CAPSULE, "organization_id": ORG,
             "content_type": "text", "created_at": datetime(2026, 1, 1, tzinfo=UTC), "chunk_index": i, "page": None,
             "heading": None, "title": f"doc {content_id.int}", "text": text} for i, text in enumerate(texts)]
    upsert_content_chunks(open_chunks_table(store), content_id, chunk_batch(rows, embedder.encode(texts)))


def _seed(store: SyncedVectorStore, embedder: Embedder) -> None:
    for content_id, texts in DOCUMENTS.items():
        _write(store, embedder, content_id, texts)
    build_indexes(open_chunks_table(store))


def _search(service: SearchService, query: str, mode: SearchMode = SearchMode.HYBRID) -> list[str]:
    return [hit.chunk_id for hit in service.search(SearchRequest(ORG, query, mode=mode, limit=10)).hits]


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_ino for p in root.rglob("*") if p.is_file()
            and ".replica" not in p.parts}


def test_search_is_served_from_the_synced_local_copy(synced: SyncedVectorStore, embedder: Embedder,
                                                     make_service) -> None:  # type: ignore[no-untyped-def]
    _seed(synced, embedder)
    durable_version = synced.open_table(CHUNKS_TABLE).version

    report = synced.sync()

    assert isinstance(report, SyncReport)
    [table] = report.tables
    assert (table.name, table.action, table.version, table.previous_version, table.rows) == (
        "chunks", "created", durable_version, None, 5)
    assert table.files_copied > 0 and table.bytes_copied > 0
    local = synced.serving
    assert isinstance(local, LocalVectorStore) and local.uri == str(synced.local_root)
    assert local.open_table(CHUNKS_TABLE).version == durable_version
    # The durable copy's indexes came with the data: full-text search needs text_idx.
    assert {index.name for index in local.open_table(CHUNKS_TABLE).list_indices()} >= {"text_idx",
                                                                                          "organization_id_idx"}
    service = make_service(serving_store(synced))
    assert _search(service, "which planet is the biggest")[0] == f"{ASTRONOMY}-0"
    assert _search(service, "rosemary garlic", SearchMode.FULLTEXT) == [f"{COOKING}-1"]
    assert _search(service, "bread rising", SearchMode.SEMANTIC)[0] == f"{COOKING}-0"
    freshness = synced.freshness()
    assert freshness.synced_at == report.synced_at and freshness.last_error is None
    assert freshness.versions == {"chunks": durable_version} and freshness.age_seconds >= 0


def test_a_second_sync_is_a_no_op(synced: SyncedVectorStore, embedder: Embedder) -> None:
    _seed(synced, embedder)
    synced.sync()
    before = _files(synced.local_root)

    again = synced.sync()

    assert [(t.action, t.files_copied, t.files_removed, t.rows) for t in again.tables] == [("unchanged", 0, 0, 5)]
    assert not again.changed
    assert _files(synced.local_root) == before  # same files, same inodes: nothing rewritten


def test_updates_and_erasure_reach_the_local_copy(synced: SyncedVectorStore, embedder: Embedder,
                                                  make_service) -> None:  # type: ignore[no-untyped-def]
    _seed(synced, embedder)
    synced.sync()
    cache = MemoryCache(namespace="replica-test")
    service = make_service(synced.serving, cache)
    assert _search(service, "Farthingale", SearchMode.FULLTEXT) == [f"{SECRET}-0"]
    marker = b"Farthingale"
    assert any(marker in p.read_bytes() for p in synced.local_root.rglob("*") if p.is_file())

    # An update of one document, on the durable copy only.
    _write(synced, embedder, COOKING, ["Simmer the tomato sauce slowly with basil for an hour."])
    # Until the next sync the serving copy is stale, and its cached answer is too.
    page = service.search(SearchRequest(ORG, "Farthingale", mode=SearchMode.FULLTEXT))
    assert page.cached and [hit.chunk_id for hit in page.hits] == [f"{SECRET}-0"]
    assert "tomato" not in " ".join(synced.serving.open_table(CHUNKS_TABLE).to_arrow()["text"].to_pylist())

    report = synced.sync(cache=cache)

    [table] = report.tables
    assert table.action == "updated" and table.rows == 4
    assert table.version == synced.open_table(CHUNKS_TABLE).version
    assert report.cache_keys_dropped >= 1
    # The same service (its table handle opened before the sync) sees the new version.
    assert not service.search(SearchRequest(ORG, "Farthingale", mode=SearchMode.FULLTEXT)).cached
    assert "tomato" in " ".join(synced.serving.open_table(CHUNKS_TABLE).to_arrow()["text"].to_pylist())

    # An erasure does not wait for the periodic sync: purge_vectors purges the durable copy's
    # history and brings the serving copy along in the same call.
    erased = purge_vectors(SimpleNamespace(vectors=synced), [SECRET])
    assert erased == 1
    cache.clear()  # erase_subject invalidates the capsule's cached searches; here by hand
    assert service.search(SearchRequest(ORG, "Farthingale", mode=SearchMode.FULLTEXT)).hits == []
    assert _search(service, "Farthingale Marrowbone bakery", SearchMode.SEMANTIC).count(f"{SECRET}-0") == 0
    local_rows = synced.serving.open_table(CHUNKS_TABLE).to_arrow()
    assert sorted(local_rows["id"].to_pylist()) == sorted([f"{COOKING}-0", f"{ASTRONOMY}-0", f"{ASTRONOMY}-1"])
    # Physically gone: no byte of the serving directory holds the erased text (old versions,
    # rewritten fragments and the old full-text index were removed, as on the durable copy),
    # and no version in the bucket either.
    leftovers = [str(p) for p in synced.local_root.rglob("*") if p.is_file() and marker in p.read_bytes()]
    assert leftovers == []
    assert synced.sync().tables[0].action == "unchanged"


def test_reads_survive_an_s3_outage_and_sync_says_why_in_one_line(
        tmp_path: Path, embedder: Embedder, make_service) -> None:  # type: ignore[no-untyped-def]
    # A moto server of this test's own, so it can be stopped without touching the shared one.
    port = _free_port()
    process = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="outage")
        synced = SyncedVectorStore(S3VectorStore("s3://outage/lancedb", endpoint_url=endpoint), tmp_path / "serving")
        _seed(synced, embedder)
        first = synced.sync()
    finally:
        process.terminate()
        process.wait(timeout=10)

    with pytest.raises(StoreUnavailableError) as caught:
        synced.sync()
    message = str(caught.value)
    assert message == (f"vector store s3://outage/lancedb is unavailable: cannot connect to {endpoint}; "
                       f"search serves the local copy synced at {first.synced_at}")
    assert "\n" not in message
    freshness = synced.freshness()
    assert freshness.synced_at == first.synced_at and freshness.last_error == message
    assert freshness.last_attempt_at >= first.synced_at
    service = make_service(synced.serving)
    assert _search(service, "which planet is the biggest")[0] == f"{ASTRONOMY}-0"
    with pytest.raises(Exception, match="error sending request"):
        synced.table_names()  # the durable side really is down


def test_a_crash_mid_sync_leaves_the_previous_copy_intact(
        synced: SyncedVectorStore, embedder: Embedder, monkeypatch: pytest.MonkeyPatch,
        make_service) -> None:  # type: ignore[no-untyped-def]
    _seed(synced, embedder)
    synced.sync()
    version = synced.serving.open_table(CHUNKS_TABLE).version
    _write(synced, embedder, uuid.UUID(int=20), ["Saturn's rings are made of ice and rock."])
    service = make_service(synced.serving)
    original = SyncedVectorStore._download
    calls = []

    def crash_at_the_first_manifest(self, table_key, target, obj):  # type: ignore[no-untyped-def]
        if "/_versions/" in obj.key:
            raise RuntimeError("simulated crash")
        calls.append(obj.key)
        return original(self, table_key, target, obj)

    monkeypatch.setattr(SyncedVectorStore, "_download", crash_at_the_first_manifest)
    with pytest.raises(RuntimeError, match="simulated crash"):
        synced.sync()

    assert calls, "the crash should come after some data files were copied"
    table = synced.serving.open_table(CHUNKS_TABLE)
    assert (table.version, table.count_rows()) == (version, 5)
    assert f"{uuid.UUID(int=20)}-0" not in _search(service, "rings of Saturn")
    monkeypatch.setattr(SyncedVectorStore, "_download", original)

    report = synced.sync()

    assert [(t.action, t.rows) for t in report.tables] == [("updated", 6)]
    assert _search(service, "rings of Saturn")[0] == f"{uuid.UUID(int=20)}-0"
    assert list((synced.local_root / ".replica" / "staging").iterdir()) == []


def test_a_crash_in_the_first_sync_shows_no_half_copied_table(
        synced: SyncedVectorStore, embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(synced, embedder)
    original = SyncedVectorStore._download
    versions = len(synced.open_table(CHUNKS_TABLE).list_versions())
    manifests = []

    def crash_at_the_last_manifest(self, table_key, target, obj):  # type: ignore[no-untyped-def]
        if "/_versions/" in obj.key:
            manifests.append(obj.key)
            if len(manifests) == versions:  # every older version is complete by now, the latest is not
                raise RuntimeError("simulated crash")
        return original(self, table_key, target, obj)

    monkeypatch.setattr(SyncedVectorStore, "_download", crash_at_the_last_manifest)
    with pytest.raises(RuntimeError, match="simulated crash"):
        synced.sync()
    assert versions > 1 and len(manifests) == versions
    assert synced.serving.table_names() == []
    with pytest.raises(NotFoundError):
        synced.serving.open_table(CHUNKS_TABLE)
    monkeypatch.setattr(SyncedVectorStore, "_download", original)

    assert [(t.action, t.rows) for t in synced.sync().tables] == [("created", 5)]


def test_a_table_dropped_on_s3_leaves_the_local_copy(synced: SyncedVectorStore, embedder: Embedder) -> None:
    _seed(synced, embedder)
    extra = synced.connect().create_table("extra", data=[{"id": "x", "vector": [1.0, 0.0]}])
    assert extra.count_rows() == 1
    assert {t.name: t.action for t in synced.sync().tables} == {"chunks": "created", "extra": "created"}
    assert synced.serving.table_names() == ["chunks", "extra"]

    synced.drop_table("extra")
    report = synced.sync()

    assert {t.name: t.action for t in report.tables} == {"chunks": "unchanged", "extra": "dropped"}
    assert synced.serving.table_names() == ["chunks"]
    assert synced.freshness().versions.keys() == {"chunks"}
    assert [t.name for t in synced.sync().tables] == ["chunks"]


def test_a_local_write_is_undone_by_the_next_sync(synced: SyncedVectorStore, embedder: Embedder) -> None:
    _seed(synced, embedder)
    synced.sync()
    synced.serving.open_table(CHUNKS_TABLE).delete("true")  # nobody should; if someone does, S3 wins
    assert synced.serving.open_table(CHUNKS_TABLE).count_rows() == 0

    report = synced.sync()

    assert [(t.action, t.rows) for t in report.tables] == [("updated", 5)]


def test_settings_choose_the_synced_store(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    settings = get_settings(lancedb_uri=f"s3://{s3_bucket}/lancedb", s3_endpoint_url=s3_endpoint)
    store = open_synced_vector_store(settings, tmp_path / "serving")
    assert isinstance(store, SyncedVectorStore) and isinstance(store, VectorStore)
    assert store.uri == f"s3://{s3_bucket}/lancedb" and store.local_root == (tmp_path / "serving").resolve()
    assert store.durable.storage_options["allow_http"] == "true"
    assert store.durable.storage_options["aws_endpoint"] == s3_endpoint
    assert serving_store(store) is store.serving
    configured = open_vector_store(get_settings(lancedb_uri=f"s3://{s3_bucket}/lancedb", s3_endpoint_url=s3_endpoint,
                                                lancedb_local_copy=str(tmp_path / "configured")))
    assert isinstance(configured, SyncedVectorStore) and configured.local_root == (tmp_path / "configured").resolve()
    plain = open_synced_vector_store(settings, None)
    assert isinstance(plain, S3VectorStore) and serving_store(plain) is plain
    with pytest.raises(SettingsError, match="^ENCAPTIO_LANCEDB_LOCAL_COPY: needs ENCAPTIO_LANCEDB_URI=s3://"):
        open_synced_vector_store(get_settings(), tmp_path / "serving")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SettingsError, match="is not a directory"):
        open_synced_vector_store(settings, tmp_path / "a-file")


def test_sync_periodically_keeps_going_after_a_failure(
        synced: SyncedVectorStore, embedder: Embedder, tmp_path: Path) -> None:
    _seed(synced, embedder)
    dead = SyncedVectorStore(S3VectorStore("s3://nowhere/lancedb", endpoint_url=f"http://127.0.0.1:{_free_port()}"),
                             tmp_path / "dead-serving")
    for store, expected in ((synced, SyncReport), (dead, StoreUnavailableError)):
        stop = threading.Event()
        results: list[SyncReport | EncaptioError] = []

        def record(result, results=results, stop=stop):  # type: ignore[no-untyped-def]
            results.append(result)
            if len(results) == 2:
                stop.set()

        sync_periodically(store, 0.01, stop, on_result=record)
        assert [type(r) for r in results] == [expected, expected]
    assert [t.action for t in synced.sync().tables] == ["unchanged"]
    with pytest.raises(SettingsError):
        sync_periodically(synced, 0, threading.Event())


def test_a_missing_durable_bucket_is_one_line(s3_endpoint: str, tmp_path: Path) -> None:
    synced = SyncedVectorStore(S3VectorStore("s3://no-such-bucket-here/lancedb", endpoint_url=s3_endpoint),
                               tmp_path / "serving")
    with pytest.raises(StoreUnavailableError) as caught:
        synced.sync()
    assert str(caught.value) == ("vector store s3://no-such-bucket-here/lancedb is unavailable: "
                                 "NoSuchBucket: The specified bucket does not exist; there is no local copy yet")
    assert os.path.isdir(tmp_path / "serving")


def test_a_table_recreated_on_s3_replaces_the_local_one(synced: SyncedVectorStore) -> None:
    first = synced.connect().create_table("scratch", data=[{"id": f"old-{i}", "vector": [1.0, float(i)]}
                                                           for i in range(3)])
    first.add([{"id": "old-3", "vector": [0.0, 1.0]}])
    synced.sync()
    assert synced.serving.open_table("scratch").version == 2
    synced.drop_table("scratch")
    # Same name, version 1 again: its manifest has the same file name as the old version 1.
    synced.connect().create_table("scratch", data=[{"id": "new-0", "vector": [0.5, 0.5]}])

    [table] = synced.sync().tables

    assert (table.action, table.version, table.previous_version, table.rows) == ("updated", 1, 2, 1)
    assert synced.serving.open_table("scratch").to_arrow()["id"].to_pylist() == ["new-0"]
    assert [t.action for t in synced.sync().tables] == ["unchanged"]


def test_the_cli_syncs_the_serving_copy_and_refuses_without_one(
        synced: SyncedVectorStore, embedder: Embedder, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import json as _json

    from typer.testing import CliRunner

    from encaptio_data.cli import app

    runner = CliRunner()
    refused = runner.invoke(app, ["vectors", "sync", "--json"])
    # main() turns the error into one line on stderr; invoked directly, the runner keeps it.
    assert refused.exit_code == 1 and str(refused.exception).startswith("ENCAPTIO_LANCEDB_LOCAL_COPY is not set")

    _seed(synced, embedder)
    monkeypatch.setenv("ENCAPTIO_LANCEDB_URI", synced.uri)
    monkeypatch.setenv("ENCAPTIO_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("ENCAPTIO_LANCEDB_LOCAL_COPY", str(synced.local_root))
    first = runner.invoke(app, ["vectors", "sync", "--json"])
    assert first.exit_code == 0, first.output
    report = _json.loads(first.stdout)
    assert report["changed"] and report["tables"][0]["action"] == "created"
    assert report["freshness"]["versions"][CHUNKS_TABLE] == synced.open_table(CHUNKS_TABLE).version
    again = _json.loads(runner.invoke(app, ["vectors", "sync", "--json"]).stdout)
    assert not again["changed"]
