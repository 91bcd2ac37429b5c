"""LanceDB snapshots: a tagged version copied encrypted, restored into a fresh directory, the tag
gone afterwards (cleanup and erasure never blocked), erased content pruned, damage refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import lancedb
import pytest

from encaptio_data.lifecycle.backup import BackupIntegrityError
from encaptio_data.lifecycle.snapshots import SNAPSHOT_PREFIX, list_snapshots, restore_vectors, snapshot_vectors
from encaptio_data.platform import Platform
from encaptio_data.privacy.erasure import erase_subject
from encaptio_data.search.index import CHUNKS_TABLE, RECOVERY_WINDOW, open_chunks_table, optimize
from encaptio_data.stores.objects import LocalObjectStore
from tests.privacy.conftest import plant, run_pipeline


@pytest.fixture
def indexed(embedded: Platform) -> Platform:
    plant(embedded, "alpha")
    plant(embedded, "beta")
    run_pipeline(embedded)
    return embedded


@pytest.mark.filterwarnings("ignore:optimize\\(cleanup_older_than=0\\):UserWarning")
def test_snapshot_restores_the_same_version_with_its_indexes(indexed: Platform, tmp_path: Path) -> None:
    table = open_chunks_table(indexed.vectors)
    rows, version = table.count_rows(), table.version
    result = snapshot_vectors(indexed)
    assert result["status"] == "succeeded" and result["version"] == version and result["rows"] == rows
    assert result["files"] >= 3 and list_snapshots(indexed)[-1]["snapshot_id"] == result["snapshot_id"]
    stored = [v.key for v in indexed.objects.list(SNAPSHOT_PREFIX)]
    assert any("/_versions/" in key for key in stored) and any("/_indices/" in key for key in stored)
    assert all(key.endswith(".enc") or key.endswith("manifest.json") for key in stored)

    # The tag lived only for the copy: cleanup (hourly maintenance, erasure) is not blocked.
    assert table.tags.list() == {}
    table.add(table.to_arrow().slice(0, 1).set_column(0, "id", [["extra-row"]]))
    table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)

    restored = restore_vectors(indexed, tmp_path / "restored")
    assert restored["version"] == version and restored["rows"] == rows and restored["rows_pruned"] == 0
    copy = lancedb.connect(str(tmp_path / "restored")).open_table(CHUNKS_TABLE)
    assert copy.version == version and copy.count_rows() == rows
    assert {index.name for index in copy.list_indices()} >= {"text_idx"}
    assert copy.search("sourdough", query_type="fts").limit(3).to_list()


def test_restored_vectors_lose_the_rows_of_content_erased_since(indexed: Platform, tmp_path: Path) -> None:
    gamma = plant(indexed, "gamma")
    run_pipeline(indexed)
    snapshot_vectors(indexed)
    erase_subject(indexed, gamma.user_id, actor="test")
    restored = restore_vectors(indexed, tmp_path / "restored")
    assert restored["rows_pruned"] > 0
    copy = lancedb.connect(str(tmp_path / "restored")).open_table(CHUNKS_TABLE)
    assert not copy.search().where(f"text LIKE '%{gamma.canary}%'").to_list()


def test_a_damaged_snapshot_file_is_refused_by_name(indexed: Platform, tmp_path: Path) -> None:
    snapshot_vectors(indexed)
    store = indexed.objects
    assert isinstance(store, LocalObjectStore)
    key = next(v.key for v in store.list(SNAPSHOT_PREFIX) if "/data/" in v.key)
    blob = store._key_dir(key) / f"{store.head(key).version_id}.blob"
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(BackupIntegrityError) as raised:
        restore_vectors(indexed, tmp_path / "restored")
    assert key in str(raised.value)


def test_restore_over_the_live_table(indexed: Platform) -> None:
    table = open_chunks_table(indexed.vectors)
    rows = table.count_rows()
    snapshot_vectors(indexed)
    table.delete("true")
    assert table.count_rows() == 0
    restore_vectors(indexed, "live")
    assert open_chunks_table(indexed.vectors).count_rows() == rows


def test_no_table_no_snapshot(embedded: Platform) -> None:
    assert snapshot_vectors(embedded)["status"] == "no table"


def test_the_vector_cleanup_window_does_not_undercut_the_recovery_window() -> None:
    import inspect

    assert RECOVERY_WINDOW >= timedelta(days=30)
    assert inspect.signature(optimize).parameters["keep_versions_for"].default == RECOVERY_WINDOW
