"""Backup and restore benchmark: ours against the plain tools, on the same database, in the same run.

PostgreSQL: a throwaway cluster (initdb --data-checksums, fsync on, WAL archived by pgBackRest to
two encrypted repositories) holding the platform's schema plus generated rows sized to
``size_mb``: platform-like rows (UUIDs, digests, timestamps, JSON, text; ~2:1 compressible) and,
optionally, pgbench's tables (~50:1 compressible, which flatters every compressing tool).
Measured on that one database:

* theirs — ``pg_dump -Fc`` (one process, its default compression) and ``pg_restore`` into a new
  database, both plain (one process) and with ``-j 2`` (one job per core); the faster restore is
  the baseline, so the comparison is the strict one. And ``pg_basebackup -Ft`` (uncompressed,
  unencrypted tar of every page plus its WAL): the physical copy, the kind of backup ours is;
* ours — ``run_backup(platform, "full")``, in three phases: *backup* (until the backup restores
  from either repository: pgBackRest full backup to repo1, the restore point, the WAL through it
  archived to both repositories, repo1's new set replicated into repo2), *manifest* (the rest of
  the restore point's per-table digests, which run on the server beside the archiving and
  replication) and *verify* (``pgbackrest verify`` of both repositories). pg_dump has no
  counterpart to the last two; every ratio is reported (backup, backup + manifest, all three).
  And a point-in-time restore into a scratch directory (``restore``: pgBackRest restore, WAL
  replay, start, pg_amcheck, ledger replay, page checksums); its ``rto_seconds`` excludes the
  integrity checks;
* the drill — ``run_drill`` on the same database: two restores, RTO and RPO.

SQLite: a database of ``sqlite_mb`` (platform schema plus a bulk table) backed up with
sqlite3's backup API (theirs) and with ``run_backup`` (ours, two phases: *backup* = a consistent
snapshot (the live file pinned, or where that cannot be had a copy through the backup API; which
one is reported per round as ``snapshot_method``), AES-256-GCM (every chunk authenticated), stored
durably in the object store with its sha256; *manifest* = the sealed bytes' sha256, integrity
check and per-table digests (read from the pinned file, or from the copy), recorded beside it),
restored by a file copy and by the backup API into a new file
(theirs) and by ``restore`` (ours: decrypt, sha256, integrity_check, manifest, ledger replay).

With ``--sqlite-rounds N`` the SQLite comparison runs N times, the sides alternating which goes
first, each side's files removed before the other runs; medians are reported. Before each timed
step the disk is synced, and ``--sqlite-memory`` sets what memory it starts with (see
``_sqlite``): ``primed`` (the default; twice the database's size written to a file and freed, so
that the step writes into memory just freed), ``idle`` (3 s without work first: on a VM with a
free-page-reporting balloon, memory handed back to the host) or ``as-is``.

When ``size_mb`` is below 1024 the drill's recovery time for 1 GB is extrapolated linearly from
the measured one and labelled as such.

Run: ``python -m bench.backup --size-mb 1024 --datasets realistic,pgbench`` (or ``encaptio bench backup``
once wired); ``--datasets none --sqlite-mb 256`` measures SQLite only.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench._common import ProgressCallback, default_data_dir, finish_machine_info, machine_info, ratio, say
from encaptio_data.authz import system_principal
from encaptio_data.lifecycle import pgbackrest as pgb

PGBENCH_MB_PER_SCALE = 15.0  # pgbench -i: 100,000 accounts rows and their index per scale unit
REALISTIC_ROWS_PER_MB = 3260  # bench_rows with its two indexes (measured: 3.07M rows, 940 MB)
ONE_GB_MB = 1024
BENCH = system_principal("bench")


def _timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return round(time.perf_counter() - started, 3), result


def _env(stanza: pgb.PgBackRest) -> dict[str, str]:
    return {"ENCAPTIO_PGBACKREST_STANZA": stanza.stanza, "ENCAPTIO_PGBACKREST_PG_PATH": str(stanza.pg_path),
            "ENCAPTIO_PGBACKREST_PG_PORT": str(stanza.pg_port),
            "ENCAPTIO_PGBACKREST_PG_SOCKET_PATH": str(stanza.pg_socket_path),
            "ENCAPTIO_PGBACKREST_REPO1_PATH": str(stanza.repo1_path),
            "ENCAPTIO_PGBACKREST_REPO2_PATH": str(stanza.repo2_path),
            "ENCAPTIO_PGBACKREST_CONFIG_DIR": str(stanza.config_dir)}


def _generate(dataset: str, size_mb: int, root: Path, port: int, platform: Any) -> int:
    """Fill the platform database with ~size_mb of generated rows; returns how many."""
    if dataset == "pgbench":
        # pgbench's accounts rows are mostly blank padding: they compress ~50:1, which flatters
        # any compressing tool; kept as a second data point.
        scale = max(1, round(size_mb / PGBENCH_MB_PER_SCALE))
        pgb.run_as("postgres", [pgb.DEFAULT_PG_BIN / "pgbench", "-i", "-s", str(scale), "-I", "dtGvp", "-q", "-h", root,
                                "-p", str(port), "-U", "postgres", "bench"], timeout=7200)
        return scale * 100_000
    # Rows shaped like the platform's own: ids, UUIDs, hex digests, timestamps, JSON, free text
    # (about 2:1 compressible, like real application data).
    rows = max(1000, int(size_mb * REALISTIC_ROWS_PER_MB))
    with platform.db.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE bench_rows (id bigint PRIMARY KEY, uid uuid NOT NULL, label text, "
                             "at timestamptz NOT NULL, doc jsonb, body text)"))
        for start in range(1, rows + 1, 500_000):
            conn.execute(sa.text(
                "INSERT INTO bench_rows SELECT g, gen_random_uuid(), md5(random()::text) || md5(random()::text), "
                "now() - random() * interval '365 days', jsonb_build_object('k', md5(g::text), 'n', random()), "
                "repeat(md5((g * 7)::text), 2) FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g"),
                {"first": start, "last": min(rows, start + 499_999)})
        conn.execute(sa.text("CREATE INDEX bench_rows_at ON bench_rows (at)"))
        conn.execute(sa.text("ANALYZE bench_rows"))
    return rows


def _postgres(size_mb: int, data_dir: Path, progress: ProgressCallback, dataset: str = "realistic") -> dict[str, Any]:
    from encaptio_data.bootstrap import initialize
    from encaptio_data.keys import KeyStore
    from encaptio_data.lifecycle.backup import restore, run_backup
    from encaptio_data.lifecycle.drill import run_drill
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    owner = pwd.getpwnam("postgres")
    # The cluster owner must reach every directory: a private temp root it owns, not the data dir.
    root = Path(tempfile.mkdtemp(prefix="encaptio-bench-pg-"))
    os.chown(root, owner.pw_uid, owner.pw_gid)
    port = pgb.free_port()
    stanza = pgb.PgBackRest(stanza="bench", pg_path=root / "data", repo1_path=root / "repo1",
                            repo2_path=root / "repo2", config_dir=root / "conf", pg_port=port, pg_socket_path=root)
    saved = {name: os.environ.get(name) for name in _env(stanza)}
    cluster = None
    platform = None
    try:
        stanza.write_config(KeyStore(data_dir / "keys"))
        # Durable like production (Cluster.create turns fsync off for throwaway test clusters).
        cluster = pgb.Cluster.create(root / "data", port=port, socket_dir=root,
                                     settings={**stanza.archiving_settings(), "fsync": "on",
                                               "synchronous_commit": "on", "shared_buffers": "256MB",
                                               "max_wal_size": "4GB"})
        cluster.start()
        stanza.stanza_create()
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE bench"))
        os.environ.update(_env(stanza))
        platform = Platform(get_settings(data_dir=data_dir / "pg-platform", database_url=cluster.url("bench")))
        initialize(platform)
        say(progress, f"generating ~{size_mb} MB of {dataset} rows in the platform database")
        generate_seconds, rows = _timed(lambda: _generate(dataset, size_mb, root, port, platform))
        # Let archiving and the checkpointer catch up, so they do not run during either measurement.
        pgb.switch_and_wait_archived(platform.db.engine, timeout=1800)
        with admin.connect() as conn:
            conn.execute(sa.text("CHECKPOINT"))
            database_bytes = conn.execute(sa.text("SELECT pg_database_size('bench')")).scalar_one()

        say(progress, "theirs: pg_dump -Fc")
        dump = root / "bench.dump"
        dump_seconds, _ = _timed(lambda: pgb.run_as("postgres", [
            pgb.DEFAULT_PG_BIN / "pg_dump", "-Fc", "-h", root, "-p", str(port), "-U", "postgres", "-f", dump, "bench"],
            timeout=7200))
        dump_bytes = dump.stat().st_size
        restores = {}
        for label, jobs in (("plain", []), ("jobs_2", ["-j", "2"])):
            target = f"restored_{label}"
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {target}"))
            say(progress, f"theirs: pg_restore {' '.join(jobs) or '(one process)'}")
            restores[label], _ = _timed(lambda: pgb.run_as("postgres", [
                pgb.DEFAULT_PG_BIN / "pg_restore", *jobs, "-h", root, "-p", str(port), "-U", "postgres",
                "-d", target, dump], timeout=7200))
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE {target}"))
        dump.unlink()
        # The physical-copy baseline: what a backup of the same kind as ours (every page, WAL to be
        # consistent) costs with PostgreSQL's own tool, as a tar, uncompressed and unencrypted.
        say(progress, "theirs: pg_basebackup -Ft -X stream -c fast")
        base = pgb.make_owned_dir(root / "basebackup", "postgres")
        basebackup_seconds, _ = _timed(lambda: pgb.run_as("postgres", [
            pgb.DEFAULT_PG_BIN / "pg_basebackup", "-D", base / "tar", "-Ft", "-X", "stream", "-c", "fast",
            "-h", root, "-p", str(port), "-U", "postgres"], timeout=7200))
        basebackup_bytes = sum(f.stat().st_size for f in (base / "tar").iterdir())
        shutil.rmtree(base)

        say(progress, "ours: run_backup(full): pgBackRest to repo1, restore point, repo2 replica, verify")
        backup_seconds, backup = _timed(lambda: run_backup(platform, "full", operator=BENCH))
        copies = {f"repo{c['repo']}": _span(c) for c in _manifest_copies(platform, backup["backup_id"])}
        say(progress, "ours: restore to now into a scratch directory")
        scratch = root / "scratch"
        from encaptio_data.db.models import utcnow

        restore_seconds, restored = _timed(lambda: restore(platform, utcnow(), scratch / "data", operator=BENCH))
        shutil.rmtree(scratch, ignore_errors=True)
        say(progress, "drill: latest backup and a point in time, restored and checked")
        drill_seconds, drill = _timed(lambda: run_drill(platform, operator=BENCH))
        admin.dispose()
        theirs_restore = min(restores.values())
        result = {
            "dataset": dataset, "database_mb": round(database_bytes / 1024 / 1024, 1), "rows": rows,
            "generate_seconds": generate_seconds, "pgbackrest_version": _pgbackrest_version(),
            "theirs": {"pg_dump_seconds": dump_seconds, "dump_mb": round(dump_bytes / 1024 / 1024, 1),
                       "pg_restore_seconds": restores["plain"], "pg_restore_j2_seconds": restores["jobs_2"],
                       "pg_basebackup_seconds": basebackup_seconds,
                       "pg_basebackup_mb": round(basebackup_bytes / 1024 / 1024, 1)},
            "ours": {"backup_seconds": backup["phases"]["backup"], "manifest_seconds": backup["phases"]["manifest"],
                     "backup_and_manifest_seconds": round(backup["phases"]["backup"] + backup["phases"]["manifest"], 3),
                     "verify_seconds": backup["phases"]["verify"], "backup_and_verify_seconds": backup_seconds,
                     "backup_phases": backup["phases"],
                     "per_copy_seconds": copies, "repository_mb": round(backup["size_bytes"] / 1024 / 1024, 1),
                     "restore_seconds": restore_seconds, "restore_rto_seconds": restored["rto_seconds"],
                     "restore_phases": restored["seconds"],
                     "restore_checks_passed": all(c["passed"] for c in restored["checks"])},
            "drill": {"passed": drill["passed"], "rto_seconds": drill["rto_seconds"],
                      "rpo_seconds": drill["rpo_seconds"], "seconds": drill_seconds, "restores": drill["restores"],
                      "failed_checks": [c["name"] for c in drill["checks"] if not c["passed"]]},
        }
        ours_backup = backup["phases"]["backup"]
        result["ratios"] = {
            # Until a restorable backup is in both repositories, against one pg_dump.
            "backup_vs_pg_dump": ratio(ours_backup, dump_seconds),
            # With the restore point's per-table digests finished (pg_dump computes none).
            "backup_and_manifest_vs_pg_dump": ratio(backup["phases"]["backup"] + backup["phases"]["manifest"],
                                                    dump_seconds),
            # Everything run_backup does, verify of both repositories included.
            "backup_and_verify_vs_pg_dump": ratio(backup_seconds, dump_seconds),
            "backup_vs_pg_basebackup": ratio(ours_backup, basebackup_seconds),
            "backup_and_verify_vs_pg_basebackup": ratio(backup_seconds, basebackup_seconds),
            "restore_rto_vs_best_pg_restore": ratio(restored["rto_seconds"], theirs_restore),
            "restore_with_checks_vs_best_pg_restore": ratio(restore_seconds, theirs_restore),
        }
        measured_mb = database_bytes / 1024 / 1024
        if measured_mb < ONE_GB_MB * 0.95 and drill["rto_seconds"]:
            factor = ONE_GB_MB / measured_mb
            result["drill"]["extrapolated_1gb"] = {
                "rto_seconds": round(drill["rto_seconds"] * factor, 1), "method": (
                    f"linear in database size from {measured_mb:.0f} MB (x{factor:.1f}); recovery is dominated by "
                    "copying and decompressing files, which is linear, plus a fixed start-up cost, so this "
                    "overestimates slightly")}
        return result
    finally:
        if platform is not None:
            platform.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if cluster is not None:
            cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def _pgbackrest_version() -> str:
    # 2.45 and 2.54+ differ by ~1.6 s per backup (docs/operations.md): results must say which ran.
    printed = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True, check=True).stdout
    return printed.strip().removeprefix("pgBackRest ")


def _manifest_copies(platform: Any, backup_id: str) -> list[dict[str, Any]]:
    from encaptio_data.db.models import Backup

    with platform.db.session() as session:
        return list(session.get(Backup, uuid.UUID(backup_id)).manifest["copies"])


def _span(copy: dict[str, Any]) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(copy["stopped_at"]) - datetime.fromisoformat(copy["started_at"])).total_seconds()


def _medians(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key, the median over rounds (nested dicts, such as phases, key by key; text: each value seen)."""
    return {key: _medians([m[key] for m in measured]) if isinstance(value, dict)
            else ", ".join(sorted({m[key] for m in measured})) if isinstance(value, str)
            else round(statistics.median(m[key] for m in measured), 3) for key, value in measured[0].items()}


