"""PostgreSQL backups with pgBackRest against a real throwaway cluster (see conftest.pg_stanza):
archiving, full and incremental backups to two encrypted repositories, verify, point-in-time
recovery proven by canary rows, damage refused by name, live restore with ledger replay, drill."""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.authz import system_principal
from encaptio_data import audit
from encaptio_data.db.models import AuditEntry, Backup, ErasureLedger, User
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle import backup as bk
from encaptio_data.lifecycle import pgbackrest as pgb
from encaptio_data.lifecycle.drill import run_drill
from encaptio_data.platform import Platform
from encaptio_data.privacy.erasure import erase_subject
from tests.lifecycle.conftest import PG_GROUP, Stanza
from tests.privacy.conftest import plant

# Backups and drills are what the schedules do: they run as the Dagster system principal.
OPERATOR = system_principal("dagster", run="test")

pytestmark = [PG_GROUP, pytest.mark.slow]


def test_config_keeps_the_passphrase_out_and_sets_the_policy(tmp_path: Path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    stanza = pgb.PgBackRest(stanza="demo", pg_path=tmp_path / "pg", repo1_path=tmp_path / "r1",
                            repo2_path=tmp_path / "r2", config_dir=tmp_path / "conf", passphrase_file=passphrase)
    config, wrapper = stanza.render_config(), stanza.render_wrapper()
    for line in ("repo1-cipher-type=aes-256-cbc", "repo2-cipher-type=aes-256-cbc", "compress-type=zst",
                 "compress-level=1",
                 "repo1-retention-full-type=time", "repo1-retention-full=30", f"repo2-path={tmp_path / 'r2'}",
                 "[demo]", f"pg1-path={tmp_path / 'pg'}"):
        assert line in config.splitlines()
    assert "correct horse" not in config + wrapper and "cipher-pass" not in config
    assert str(passphrase) in wrapper and "PGBACKREST_REPO1_CIPHER_PASS" in wrapper
    assert stanza.archive_command == f"{tmp_path / 'conf' / 'pgbackrest-stanza'} --stanza=demo archive-push %p"
    with pytest.raises(pgb.SettingsError, match="ENCAPTIO_PGBACKREST_STANZA"):
        pgb.PgBackRest.from_environment()
    with pytest.raises(pgb.SettingsError, match="REPO2_MODE"):
        pgb.PgBackRest.from_environment(stanza="demo", pg_path=tmp_path, repo1_path=tmp_path, repo2_path=tmp_path,
                                        config_dir=tmp_path, repo2_mode="rsync")


def test_the_passphrase_from_the_key_store_is_never_replaced(pg_stanza: Stanza) -> None:
    stanza = pg_stanza.stanza
    before = stanza.passphrase_path.read_bytes()
    stanza.write_config(KeyStore(pg_stanza.root / "another-key-store"))
    assert stanza.passphrase_path.read_bytes() == before
    assert oct(stanza.passphrase_path.stat().st_mode & 0o777) == "0o600"
    assert before.strip().decode() not in stanza.config_file.read_text()


def test_full_and_incremental_backups_verify_and_restore_to_their_manifest(pg_platform: Platform) -> None:
    full = bk.run_backup(pg_platform, "full", operator=OPERATOR)
    assert full["store"] == "postgresql" and full["type"] == "full" and full["repos"] == [1, 2]
    assert all(v["passed"] for v in full["verify"]) and full["tables"] > 10
    audit.append(pg_platform.db, actor="test", action="test.between-backups")
    incremental = bk.run_backup(pg_platform, "incremental", operator=OPERATOR)
    # repo2 replicates repo1's sets, incrementals included.
    assert incremental["type"] == "incr" and incremental["repos"] == [1, 2]
    # The daily full re-reads both whole repositories; an hourly incremental only its own set.
    assert [v["scope"] for v in full["verify"]] == ["repository", "repository"]
    assert [v["scope"] for v in incremental["verify"]] == [f"set {incremental['label']}"] * 2
    assert all(v["passed"] for v in incremental["verify"])
    assert {"backup", "manifest", "verify", "backup_repo1", "replicate_repo2", "wal_archived", "digests",
            "verify_repo1", "verify_repo2"} <= set(full["phases"]) and "backup_repo2" not in full["phases"]

    listed = {row["id"]: row for row in bk.list_backups(pg_platform, store="postgresql")}
    assert listed[incremental["backup_id"]]["status"] == "succeeded"
    assert listed[full["backup_id"]]["location"] == f"pgbackrest:encaptio_test/{full['label']}"
    assert listed[full["backup_id"]]["key_id"].startswith("pgbackrest:")

    verified = bk.verify_backup(pg_platform, incremental["backup_id"])
    names = {check["name"] for check in verified["checks"]}
    assert verified["passed"] and {"pgbackrest_verify_repo1", "manifest", "amcheck", "page_checksums",
                                   "data_checksums_enabled", "ledger_replayed"} <= names
    with pg_platform.db.session() as session:
        assert session.get(Backup, bk.parse_uuid(incremental["backup_id"])).status.value == "verified"


def test_repo2_is_a_replica_that_verifies_and_names_a_damaged_file(pg_platform: Platform,
                                                                    pg_stanza: Stanza) -> None:
    stanza = pg_stanza.stanza
    full = bk.run_backup(pg_platform, "full", operator=OPERATOR)
    source = stanza.repo1_path / "backup" / "encaptio_test"
    replica = stanza.repo2_path / "backup" / "encaptio_test"
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(replica) for p in replica.rglob("*") if p.is_file())
    # The sets byte for byte; the catalog by content (expire on repo2 saves it again, freshly encrypted).
    catalog = {Path("backup.info"), Path("backup.info.copy")}
    assert [f for f in files if f not in catalog and (source / f).read_bytes() != (replica / f).read_bytes()] == []
    assert [b["label"] for b in stanza.backups(repo=2)] == [b["label"] for b in stanza.backups(repo=1)]
    again = stanza.replicate_backups()
    assert again["files_copied"] <= len(catalog) and again["files_unchanged"] >= len(files) - len(catalog)

    bundle = max((p for p in (replica / full["label"]).rglob("*") if p.is_file() and p.name != "backup.manifest"
                  and p.name != "backup.manifest.copy"), key=lambda p: p.stat().st_size)
    original = bundle.read_bytes()
    try:
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x01
        bundle.write_bytes(bytes(damaged))
        report = stanza.verify(repo=2)
        assert not report["passed"] and report["invalid_files"], report
        assert stanza.verify(repo=1)["passed"]
    finally:
        bundle.write_bytes(original)
        os.utime(bundle, ns=((source / bundle.relative_to(replica)).stat().st_atime_ns,
                              (source / bundle.relative_to(replica)).stat().st_mtime_ns))
    assert stanza.verify(repo=2)["passed"]


