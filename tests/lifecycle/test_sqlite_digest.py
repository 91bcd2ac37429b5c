"""The per-table digests of a SQLite backup's manifest: any changed value is caught (including a
change of storage class), the digest does not depend on how the reader batches rows, mixed
columns fall back to the original row rendering, manifests written before the columnar digest
still verify, an unknown digest is refused by name, and a copy that fails its checks leaves no
object behind."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from encaptio_data.lifecycle import backup as bk
from encaptio_data.platform import Platform
from tests.lifecycle.test_sqlite_backup import OPERATOR

ROWS = [(1, 10, 0.1, "alpha", b"\x00\x01", None), (2, -3, 2.5, "", b"", "x"), (3, 2**62, 0.0, "ünï", None, "y"),
        (4, 0, 1e300, "tab\there", b"\xff" * 40, None)]


def _database(path: Path, rows: list[tuple] = ROWS) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("CREATE TABLE keyed (code TEXT PRIMARY KEY, v) WITHOUT ROWID")
    conn.executemany("INSERT INTO keyed VALUES (?, ?)", [("b", 2), ("a", 1)])
    conn.commit()
    conn.close()
    return path


def _tables(path: Path) -> dict:
    return bk.sqlite_manifest(path)["tables"]


def test_every_kind_of_change_changes_the_columnar_digest(tmp_path: Path) -> None:
    original = _tables(_database(tmp_path / "original.db"))
    assert {entry["digest"] for entry in original.values()} == {bk.COLUMNS}
    assert original["t"]["rows"] == 4 and original["keyed"]["rows"] == 2
    assert _tables(_database(tmp_path / "same.db")) == original  # deterministic
    changes = {
        "integer": "UPDATE t SET i = 11 WHERE id = 1",
        "real, last bit": "UPDATE t SET r = 0.1 + 1.3877787807814457e-17 WHERE id = 1",
        "real, sign": "UPDATE t SET r = -2.5 WHERE id = 2",
        "text": "UPDATE t SET s = 'alphb' WHERE id = 1",
        "text moved between rows": "UPDATE t SET s = CASE id WHEN 1 THEN 'alph' WHEN 2 THEN 'a' END "
                                   "WHERE id IN (1, 2)",
        "blob byte": "UPDATE t SET b = x'0002' WHERE id = 1",
        "null to value": "UPDATE t SET n = '' WHERE id = 1",
        "value to null": "UPDATE t SET b = NULL WHERE id = 2",
        "storage class only": "UPDATE t SET n = 5 WHERE id = 2",
        "row deleted": "DELETE FROM t WHERE id = 4",
        "key changed": "UPDATE keyed SET code = 'c' WHERE code = 'b'",
    }
    for name, statement in changes.items():
        path = _database(tmp_path / f"{len(name)}-{abs(hash(name))}.db")
        with sqlite3.connect(path) as conn:
            conn.execute(statement)
        changed = _tables(path)
        assert changed != original, f"{name}: not detected"
        problems = bk.compare_sqlite_tables(original, changed)
        assert problems and all("rows" in p or "digest" in p for p in problems), (name, problems)


def test_the_digest_does_not_depend_on_the_reader_s_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(n, n * 7, n / 3, f"text {n}" * (n % 5), bytes([n % 256]) * (n % 9), None if n % 4 else "x")
            for n in range(1, 2000)]
    path = _database(tmp_path / "many.db", rows)
    whole = _tables(path)
    monkeypatch.setattr(bk, "_ADBC_DIGEST_ROWS", 7)
    assert _tables(path) == whole


def test_a_column_mixing_storage_classes_uses_the_row_rendering(tmp_path: Path) -> None:
    path = _database(tmp_path / "mixed.db")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE t SET i = 'eleven' WHERE id = 2")  # SQLite keeps text in an INTEGER column
    tables = _tables(path)
    assert tables["t"]["digest"] == bk.QUOTED_ROWS and tables["keyed"]["digest"] == bk.COLUMNS
    # Verification recomputes what each entry names; a change in the mixed table is still caught.
    assert bk.compare_sqlite_tables(tables, bk.sqlite_manifest(path, tables)["tables"]) == []
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE t SET i = 'twelve' WHERE id = 2")
    assert bk.compare_sqlite_tables(tables, bk.sqlite_manifest(path, tables)["tables"]) == [
        "table t rows differ from the manifest (digest mismatch)"]


def _rewrite_manifest(platform: Platform, key: str, change) -> dict:
    manifest = json.loads(platform.objects.get(key))
    change(manifest)
    platform.objects.put(key, json.dumps(manifest).encode(), content_type="application/json")
    return manifest


def test_a_manifest_from_before_the_columnar_digest_still_verifies(embedded: Platform, tmp_path: Path) -> None:
    result = bk.run_backup(embedded, "full", operator=OPERATOR)
    manifest = bk._load_manifest(embedded, result["manifest_key"])
    assert {entry["digest"] for entry in manifest["tables"].values()} == {bk.COLUMNS}

    # What an older version wrote: quote-rows digests and no `digest` field.
    with bk.private_workdir("test-") as work:
        copy, _ = bk.materialize_sqlite(embedded, bk._find_sqlite(embedded, result["backup_id"]), work)
        old = {}
        for table in manifest["tables"]:
            entry = bk._quoted_rows_digest(bk.readonly_uri(copy), table)
            entry.pop("digest")
            old[table] = entry
    _rewrite_manifest(embedded, result["manifest_key"], lambda m: m.update(tables=old))
    assert bk.verify_backup(embedded, result["backup_id"])["passed"]

    def damage(m: dict) -> None:
        m["tables"]["audit_log"]["sha256"] = "0" * 64

    _rewrite_manifest(embedded, result["manifest_key"], damage)
    with pytest.raises(bk.BackupIntegrityError, match="table audit_log rows differ from the manifest") as raised:
        bk.restore(embedded, bk.utcnow(), tmp_path / "restored.sqlite3", operator=OPERATOR)
    assert result["location"] in str(raised.value)


def test_an_unknown_digest_is_refused_by_name(embedded: Platform) -> None:
    result = bk.run_backup(embedded, "full", operator=OPERATOR)

    def future(m: dict) -> None:
        m["tables"]["audit_log"]["digest"] = "columns/9"

    _rewrite_manifest(embedded, result["manifest_key"], future)
    with pytest.raises(bk.BackupIntegrityError, match="audit_log with 'columns/9', which this version"):
        bk.verify_backup(embedded, result["backup_id"])


def test_a_copy_failing_its_checks_leaves_no_object(embedded: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    real = bk.sqlite_manifest
    monkeypatch.setattr(bk, "sqlite_manifest", lambda path, methods=None, **options: {
        **real(path, methods, **options),
        "integrity_check": ["*** in database main ***", "Page 7: btreeInitPage() error"]})
    with pytest.raises(bk.BackupIntegrityError, match="fails PRAGMA integrity_check"):
        bk.run_backup(embedded, "full", operator=OPERATOR)
    assert list(embedded.objects.list(bk.SQLITE_PREFIX)) == []
    assert [row["status"] for row in bk.list_backups(embedded)] == ["failed"]
