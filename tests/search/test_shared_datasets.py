"""Every SearchService of a process reads one Lance dataset per table, and its indexes are
prewarmed once per set of index segments.

Real LanceDB tables on a local directory; full-text queries, so no model is needed.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from encaptio_data.authz import system_principal
from encaptio_data.db.session import Database
from encaptio_data.search import datasets
from encaptio_data.search.index import CHUNKS_TABLE, build_indexes, chunk_batch, open_chunks_table, \
    upsert_content_chunks
from encaptio_data.search.service import SearchMode, SearchRequest, SearchService
from encaptio_data.stores.vectors import LocalVectorStore
from tests.search.test_cards import ORG, _rows


def _store(root: Path, start: int, count: int, *, indexed: bool = True) -> LocalVectorStore:
    store = LocalVectorStore(str(root))
    table = open_chunks_table(store)
    rows, vectors = _rows(start, count)
    upsert_content_chunks(table, uuid.UUID(int=start), chunk_batch(rows, vectors))
    if indexed:
        build_indexes(table)
    return store


def _service(store: LocalVectorStore, tmp_path: Path, *, prewarm: bool = False, who: str = "demo") -> SearchService:
    return SearchService(store, None, principal=system_principal(who), db=Database(f"sqlite:///{tmp_path / 'a.sqlite3'}"),
                         prewarm=prewarm)


def _ids(service: SearchService, query: str = "harbour") -> set[str]:
    page = service.search(SearchRequest(ORG, query, mode=SearchMode.FULLTEXT, limit=50))
    return {hit.chunk_id for hit in page.hits}


def _wait_for_prewarm() -> None:
    assert datasets.SHARED.wait_for_prewarm(timeout=30), "prewarm did not finish"


def test_services_share_one_dataset_and_see_each_write(tmp_path: Path) -> None:
    store = _store(tmp_path / "lancedb", 0, 20)
    first, second = _service(store, tmp_path), _service(store, tmp_path, who="bench")
    assert first.snapshot() is second.snapshot()
    before = _ids(first)
    rows, vectors = _rows(100, 5)
    upsert_content_chunks(open_chunks_table(store), uuid.UUID(int=100), chunk_batch(rows, vectors))
    third = _service(store, tmp_path)
    assert _ids(first) == _ids(second) == _ids(third) == before | {r["id"] for r in rows if "harbour" in r["text"]}
    assert first.snapshot() is second.snapshot() is third.snapshot()


def test_a_replaced_table_directory_is_reopened_even_at_the_same_version(tmp_path: Path) -> None:
    # A restore or a replica sync swaps the directory in one rename; the new table's versions
    # may number as the old one's did, so the version alone cannot tell them apart.
    live = _store(tmp_path / "live", 0, 20)
    other = _store(tmp_path / "other", 200, 20)
    old_version = open_chunks_table(live).version
    assert open_chunks_table(other).version == old_version
    service = _service(live, tmp_path)
    before = _ids(service)
    assert before and all(int(i.removeprefix("chunk-")) < 20 for i in before)
    table_dir = tmp_path / "live" / f"{CHUNKS_TABLE}.lance"
    os.replace(table_dir, tmp_path / "retired.lance")
    os.replace(tmp_path / "other" / f"{CHUNKS_TABLE}.lance", table_dir)
    after_old, after_new = _ids(service), _ids(_service(LocalVectorStore(str(tmp_path / "live")), tmp_path))
    assert after_old == after_new and after_new and all(int(i.removeprefix("chunk-")) >= 200 for i in after_new)


def test_indexes_are_prewarmed_once_per_set_of_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path / "lancedb", 0, 300)
    warmed: list[str] = []
    real = datasets.lance.LanceDataset.prewarm_index

    def recording(self, name: str, **kwargs):  # type: ignore[no-untyped-def]
        warmed.append(name)
        return real(self, name, **kwargs)

    monkeypatch.setattr(datasets.lance.LanceDataset, "prewarm_index", recording)
    service = _service(store, tmp_path, prewarm=True)
    expected = _ids(service)
    _wait_for_prewarm()
    # 300 rows: no vector index yet. A pass may be repeated once (a query racing pylance's check).
    assert set(warmed) == {"organization_id_idx", "text_idx"} and len(warmed) <= 4
    entry = datasets.SHARED._entries[service._location]
    assert {name.split(":")[0] for name in entry.warmed} == set(warmed)
    assert service.snapshot().session().index_cache_size_bytes() > 0
    calls = len(warmed)
    for _ in range(3):  # the same segments: nothing more to load
        assert _ids(_service(store, tmp_path, prewarm=True)) == expected
        _wait_for_prewarm()
    assert len(warmed) == calls

    rows, vectors = _rows(1000, 10)
    table = open_chunks_table(store)
    upsert_content_chunks(table, uuid.UUID(int=1000), chunk_batch(rows, vectors))
    build_indexes(table)  # folds the new rows in: new index segments
    _ids(service)
    _wait_for_prewarm()
    assert len(warmed) > calls and entry.warmed != frozenset()
    assert _ids(service, "1005") == {"chunk-01005"}


def test_a_service_without_prewarm_starts_no_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path / "lancedb", 0, 20)
    started: list[str] = []
    real_start = threading.Thread.start

    def recording_start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    assert _ids(_service(store, tmp_path, prewarm=False))
    monkeypatch.setenv("ENCAPTIO_SEARCH_PREWARM", "false")
    assert _ids(_service(store, tmp_path, prewarm=None))
    assert "encaptio-prewarm" not in started


def test_a_failed_prewarm_is_logged_and_the_query_is_answered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    store = _store(tmp_path / "lancedb", 0, 20)

    def failing(self, name: str, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk went away")

    monkeypatch.setattr(datasets.lance.LanceDataset, "prewarm_index", failing)
    service = _service(store, tmp_path, prewarm=True)
    assert _ids(service)
    _wait_for_prewarm()
    assert "search prewarm" in caplog.text and "disk went away" in caplog.text
    caplog.clear()
    for _ in range(3):  # the same segments are not tried again on every query
        assert _ids(service)
        _wait_for_prewarm()
    assert "search prewarm" not in caplog.text