def test_without_replication_repo2_takes_its_own_full_backup(pg_platform: Platform, pg_stanza: Stanza,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCAPTIO_PGBACKREST_REPO2_MODE", "backup")
    full = bk.run_backup(pg_platform, "full", operator=OPERATOR)
    assert full["repos"] == [1, 2] and "backup_repo2" in full["phases"] and "replicate_repo2" not in full["phases"]
    assert all(v["passed"] for v in full["verify"])
    incremental = bk.run_backup(pg_platform, "incremental", operator=OPERATOR)
    assert incremental["repos"] == [1]


def _audit_actions(port: int, platform: Platform) -> list[str]:
    engine = sa.create_engine(bk._scratch_url(platform, port), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(AuditEntry.action).order_by(AuditEntry.seq)).scalars())
    finally:
        engine.dispose()


def test_point_in_time_restore_holds_exactly_what_was_committed_before_the_target(
        pg_platform: Platform, pg_stanza: Stanza) -> None:
    bk.run_backup(pg_platform, "incremental", operator=OPERATOR)
    engine = pg_platform.db.engine
    audit.append(pg_platform.db, actor="test", action="canary.before")
    target = pgb.server_now(engine)
    time.sleep(0.05)
    audit.append(pg_platform.db, actor="test", action="canary.after")

    data_dir = pg_stanza.root / "scratch-pitr" / "data"
    try:
        result = bk.restore(pg_platform, target, data_dir, operator=OPERATOR)
        assert result["semantics"].startswith("every transaction committed at or before")
        assert all(check["passed"] for check in result["checks"]), result["checks"]
        assert 0 <= result["rpo_seconds"] < 0.05 and result["rto_seconds"] > 0
        assert "pg_ctl" in result["start_command"]
        restored = pgb.Cluster(data_dir=data_dir, port=result["port"], socket_dir=data_dir.parent)
        restored.start()
        try:
            actions = _audit_actions(result["port"], pg_platform)
        finally:
            restored.stop()
        assert "canary.before" in actions and "canary.after" not in actions
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    with pytest.raises(bk.BackupError, match="no PostgreSQL backup"):
        bk.restore(pg_platform, target - timedelta(days=365), pg_stanza.root / "never", operator=OPERATOR)


