"""SQLite backups (embedded default) on the local store and on S3: backup, verify, restore to a
point (nearest backup at or before it), refusal of damaged or foreign files, and the erasure
ledger surviving every restore."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.authz import system_principal
from encaptio_data import audit
from encaptio_data.db.models import AuditEntry, Backup, ErasureLedger, User, utcnow
from encaptio_data.db.session import Database
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle import backup as bk
from encaptio_data.platform import Platform
from encaptio_data.privacy.erasure import erase_subject
from encaptio_data.stores.objects import LocalObjectStore
from tests.privacy.conftest import plant

# Backups and drills are what the schedules do: they run as the Dagster system principal.
OPERATOR = system_principal("dagster", run="test")


def _actions(path: Path) -> list[str]:
    database = Database(f"sqlite:///{path}")
    try:
        with database.session() as session:
            return list(session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.seq)))
    finally:
        database.dispose()


def test_backup_is_encrypted_checksummed_listed_and_verifies(sqlite_platform: Platform) -> None:
    audit.append(sqlite_platform.db, actor="test", action="test.canary-in-backup")
    result = bk.run_backup(sqlite_platform, "full", operator=OPERATOR)
    assert result["location"].startswith(bk.SQLITE_PREFIX) and result["location"].endswith(".db.enc")
    stored = sqlite_platform.objects.get(result["location"])
    assert not stored.startswith(b"SQLite format 3") and b"test.canary-in-backup" not in stored
    assert result["tables"] > 10 and result["key_id"] == KeyStore(sqlite_platform.settings.keys_dir).master_key_id()
    manifest = bk._load_manifest(sqlite_platform, result["manifest_key"])
    assert manifest["tables"]["audit_log"]["rows"] >= 1 and len(manifest["tables"]["audit_log"]["sha256"]) == 64
    assert manifest["source"]["path"].endswith("encaptio.sqlite3") and manifest["key_id"] == result["key_id"]
    assert "master.key" not in str(list(sqlite_platform.objects.list(bk.BACKUP_PREFIX)))

    listed = bk.list_backups(sqlite_platform)
    assert listed[0]["id"] == result["backup_id"] and listed[0]["status"] == "succeeded"
    assert listed[0]["sha256"] == result["sha256"] and listed[0]["snapshot_at"] == result["snapshot_at"]

    verified = bk.verify_backup(sqlite_platform, result["backup_id"])
    assert verified["passed"] and {c["name"] for c in verified["checks"]} == {
        "sha256", "decrypt", "integrity_check", "manifest"}
    assert bk.list_backups(sqlite_platform)[0]["status"] == "verified"


def test_an_hourly_incremental_is_a_complete_copy_and_says_so(embedded: Platform) -> None:
    result = bk.run_backup(embedded, "incremental", operator=OPERATOR)
    assert result["kind"] == "full" and result["requested_kind"] == "incremental"
    with pytest.raises(bk.InvalidInputError):
        bk.run_backup(embedded, "differential", operator=OPERATOR)


def _flip_stored_byte(platform: Platform, key: str) -> None:
    store = platform.objects
    assert isinstance(store, LocalObjectStore)
    version = store.head(key)
    blob = store._key_dir(key) / f"{version.version_id}.blob"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x40
    blob.write_bytes(bytes(data))


def test_a_flipped_byte_fails_verify_and_restore_refuses_naming_the_file(embedded: Platform, tmp_path: Path) -> None:
    result = bk.run_backup(embedded, "full", operator=OPERATOR)
    _flip_stored_byte(embedded, result["location"])
    with pytest.raises(bk.BackupIntegrityError) as raised:
        bk.verify_backup(embedded, result["backup_id"])
    assert result["location"] in str(raised.value)
    with embedded.db.session() as session:
        assert session.get(Backup, bk.parse_uuid(result["backup_id"])).status.value == "failed"
        assert session.scalar(sa.select(AuditEntry.action).order_by(AuditEntry.seq.desc()).limit(1)) == \
            "backup.verify_failed"

    target = tmp_path / "restored.sqlite3"
    with pytest.raises(bk.BackupIntegrityError) as raised:
        bk.restore(embedded, utcnow(), target, operator=OPERATOR)
    assert result["location"] in str(raised.value) and "refused" in str(raised.value)
    assert not target.exists() and not list(tmp_path.glob(".restore-*"))


def _stored_blob(platform: Platform, key: str, version_id: str | None = None) -> Path:
    store = platform.objects
    assert isinstance(store, LocalObjectStore)
    return store._key_dir(key) / f"{(version_id or store.head(key).version_id)}.blob"


@pytest.mark.parametrize("damage", ["truncated by a byte", "cut after its first chunk", "a byte appended",
                                    "the header flipped", "the last tag flipped"])
def test_a_restore_authenticates_every_byte_without_the_objects_sha256(embedded: Platform, tmp_path: Path,
                                                                      damage: str) -> None:
    # A restore reads the sealed object unhashed (its GCM tags are the check): each kind of damage
    # must still be refused by name, with nothing placed, and verify still fails it too.
    result = bk.run_backup(embedded, "full", operator=OPERATOR)
    blob = _stored_blob(embedded, result["location"])
    data = bytearray(blob.read_bytes())
    if damage == "truncated by a byte":
        data = data[:-1]
    elif damage == "cut after its first chunk":
        data = data[:len(data) // 2] if len(data) < 2 * bk.CHUNK_BYTES else data[:bk.CHUNK_BYTES]
    elif damage == "a byte appended":
        data += b"\0"
    elif damage == "the header flipped":
        data[12] ^= 0x01
    else:
        data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    target = tmp_path / "restored.sqlite3"
    with pytest.raises(bk.BackupIntegrityError) as raised:
        bk.restore(embedded, utcnow(), target, operator=OPERATOR)
    assert result["location"] in str(raised.value) and "refused" in str(raised.value)
    assert not target.exists() and not list(tmp_path.glob(".restore-*"))
    with pytest.raises(bk.BackupIntegrityError):
        bk.verify_backup(embedded, result["backup_id"])


def test_another_backups_object_in_its_place_is_refused_by_restore_and_verify(embedded: Platform,
                                                                             tmp_path: Path) -> None:
    # Sealed under the same key, the other object authenticates chunk by chunk; its header names it.
    first = bk.run_backup(embedded, "full", operator=OPERATOR)
    time.sleep(0.01)
    second = bk.run_backup(embedded, "full", operator=OPERATOR)
    _stored_blob(embedded, first["location"]).write_bytes(_stored_blob(embedded, second["location"]).read_bytes())
    target = tmp_path / "restored.sqlite3"
    at = datetime.fromisoformat(first["snapshot_at"]) + timedelta(microseconds=1)
    assert at < datetime.fromisoformat(second["snapshot_at"])
    with pytest.raises(bk.BackupIntegrityError, match=f"holds backup {second['backup_id']}") as raised:
        bk.restore(embedded, at, target, operator=OPERATOR)
    assert first["location"] in str(raised.value) and not target.exists()
    with pytest.raises(bk.BackupIntegrityError, match="corrupt"):
        bk.verify_backup(embedded, first["backup_id"])


def test_a_restore_leaves_the_objects_hash_to_verify(embedded: Platform, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    result = bk.run_backup(embedded, "full", operator=OPERATOR)
    opened: list[bool] = []
    real_open = LocalObjectStore.open

    def recording_open(self: LocalObjectStore, key: str, version_id: str | None = None, *, verify: bool = True):
        if key == result["location"]:
            opened.append(verify)
        return real_open(self, key, version_id, verify=verify)

    monkeypatch.setattr(LocalObjectStore, "open", recording_open)
    restored = bk.restore(embedded, utcnow(), tmp_path / "restored.sqlite3", operator=OPERATOR)
    verified = bk.verify_backup(embedded, result["backup_id"])
    assert opened == [False, True]
    assert "sha256" not in {c["name"] for c in restored["checks"]}
    assert "sha256" in {c["name"] for c in verified["checks"]}
    with sqlite3.connect(tmp_path / "restored.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_wrong_master_key_fails_verify_and_restore_refuses_naming_the_file(sqlite_platform: Platform,
                                                                            tmp_path: Path) -> None:
    result = bk.run_backup(sqlite_platform, "full", operator=OPERATOR)
    master = sqlite_platform.settings.keys_dir / "master.key"
    original = master.read_bytes()
    master.write_bytes(bytes(32))  # another key (a restore on a host with the wrong key file)
    try:
        with pytest.raises(bk.BackupIntegrityError, match="wrong key") as raised:
            bk.verify_backup(sqlite_platform, result["backup_id"])
        assert result["location"] in str(raised.value)
        with pytest.raises(bk.BackupIntegrityError, match="wrong key") as raised:
            bk.restore(sqlite_platform, utcnow(), tmp_path / "restored.sqlite3", operator=OPERATOR)
        assert result["location"] in str(raised.value)
    finally:
        master.write_bytes(original)
    assert bk.verify_backup(sqlite_platform, result["backup_id"])["passed"]


def test_backups_stay_readable_after_a_master_key_rotation(embedded: Platform) -> None:
    before = bk.run_backup(embedded, "full", operator=OPERATOR)
    rotated = KeyStore(embedded.settings.keys_dir).rotate_master()
    assert rotated["old_master_key_id"] == before["key_id"]
    assert bk.verify_backup(embedded, before["backup_id"])["passed"]
    after = bk.run_backup(embedded, "full", operator=OPERATOR)
    assert after["key_id"] == rotated["new_master_key_id"]
    (embedded.settings.keys_dir / rotated["retired_to"]).unlink()  # a retired key thrown away too early
    with pytest.raises(bk.BackupIntegrityError, match="no retired key of that id") as raised:
        bk.verify_backup(embedded, before["backup_id"])
    assert before["location"] in str(raised.value)


def test_restore_to_a_time_is_the_nearest_backup_at_or_before_it(sqlite_platform: Platform, tmp_path: Path) -> None:
    platform = sqlite_platform
    audit.append(platform.db, actor="test", action="canary.before-first")
    first = bk.run_backup(platform, "full", operator=OPERATOR)
    audit.append(platform.db, actor="test", action="canary.between")
    time.sleep(0.01)
    second = bk.run_backup(platform, "full", operator=OPERATOR)
    first_at = datetime.fromisoformat(first["snapshot_at"])
    second_at = datetime.fromisoformat(second["snapshot_at"])

    between = bk.restore(platform, first_at + (second_at - first_at) / 2, tmp_path / "between.sqlite3",
                         operator=OPERATOR)
    assert between["backup_id"] == first["backup_id"] and between["semantics"].startswith("nearest backup")
    actions = _actions(tmp_path / "between.sqlite3")
    assert "canary.before-first" in actions and "canary.between" not in actions
    assert between["rpo_seconds"] == pytest.approx(((second_at - first_at) / 2).total_seconds(), abs=1e-3)

    exactly = bk.restore(platform, second_at, tmp_path / "second.sqlite3", operator=OPERATOR)
    assert exactly["backup_id"] == second["backup_id"] and "canary.between" in _actions(tmp_path / "second.sqlite3")

    with pytest.raises(bk.BackupError, match="no SQLite backup was taken at or before"):
        bk.restore(platform, first_at - timedelta(microseconds=1), tmp_path / "none.sqlite3", operator=OPERATOR)
    with pytest.raises(bk.InvalidInputError, match="timezone-aware"):
        bk.restore(platform, datetime.now(), tmp_path / "naive.sqlite3", operator=OPERATOR)  # noqa: DTZ005
    with pytest.raises(bk.BackupError, match="already exists"):
        bk.restore(platform, second_at, tmp_path / "second.sqlite3", operator=OPERATOR)


def test_restore_then_ledger_replay_keeps_erased_subjects_erased(sqlite_platform: Platform, tmp_path: Path) -> None:
    platform = sqlite_platform
    victim, bystander = plant(platform, "victim"), plant(platform, "bystander")
    backup = bk.run_backup(platform, "full", operator=OPERATOR)
    erase_subject(platform, victim.user_id, actor="test")
    with platform.db.session() as session:
        ledger = set(session.scalars(sa.select(ErasureLedger.subject_hash)))
    assert len(ledger) == 1

    # The backup predates the erasure: restored as is, it would bring the victim back.
    scratch = bk.restore(platform, utcnow(), tmp_path / "scratch.sqlite3", operator=OPERATOR)
    assert scratch["backup_id"] == backup["backup_id"]
    assert scratch["ledger"]["ledger_rows_added"] == 1 and scratch["ledger"]["subjects_erased_again"] == 1
    # A restored copy's sealed columns open with the live key store (keys are never in a backup).
    restored = Database(f"sqlite:///{tmp_path / 'scratch.sqlite3'}", keys=KeyStore(platform.settings.keys_dir))
    with restored.session() as session:
        assert session.get(User, victim.user_id) is None
        assert session.get(User, bystander.user_id) is not None
        assert set(session.scalars(sa.select(ErasureLedger.subject_hash))) == ledger
    restored.dispose()
    # Re-erasing in the scratch copy left the live stores alone.
    assert platform.cache.get(f"session:{bystander.canary}") == bystander.canary.encode()

    live = bk.restore(platform, utcnow(), "live", operator=OPERATOR)
    assert live["target"] == "live" and live["ledger"]["subjects_erased_again"] == 1
    assert all(check["passed"] for check in live["checks"])
    with platform.db.session() as session:
        assert session.get(User, victim.user_id) is None
        assert session.get(User, bystander.user_id) is not None
        assert set(session.scalars(sa.select(ErasureLedger.subject_hash))) == ledger
        restored_entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "backup.restored"))
        assert restored_entry.details["ledger"]["subjects_erased_again"] == 1
        # The catalog carried over: the backup is still listed although the copy predates its success.
        assert session.get(Backup, bk.parse_uuid(backup["backup_id"])).status.value in {"succeeded", "verified"}
    assert bk.erased_subjects_present(platform.db, KeyStore(platform.settings.keys_dir)) == 0


def test_a_restore_over_a_live_database_in_use_is_refused(embedded: Platform) -> None:
    bk.run_backup(embedded, "full", operator=OPERATOR)
    holder = sqlite3.connect(bk.sqlite_database_path(embedded.db), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(bk.BackupError, match="in use"):
            bk.restore(embedded, utcnow(), "live", operator=OPERATOR)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert bk.restore(embedded, utcnow(), "live", operator=OPERATOR)["target"] == "live"


def test_without_a_readable_ledger_a_restore_needs_an_exported_one(embedded: Platform, tmp_path: Path) -> None:
    victim = plant(embedded, "lost")
    bk.run_backup(embedded, "full", operator=OPERATOR)
    erase_subject(embedded, victim.user_id, actor="test")
    exported = bk.export_ledger(embedded)
    embedded.db.dispose()
    live = bk.sqlite_database_path(embedded.db)
    live.write_bytes(b"not a database any more")
    for suffix in ("-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    with pytest.raises(bk.BackupError, match="erasure ledger"):
        bk.restore(embedded, utcnow(), tmp_path / "scratch.sqlite3", operator=OPERATOR)
    result = bk.restore(embedded, utcnow(), "live", ledger=exported, operator=OPERATOR)
    assert result["ledger"]["subjects_erased_again"] == 1
    with embedded.db.session() as session:
        assert session.get(User, victim.user_id) is None


def test_the_object_store_is_the_catalog_of_record(embedded: Platform) -> None:
    result = bk.run_backup(embedded, "full", operator=OPERATOR)
    with embedded.db.session() as session:
        session.execute(sa.delete(Backup))
    listed = bk.list_backups(embedded)
    assert [row["id"] for row in listed] == [result["backup_id"]]
    assert listed[0]["manifest"] == {"catalog": "object store only"}
    assert bk.verify_backup(embedded, result["backup_id"])["passed"]


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 4096, 3 * 4096 + 1, 10 * 4096 - 7])
def test_a_file_sealed_on_threads_has_the_layout_of_a_sealed_stream(tmp_path: Path, size: int) -> None:
    import io
    import os

    keys = KeyStore(tmp_path / "keys")
    source = tmp_path / "plain"
    data = os.urandom(size)
    source.write_bytes(data + b"trailing bytes past the length sealed")
    patches = {1: b"\x01\x01"} if size >= 3 else {}
    expected = bytearray(data)
    for offset, replacement in patches.items():
        expected[offset:offset + len(replacement)] = replacement
    sealed = bk.seal_file(keys, source, label="a-backup", context={"n": size}, chunk_bytes=4096, length=size,
                          patches=patches).read()
    reference = bk.seal(keys, io.BytesIO(bytes(expected)), label="a-backup", context={"n": size},
                        chunk_bytes=4096).read()
    # Fresh data key and nonces each time: same layout and length, different bytes.
    assert len(sealed) == len(reference) and sealed != reference
    plain = io.BytesIO()
    opened = bk.unseal(keys, io.BytesIO(sealed), plain, name="plain.enc")
    # What was sealed, and what the manifest's sha256 is taken of: the patched first `size` bytes,
    # the file untouched.
    assert plain.getvalue() == expected
    assert bk.file_sha256(source, 4096, length=size, patches=patches) == hashlib.sha256(expected).hexdigest()
    with pytest.raises(bk.BackupError, match="shorter than"):
        bk.file_sha256(source, 4096, length=source.stat().st_size + 1)
    assert source.read_bytes()[:size] == data and opened["context"] == {"n": size}
    # Frames cut off at the end or swapped are refused, naming the file.
    header_end = len(bk._MAGIC) + 4 + int.from_bytes(sealed[len(bk._MAGIC):len(bk._MAGIC) + 4], "big")
    with pytest.raises(bk.BackupIntegrityError, match="plain.enc"):
        bk.unseal(keys, io.BytesIO(sealed[:header_end + 10]), io.BytesIO(), name="plain.enc")


def test_a_patch_outside_the_first_chunk_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "plain"
    source.write_bytes(b"x" * (3 * 4096))
    with pytest.raises(bk.BackupError, match="outside its first chunk"):
        bk.seal_file(KeyStore(tmp_path / "keys"), source, label="a-backup", chunk_bytes=4096, patches={4095: b"ab"})


def test_the_manifest_sha256_is_the_decrypted_copys_and_a_wrong_one_is_refused(embedded: Platform,
                                                                                tmp_path: Path) -> None:
    import hashlib
    import io
    import json

    # The plaintext sha256 is taken in the manifest phase, from the copy that was sealed.
    result = bk.run_backup(embedded, "full", operator=OPERATOR)
    manifest = bk._load_manifest(embedded, result["manifest_key"])
    assert manifest["seconds"]["manifest"] > 0 and len(manifest["plaintext_sha256"]) == 64
    path, _ = bk.materialize_sqlite(embedded, bk._find_sqlite(embedded, result["backup_id"]), tmp_path / "m")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest["plaintext_sha256"]
    with embedded.objects.open(result["location"]) as stream:
        opened = bk.unseal(KeyStore(embedded.settings.keys_dir), stream, io.BytesIO(), name=result["location"])
    assert opened["plaintext_sha256"] == manifest["plaintext_sha256"]

    # A manifest whose sha256 is not the copy's: verify and restore refuse the backup by name.
    embedded.objects.put(result["manifest_key"], json.dumps({**manifest, "plaintext_sha256": "0" * 64}).encode(),
                         content_type="application/json")
    with pytest.raises(bk.BackupIntegrityError, match="does not match its manifest's sha256") as raised:
        bk.verify_backup(embedded, result["backup_id"])
    assert result["location"] in str(raised.value)
    with pytest.raises(bk.BackupIntegrityError, match="does not match its manifest's sha256"):
        bk.restore(embedded, utcnow(), tmp_path / "restored.sqlite3", operator=OPERATOR)
    assert not (tmp_path / "restored.sqlite3").exists() and not list(tmp_path.glob(".restore-*"))


def test_a_file_that_shrinks_while_it_is_sealed_is_refused(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    source = tmp_path / "plain"
    source.write_bytes(b"x" * (5 * 4096))
    sealed = bk.seal_file(keys, source, label="a-backup", chunk_bytes=4096)
    with source.open("r+b") as file:
        file.truncate(3 * 4096 + 10)
    with pytest.raises(bk.BackupError, match="changed size while it was being sealed"):
        sealed.read()


def test_a_restored_file_is_on_disk_before_it_is_renamed_into_place(sqlite_platform: Platform, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A crash right after the rename must not leave an empty or partial database at the target:
    # the decrypted file's bytes are fsynced before os.replace puts it there.
    import os

    backup = bk.run_backup(sqlite_platform, "full", operator=OPERATOR)
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: str | Path, target: str | Path) -> None:
        events.append(("replace", str(source)))
        real_replace(source, target)

    monkeypatch.setattr(bk.os, "fsync", fsync)
    monkeypatch.setattr(bk.os, "replace", replace)
    target = tmp_path / "restored.sqlite3"
    restored = bk.restore(sqlite_platform, datetime.fromisoformat(backup["snapshot_at"]), target, operator=OPERATOR)
    monkeypatch.undo()
    assert restored["backup_id"] == backup["backup_id"] and target.exists()
    moved = [path for kind, path in events if kind == "replace" and Path(path).name != target.name]
    assert moved, events
    partial = moved[-1]
    assert ("fsync", partial) in events[:events.index(("replace", partial))]
