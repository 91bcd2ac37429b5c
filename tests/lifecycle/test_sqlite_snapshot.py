"""The pinned SQLite snapshot: the live file read while a read transaction keeps every checkpoint
off it, its fallback to the backup API, and backups taken while writers keep committing."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from encaptio_data.authz import system_principal
from encaptio_data.db.models import utcnow
from encaptio_data.lifecycle import backup as bk
from encaptio_data.platform import Platform

OPERATOR = system_principal("dagster", run="test")


def _wal_database(path: Path, rows: int = 2000) -> None:
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload BLOB)")
        conn.execute("INSERT INTO events (payload) SELECT randomblob(300) FROM "
                     "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) SELECT i FROM n)",
                     (rows,))


def _write_and_checkpoint(path: Path, transactions: int) -> None:
    """Commits that grow, shrink and rewrite pages, each followed by every kind of checkpoint."""
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.02)
    try:
        for n in range(transactions):
            writer.execute("INSERT INTO events (payload) SELECT randomblob(300) FROM events LIMIT 200")
            writer.execute("UPDATE events SET payload = randomblob(300) WHERE id % 7 = ?", (n % 7,))
            writer.execute("DELETE FROM events WHERE id % 11 = ?", (n % 11,))
            for mode in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
                writer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    finally:
        writer.close()


def _pinned_bytes(path: Path, length: int) -> bytes:
    with path.open("rb") as file:
        return file.read(length)


def test_a_pinned_file_stays_the_snapshot_while_writers_commit_and_checkpoint(tmp_path: Path) -> None:
    live = tmp_path / "live.sqlite3"
    _wal_database(live)
    # Commits left in the log (not yet in the file) are part of the snapshot too.
    in_the_log = sqlite3.connect(live, isolation_level=None)
    in_the_log.execute("PRAGMA wal_autocheckpoint=0")
    for _ in range(3):
        in_the_log.execute("INSERT INTO events (payload) SELECT randomblob(300) FROM events LIMIT 500")
    rows_at_pin = in_the_log.execute("SELECT count(*), sum(length(payload)) FROM events").fetchone()
    assert Path(f"{live}-wal").stat().st_size > 100 * 1024  # (kept open: a last close would checkpoint)
    with bk.pinned_snapshot(live) as pinned:
        assert pinned is not None and pinned.snapshot_at <= pinned.confirmed_at
        before = hashlib.sha256(_pinned_bytes(live, pinned.length)).hexdigest()
        _write_and_checkpoint(live, 8)
        held = _pinned_bytes(live, pinned.length)
        assert hashlib.sha256(held).hexdigest() == before
        with sqlite3.connect(live) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] != rows_at_pin[0]
    in_the_log.close()
    # The bytes held are the snapshot: a database with exactly the rows at the pin.
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(held[:18] + b"\x01\x01" + held[20:])
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*), sum(length(payload)) FROM events").fetchone() == rows_at_pin
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    # Released, the next checkpoint writes the file: the pin, not chance, kept it still above.
    _write_and_checkpoint(live, 1)
    assert hashlib.sha256(_pinned_bytes(live, pinned.length)).hexdigest() != before


def test_a_reader_on_an_older_snapshot_leaves_the_copy_to_the_backup_api(tmp_path: Path) -> None:
    live = tmp_path / "live.sqlite3"
    _wal_database(live)
    reader = sqlite3.connect(live, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()
    with sqlite3.connect(live, isolation_level=None) as writer:
        writer.execute("INSERT INTO events (payload) VALUES (x'00')")
    try:
        # The old reader still needs frames of the log: it cannot be checkpointed completely.
        with bk.pinned_snapshot(live, attempts=2) as pinned:
            assert pinned is None
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    with bk.pinned_snapshot(live) as pinned:
        assert pinned is not None


def test_a_database_not_in_wal_mode_is_not_pinned(tmp_path: Path) -> None:
    live = tmp_path / "rollback.sqlite3"
    with sqlite3.connect(live) as conn:
        conn.execute("CREATE TABLE t (x)")
    with bk.pinned_snapshot(live) as pinned:
        assert pinned is None


def test_a_backup_while_writers_commit_holds_exactly_what_was_committed_before_its_snapshot(
        embedded: Platform, tmp_path: Path) -> None:
    live = bk.sqlite_database_path(embedded.db)
    with sqlite3.connect(live) as conn:
        conn.execute("CREATE TABLE canaries (n INTEGER PRIMARY KEY, padding BLOB)")
    committed: list[tuple[int, datetime, datetime]] = []  # n, began, committed
    stop = threading.Event()

    def keep_writing() -> None:
        writer = sqlite3.connect(live, isolation_level=None, timeout=30)
        try:
            n = 0
            while not stop.is_set():
                began = utcnow()
                writer.execute("INSERT INTO canaries VALUES (?, randomblob(4000))", (n,))
                committed.append((n, began, utcnow()))
                n += 1
        finally:
            writer.close()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        while len(committed) < 300:
            threading.Event().wait(0.01)
        result = bk.run_backup(embedded, "full", operator=OPERATOR)
        count_at_backup_end = len(committed)
        while len(committed) < count_at_backup_end + 100:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()

    manifest = bk._load_manifest(embedded, result["manifest_key"])
    assert manifest["snapshot_method"] == bk.PINNED_FILE
    snapshot_at = datetime.fromisoformat(manifest["snapshot_at"])
    confirmed_at = datetime.fromisoformat(manifest["snapshot_confirmed_at"])
    restored = tmp_path / "restored.sqlite3"
    bk.restore(embedded, snapshot_at, restored, operator=OPERATOR)
    with sqlite3.connect(restored) as conn:
        present = {n for (n,) in conn.execute("SELECT n FROM canaries")}
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert all(n in present for n, _, done in committed if done < snapshot_at)
    assert not any(n in present for n, began, _ in committed if began > confirmed_at)
    assert present == set(range(len(present)))  # no commit lost or half-present
    assert manifest["tables"]["canaries"]["rows"] == len(present)
    assert bk.verify_backup(embedded, result["backup_id"])["passed"]
    with embedded.db.session() as session:  # the live database went on: the pin let the writer through
        assert session.execute(sa.text("SELECT count(*) FROM canaries")).scalar_one() > len(present)


def test_a_backup_falls_back_to_the_backup_api_and_says_so(embedded: Platform, tmp_path: Path) -> None:
    live = bk.sqlite_database_path(embedded.db)
    reader = sqlite3.connect(live, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
    with sqlite3.connect(live, isolation_level=None) as writer:
        writer.execute("CREATE TABLE after_the_reader (x)")
        writer.execute("INSERT INTO after_the_reader VALUES ('committed before the backup')")
    try:
        result = bk.run_backup(embedded, "full", operator=OPERATOR)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    manifest = bk._load_manifest(embedded, result["manifest_key"])
    assert manifest["snapshot_method"] == bk.BACKUP_API and "after_the_reader" in manifest["tables"]
    restored = tmp_path / "restored.sqlite3"
    bk.restore(embedded, utcnow(), restored, operator=OPERATOR)
    with sqlite3.connect(restored) as conn:
        assert conn.execute("SELECT x FROM after_the_reader").fetchall() == [("committed before the backup",)]


def test_a_writer_that_keeps_its_transaction_open_is_not_waited_for(embedded: Platform, tmp_path: Path) -> None:
    live = bk.sqlite_database_path(embedded.db)
    with bk.pinned_snapshot(live) as pinned:  # the platform's own connections are idle: pinned at once
        assert pinned is not None
    writer = sqlite3.connect(live, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE uncommitted (x)")
    try:
        with bk.pinned_snapshot(live, attempts=2, writer_wait_seconds=0.1) as pinned:
            assert pinned is None
        # What the backup then does: the backup API copies past the writer (a reader needs no write lock).
        bk.online_copy(live, tmp_path / "copy.sqlite3")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with sqlite3.connect(tmp_path / "copy.sqlite3") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "backups" in tables and "uncommitted" not in tables