def test_a_damaged_repository_file_fails_verify_and_the_restore_names_it(pg_platform: Platform,
                                                                        pg_stanza: Stanza) -> None:
    result = bk.run_backup(pg_platform, "incremental", operator=OPERATOR)
    backup_dir = pg_stanza.stanza.repo1_path / "backup" / "encaptio_test" / result["label"]
    victim = max((p for p in backup_dir.rglob("*") if p.is_file() and "manifest" not in p.name),
                 key=lambda p: p.stat().st_size)
    original = victim.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    victim.write_bytes(bytes(damaged))
    try:
        report = pg_stanza.stanza.verify(repo=1)
        # With bundling on, the damaged repository file holds many cluster files. pgBackRest 2.54+
        # names that repository file; 2.45 (Debian 12's, the install script's fallback) named the
        # cluster file inside it whose checksum failed.
        assert not report["passed"] and report["invalid_files"], report
        relative = report["invalid_files"][0].split(": ", 1)[1]
        named_the_bundle = relative == victim.relative_to(backup_dir.parent).as_posix()
        assert named_the_bundle or relative.startswith(f"{result['label']}/pg_data/"), relative
        with pytest.raises(bk.BackupIntegrityError) as raised:
            bk.verify_backup(pg_platform, result["backup_id"])
        assert relative in str(raised.value)
        with pytest.raises(pgb.PgBackRestError, match="restore refused") as raised:
            pg_stanza.stanza.restore_scratch(pg_stanza.root / "scratch-damaged" / "data", set_label=result["label"],
                                             target_type="immediate", repo=1)
        assert relative in str(raised.value)
    finally:
        victim.write_bytes(original)
        shutil.rmtree(pg_stanza.root / "scratch-damaged", ignore_errors=True)
    assert pg_stanza.stanza.verify(repo=1)["passed"]


def _flip_middle_byte(path: Path) -> bytes:
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    return original


def test_an_incremental_set_verify_reads_what_it_refers_to_and_not_older_wal(pg_platform: Platform,
                                                                             pg_stanza: Stanza) -> None:
    stanza = pg_stanza.stanza
    full = bk.run_backup(pg_platform, "full", operator=OPERATOR)
    incremental = bk.run_backup(pg_platform, "incremental", operator=OPERATOR)
    # A file of the full that the incremental refers to (unchanged since) is part of its set.
    full_set = stanza.repo1_path / "backup" / "encaptio_test" / full["label"]
    referenced = max((p for p in full_set.rglob("*") if p.is_file() and "manifest" not in p.name),
                     key=lambda p: p.stat().st_size)
    original = _flip_middle_byte(referenced)
    try:
        report = stanza.verify(repo=1, set_label=incremental["label"])
        assert not report["passed"] and any(full["label"] in f for f in report["invalid_files"]), report
    finally:
        referenced.write_bytes(original)
    # WAL from before the full belongs to no later set: the set's verify passes, the repository's fails.
    oldest_wal = min(p for p in (stanza.repo1_path / "archive" / "encaptio_test").rglob("0000*") if p.is_file())
    original = _flip_middle_byte(oldest_wal)
    try:
        assert stanza.verify(repo=1, set_label=incremental["label"])["passed"]
        whole = stanza.verify(repo=1)
        assert not whole["passed"] and any(oldest_wal.name in f for f in whole["invalid_files"]), whole
    finally:
        oldest_wal.write_bytes(original)
    assert stanza.verify(repo=1)["passed"]


