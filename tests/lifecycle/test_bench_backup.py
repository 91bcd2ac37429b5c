"""The backup benchmark runs end to end at a toy size and returns what the CLI prints; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.backup import run_backup_bench
from tests.lifecycle.conftest import REPOSITORY, _pgbackrest_available

pytestmark = pytest.mark.slow


def test_install_script_is_idempotent() -> None:
    first = subprocess.run(["bash", str(REPOSITORY / "scripts" / "install-pgbackrest")], capture_output=True,
                           text=True, timeout=600)
    second = subprocess.run(["bash", str(REPOSITORY / "scripts" / "install-pgbackrest")], capture_output=True,
                            text=True, timeout=60)
    assert first.returncode == 0 and second.returncode == 0 and second.stdout == ""


def test_backup_bench_measures_both_sides_on_the_same_database(tmp_path: Path) -> None:
    reason = _pgbackrest_available()
    if reason:
        pytest.skip(reason)
    messages: list[str] = []
    result = run_backup_bench(tmp_path, size_mb=8, sqlite_mb=2, progress=messages.append)
    json.dumps(result)
    postgres = result["postgresql"]
    assert postgres["dataset"] == "realistic" and postgres["rows"] > 0 and messages
    assert postgres["pgbackrest_version"][0].isdigit()
    assert postgres["theirs"]["pg_dump_seconds"] > 0 and postgres["theirs"]["pg_restore_j2_seconds"] > 0
    assert postgres["ours"]["restore_checks_passed"] and postgres["drill"]["passed"]
    assert set(postgres["ratios"]) == {"backup_vs_pg_dump", "backup_and_manifest_vs_pg_dump",
                                       "backup_and_verify_vs_pg_dump", "backup_vs_pg_basebackup",
                                       "backup_and_verify_vs_pg_basebackup", "restore_rto_vs_best_pg_restore",
                                       "restore_with_checks_vs_best_pg_restore"}
    assert postgres["theirs"]["pg_basebackup_seconds"] > 0 and postgres["theirs"]["pg_basebackup_mb"] > 0
    phases = postgres["ours"]["backup_phases"]
    assert {"backup", "manifest", "verify", "backup_repo1", "replicate_repo2", "digests", "verify_repo1",
            "verify_repo2"} <= set(phases)
    ours = postgres["ours"]
    assert 0 < ours["backup_seconds"] <= ours["backup_and_manifest_seconds"] < ours["backup_and_verify_seconds"]
    assert ours["verify_seconds"] > 0 and ours["manifest_seconds"] >= 0
    assert "extrapolated_1gb" in postgres["drill"]
    assert result["sqlite"]["ratios"]["backup_vs_backup_api"] > 0
    sqlite = result["sqlite"]["ours"]
    assert 0 < sqlite["backup_seconds"] < sqlite["backup_and_manifest_seconds"] and sqlite["manifest_seconds"] > 0
    assert result["sqlite"]["ratios"]["restore_vs_backup_api"] > 0
    assert result["command"].startswith("python -m bench.backup") and result["machine"]["cores"]
    assert result["sqlite"]["memory"] == "primed" and "--sqlite-memory primed" in result["command"]


def test_sqlite_only_in_rounds_reports_medians_and_each_round(tmp_path: Path) -> None:
    # --datasets none measures SQLite alone (no PostgreSQL needed); each round's files are gone after it.
    result = run_backup_bench(tmp_path, sqlite_mb=2, datasets=("none",), sqlite_rounds=2, sqlite_memory="as-is")
    json.dumps(result)
    assert "postgresql" not in result
    assert "--datasets none" in result["command"] and "--sqlite-rounds 2" in result["command"]
    sqlite = result["sqlite"]
    assert sqlite["rounds"] == 2 and len(sqlite["per_round"]) == 2 and sqlite["memory"] == "as-is"
    assert "--sqlite-memory as-is" in result["command"]
    with pytest.raises(ValueError, match="primed, idle, as-is"):
        run_backup_bench(tmp_path, datasets=("none",), sqlite_memory="warm")
    assert all(set(r) == {"theirs", "ours"} for r in sqlite["per_round"])
    backups = sorted(r["ours"]["backup_seconds"] for r in sqlite["per_round"])
    assert sqlite["ours"]["backup_seconds"] == round((backups[0] + backups[1]) / 2, 3)
    assert sqlite["ratios"]["backup_vs_backup_api"] > 0 and sqlite["ours"]["restore_rto_seconds"] > 0
    # Nothing else reads the bench's database: every round pins the live file.
    assert sqlite["ours"]["snapshot_method"] == "pinned-file"