def _prime_memory(directory: Path, size_bytes: int, block: int = 8 * 1024 * 1024) -> None:
    """Write size_bytes to a file and delete it: its page cache is freed, and the next writer reuses it."""
    scratch = directory / "priming.bin"
    zeros = bytes(block)
    with open(scratch, "wb") as file:
        for _ in range(-(-size_bytes // block)):
            file.write(zeros)
    scratch.unlink()


SQLITE_MEMORY = ("primed", "idle", "as-is")


def _sqlite(size_mb: int, data_dir: Path, progress: ProgressCallback, rounds: int = 1,
            memory: str = "primed") -> dict[str, Any]:
    from encaptio_data.bootstrap import initialize
    from encaptio_data.db.models import utcnow
    from encaptio_data.lifecycle.backup import restore, run_backup, sqlite_database_path
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    root = data_dir / "sqlite"
    shutil.rmtree(root, ignore_errors=True)
    platform = Platform(get_settings(data_dir=root))
    initialize(platform)
    live = sqlite_database_path(platform.db)
    rows = max(1, size_mb * 1024 * 1024 // 200)
    say(progress, f"generating a {size_mb} MB SQLite database ({rows} rows)")
    with sqlite3.connect(live) as conn:
        conn.execute("CREATE TABLE bench_events (id INTEGER PRIMARY KEY, happened_at TEXT, kind TEXT, "
                     "amount REAL, payload BLOB)")
        conn.execute("INSERT INTO bench_events (happened_at, kind, amount, payload) "
                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                     "SELECT datetime('2026-01-01', '+' || i || ' seconds'), 'kind-' || (i % 17), i * 0.25, "
                     "randomblob(120) FROM n", (rows,))
        # The generator's rows are still in the log: checkpointed now, so that neither side pays for
        # copying them into the file (whoever ran first did).
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    database_bytes = live.stat().st_size
    copy = root / "theirs.sqlite3"
    restored_copies = (root / "theirs-restored.sqlite3", root / "theirs-api-restored.sqlite3")

    def settled(step: Callable[[], Any]) -> tuple[float, Any]:
        """step timed, after the disk is synced and memory made ready as `memory` says.

        On a VM whose untouched memory is slow to fault in (measured: 219 MB written in 0.06 s
        into recycled page cache, 0.55 s into fresh), what a step finds depends on what ran
        before it: freed memory is as slow again once the VM's balloon has handed it back to the
        host, which it does within seconds (session 11: 219 MB written in 0.05 s right after a
        free, 0.53-0.80 s after 2-5 s idle). Unsettled, a step that ran in the wake of the one
        before got warm memory: ours 0.26 s right after its own previous run and 0.5-0.9 s after
        theirs, and a restore gained what the backup before it had freed. "primed" gives every
        step memory just freed, as on a server whose memory is in use (or any machine without such
        a balloon); "idle" the other extreme, a machine that has long been quiet.
        """
        os.sync()
        if memory == "primed":
            # Each step writes at most a database's worth, plus buffers.
            _prime_memory(root, 2 * database_bytes + 64 * 1024 * 1024)
        elif memory == "idle":
            time.sleep(3.0)
        return _timed(step)

    def theirs() -> dict[str, float]:
        def sqlite_backup() -> None:
            with sqlite3.connect(live) as source, sqlite3.connect(copy) as target:
                source.backup(target)

        def sqlite_backup_back() -> None:
            with sqlite3.connect(copy) as source, sqlite3.connect(restored_copies[1]) as target:
                source.backup(target)

        say(progress, "theirs: sqlite3 backup API, and a file copy back")
        measured = {"backup_api_seconds": settled(sqlite_backup)[0],
                    "file_copy_restore_seconds": settled(lambda: shutil.copyfile(copy, restored_copies[0]))[0],
                    "backup_api_restore_seconds": settled(sqlite_backup_back)[0]}
        for path in (copy, *restored_copies):
            path.unlink()
        return measured

    def ours() -> dict[str, Any]:
        say(progress, "ours: run_backup and restore into a scratch file")
        ours_backup, backup = settled(lambda: run_backup(platform, "full", operator=BENCH))
        ours_restore, restored = settled(lambda: restore(platform, utcnow(), root / "ours-restored.sqlite3",
                                                         operator=BENCH))
        (root / "ours-restored.sqlite3").unlink()
        for key in (backup["location"], backup["manifest_key"]):
            platform.objects.delete_all_versions(key)
        return {"backup_seconds": backup["phases"]["backup"], "snapshot_method": backup["snapshot_method"], "manifest_seconds": backup["phases"]["manifest"],
                "backup_and_manifest_seconds": ours_backup, "backup_phases": backup["phases"],
                "restore_seconds": ours_restore, "restore_rto_seconds": restored["rto_seconds"],
                "restore_phases": restored["seconds"]}

    try:
        # Each side's files are removed before the next measurement: leftovers would make whoever
        # runs later pay for the other's files (see settled). Rounds alternate which side goes
        # first; the numbers are medians over the rounds.
        rounds_done = []
        for round_ in range(rounds):
            sides = [("theirs", theirs), ("ours", ours)]
            measured = {name: run() for name, run in (sides if round_ % 2 == 0 else sides[::-1])}
            rounds_done.append(measured)
        their = _medians([r["theirs"] for r in rounds_done])
        our = _medians([r["ours"] for r in rounds_done])
        return {"database_mb": round(database_bytes / 1024 / 1024, 1), "rows": rows, "rounds": rounds,
                "memory": memory,
                "theirs": their, "ours": our,
                "ratios": {"backup_vs_backup_api": ratio(our["backup_seconds"], their["backup_api_seconds"]),
                           "backup_and_manifest_vs_backup_api": ratio(our["backup_and_manifest_seconds"],
                                                                      their["backup_api_seconds"]),
                           "restore_vs_file_copy": ratio(our["restore_seconds"], their["file_copy_restore_seconds"]),
                           # Back through the backup API: a restore that, like ours, writes a new file.
                           "restore_vs_backup_api": ratio(our["restore_seconds"], their["backup_api_restore_seconds"]),
                           "restore_rto_vs_backup_api": ratio(our["restore_rto_seconds"],
                                                              their["backup_api_restore_seconds"])},
                **({"per_round": rounds_done} if rounds > 1 else {})}
    finally:
        platform.close()
        shutil.rmtree(root, ignore_errors=True)


def run_backup_bench(data_dir: Path | None = None, size_mb: int = ONE_GB_MB, sqlite_mb: int | None = None,
                     datasets: tuple[str, ...] = ("realistic",), progress: ProgressCallback = None,
                     sqlite_rounds: int = 1, sqlite_memory: str = "primed") -> dict[str, Any]:
    """Measure our backup and restore against pg_dump/pg_restore and sqlite3's backup; returns JSON-able numbers.

    datasets: "realistic" (platform-like rows, ~2:1 compressible) and/or "pgbench" (~50:1); none
    (an empty tuple, or "none") measures SQLite only. sqlite_rounds: SQLite is measured that many
    times, the sides alternating which goes first; medians are reported. sqlite_memory: what
    memory each side starts with, one of SQLITE_MEMORY (see ``_sqlite``).
    """
    if sqlite_memory not in SQLITE_MEMORY:
        raise ValueError(f"sqlite_memory must be one of {', '.join(SQLITE_MEMORY)}, not {sqlite_memory!r}")
    datasets = tuple(d for d in datasets if d and d != "none")
    data_dir = Path(data_dir or default_data_dir()) / "backup"
    data_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    started = time.perf_counter()
    result: dict[str, Any] = {"size_mb_requested": size_mb,
                              "command": f"python -m bench.backup --size-mb {size_mb} "
                                         f"--datasets {','.join(datasets) or 'none'}"
                                         + (f" --sqlite-mb {sqlite_mb}" if sqlite_mb else "")
                                         + (f" --sqlite-rounds {sqlite_rounds}" if sqlite_rounds > 1 else "")
                                         + f" --sqlite-memory {sqlite_memory}"}
    for dataset in datasets:
        key = "postgresql" if dataset == datasets[0] else f"postgresql_{dataset}"
        result[key] = _postgres(size_mb, data_dir, progress, dataset)
    result["sqlite"] = _sqlite(sqlite_mb or min(size_mb, 256), data_dir, progress, max(1, sqlite_rounds),
                               sqlite_memory)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = finish_machine_info(machine)
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.backup")
    parser.add_argument("--size-mb", type=int, default=ONE_GB_MB)
    parser.add_argument("--sqlite-mb", type=int)
    parser.add_argument("--sqlite-rounds", type=int, default=1,
                        help="measure SQLite this many times, alternating which side goes first (medians)")
    parser.add_argument("--sqlite-memory", choices=SQLITE_MEMORY, default="primed",
                        help="what memory each SQLite side starts with")
    parser.add_argument("--datasets", default="realistic",
                        help="comma-separated: realistic, pgbench; none for SQLite only")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", action="store_true", help="accepted for parity with `encaptio bench backup --json`: "
                                                             "the result is always printed as JSON")
    args = parser.parse_args(argv)
    result = run_backup_bench(args.data_dir, size_mb=args.size_mb, sqlite_mb=args.sqlite_mb,
                              datasets=tuple(args.datasets.split(",")), sqlite_rounds=args.sqlite_rounds,
                              sqlite_memory=args.sqlite_memory,
                              progress=lambda m: print(f"{time.strftime('%H:%M:%S')} {m}", file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