def test_live_restore_then_ledger_replay_keeps_erased_subjects_erased(pg_platform: Platform,
                                                                      pg_stanza: Stanza) -> None:
    victim, bystander = plant(pg_platform, "victim"), plant(pg_platform, "bystander")
    bk.run_backup(pg_platform, "incremental", operator=OPERATOR)
    time.sleep(1.1)  # pgBackRest compares stop and target times in whole seconds
    audit.append(pg_platform.db, actor="test", action="canary.before-erasure")
    target = pgb.server_now(pg_platform.db.engine)
    time.sleep(0.05)
    erase_subject(pg_platform, victim.user_id, actor="test")
    with pg_platform.db.session() as session:
        ledger = set(session.scalars(sa.select(ErasureLedger.subject_hash)))

    result = bk.restore(pg_platform, target, "live", operator=OPERATOR)
    assert result["target"] == "live" and result["ledger"]["subjects_erased_again"] == 1
    assert all(check["passed"] for check in result["checks"])
    with pg_platform.db.session() as session:
        assert session.get(User, victim.user_id) is None, "the ledger replay must erase the victim again"
        assert session.get(User, bystander.user_id) is not None
        assert set(session.scalars(sa.select(ErasureLedger.subject_hash))) == ledger
        actions = list(session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.seq)))
    assert "canary.before-erasure" in actions and "backup.restored" in actions
    assert actions.index("canary.before-erasure") < actions.index("backup.restored")
    assert pg_stanza.cluster.is_running()
    with pytest.raises(bk.BackupError, match="no PostgreSQL backup"):
        bk.restore(pg_platform, target - timedelta(days=365), "live", operator=OPERATOR)
    assert pg_stanza.cluster.is_running(), "an impossible target must be refused before the cluster stops"
    # Archiving goes on from the restored cluster's new timeline: the next backup works.
    assert bk.run_backup(pg_platform, "incremental", operator=OPERATOR)["status"] == "succeeded"


def test_drill_restores_twice_and_records_rto_rpo_evidence(pg_platform: Platform) -> None:
    bk.run_backup(pg_platform, "full", operator=OPERATOR)
    time.sleep(1)  # pgBackRest records stop times in whole seconds
    result = run_drill(pg_platform, operator=OPERATOR)
    failed = [c for c in result["checks"] if not c["passed"]]
    assert result["passed"], failed
    names = {c["name"] for c in result["checks"]}
    assert {"latest.manifest", "latest.amcheck", "latest.page_checksums", "point_in_time.amcheck",
            "point_in_time.canary_committed_before_target_present",
            "point_in_time.canary_committed_after_target_absent", "point_in_time.ledger_replayed"} <= names
    assert result["rto_seconds"] > 0 and 0 <= result["rpo_seconds"] < 1
    assert [r["repo"] for r in result["restores"]] == [1, 2]  # the point in time from the cross-region copy
    with pg_platform.db.session() as session:
        row = session.get(Backup, bk.parse_uuid(result["backup_id"]))
        assert row.manifest["last_drill"]["drill_id"] == result["drill_id"] and row.status.value == "verified"
        entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "backup.drill"))
        assert entry.details["rto_seconds"] == result["rto_seconds"]
    assert pg_platform.objects.exists(result["evidence"]["object"])


def test_digest_sums_are_the_same_text_as_the_numeric_sums_of_older_manifests(pg_platform: Platform) -> None:
    # Manifests written before summed hash::numeric; the bigint sum must render identically.
    with pg_platform.db.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE digest_probe AS SELECT g AS id, md5(g::text) AS body "
                             "FROM generate_series(1, 20000) g"))
        for method, expression in pgb._ROW_HASHES.items():
            old = conn.execute(sa.text(f"SELECT count(*), coalesce(sum({expression}::numeric), 0)::text "
                                       "FROM digest_probe t")).one()
            assert pgb._sum_row_hashes(conn, "digest_probe", method) == (int(old[0]), old[1])
        conn.execute(sa.text("CREATE TABLE digest_empty (id int)"))
        assert pgb._sum_row_hashes(conn, "digest_empty", pgb.ROW_HASH) == (0, "0")
