"""Organization export and import of the demo organization, against a plain copy of the same bytes.

The demo corpus (seed_demo's default spec) goes through the real pipeline and the analytics
aggregates on the embedded default; its first organization is then exported and imported
into a fresh instance: in Parquet with the vectors (the exact, fast path) and in JSON (whose
import re-embeds every chunk with the model). The baseline, timed in the same run, is what a
plain copy of the same bytes costs: a tar of the organization's content files (the same
object versions the export reads) and of the LanceDB directory, plus a SQL dump of the
database (sqlite3 ``iterdump``); its import is untarring into a fresh directory and loading
the dump into a fresh SQLite file. The copy neither selects the organization's rows nor
verifies anything, and its dump holds every organization, so it is the floor, not a rival.
"""

from __future__ import annotations

import shutil
import sqlite3
import tarfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench._common import ProgressCallback, default_data_dir, finish_machine_info, machine_info, peak_rss_mib, say

ADMIN = "admin@bench-ops.example"


def _platform(root: Path, *, admin: bool = True) -> Any:
    from encaptio_data.accounts import add_user, ensure_organization
    from encaptio_data.bootstrap import initialize
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    if root.exists():
        shutil.rmtree(root)
    platform = Platform(get_settings(data_dir=root))
    initialize(platform)
    if admin:
        # The benchmarks' system principal may not export or import organizations; an admin may.
        with platform.db.session() as session:
            org = ensure_organization(session, name="Bench operations", slug="bench-ops")
            add_user(session, email=ADMIN, name="Bench admin", organization_id=org.id, role="admin")
    return platform


def _demo(platform: Any, progress: ProgressCallback) -> Any:
    from encaptio_data.analytics.aggregate import event_days, materialize_day
    from encaptio_data.content.ingest import run_content_pipeline
    from encaptio_data.corpus import CorpusSpec, generate
    from encaptio_data.demo import seed_demo

    say(progress, "seeding the demo corpus and running the pipeline (real model)")
    spec = CorpusSpec()
    seed_demo(platform, spec)
    run_content_pipeline(platform)
    say(progress, "materializing the analytics aggregates")
    for day in event_days(platform.db):
        materialize_day(platform, date.fromisoformat(day))
    return generate(spec).organizations[0].id


def _content_bytes(platform: Any, organization_id: Any) -> tuple[int, int]:
    import sqlalchemy as sa

    from encaptio_data.db.models import Content

    with platform.db.session() as session:
        files, size = session.execute(sa.select(sa.func.count(), sa.func.sum(Content.size_bytes))
                                      .where(Content.organization_id == organization_id)).one()
    return int(files), int(size or 0)


def _mb_per_s(size: int, seconds: float) -> float:
    return round(size / 1e6 / seconds, 3) if seconds else 0.0


def _ours(source: Any, organization_id: Any, table_format: str, work: Path, progress: ProgressCallback
          ) -> dict[str, Any]:
    from encaptio_data.content.embedding import load_embedder
    from encaptio_data.portability import export_organization, import_organization

    say(progress, f"exporting the organization ({table_format})")
    started = time.perf_counter()
    exported = export_organization(source, organization_id, table_format=table_format, out_dir=work / "out",
                                   operator=ADMIN)
    export_seconds = time.perf_counter() - started
    target = _platform(work / f"target-{table_format}")
    try:
        load_embedder()  # loaded once per process in production too; not part of an import's cost
        say(progress, f"importing it into a fresh instance ({table_format})")
        started = time.perf_counter()
        imported = import_organization(target, exported.path, operator=ADMIN)
        import_seconds = time.perf_counter() - started
    finally:
        target.close()
    return {"archive_bytes": exported.bytes, "export_seconds": round(export_seconds, 3),
            "import_seconds": round(import_seconds, 3),
            "export_archive_mb_per_s": _mb_per_s(exported.bytes, export_seconds),
            "import_archive_mb_per_s": _mb_per_s(exported.bytes, import_seconds),
            "import_stages_seconds": imported.stages, "vectors": imported.embeddings, "counts": exported.counts}


def _baseline(source: Any, organization_id: Any, work: Path, progress: ProgressCallback) -> dict[str, Any]:
    """tar of the organization's content files and the LanceDB directory, plus an iterdump of the database."""
    import io

    import sqlalchemy as sa

    from encaptio_data.db.models import Content
    from encaptio_data.lifecycle.backup import sqlite_database_path

    say(progress, "baseline: tar of the files plus a database dump")
    archive = work / "baseline.tar"
    started = time.perf_counter()
    with source.db.session() as session:
        contents = session.execute(sa.select(Content.id, Content.object_key, Content.object_version)
                                   .where(Content.organization_id == organization_id)).all()
    with tarfile.open(archive, "w") as tar:
        for content_id, key, version in contents:
            data = source.objects.get(key, version)
            info = tarfile.TarInfo(f"files/{content_id}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(source.settings.resolved_lancedb_uri, arcname="lancedb")
        dump = work / "dump.sql"
        with sqlite3.connect(sqlite_database_path(source.db)) as conn, dump.open("w") as out:
            for statement in conn.iterdump():
                out.write(statement + "\n")
        tar.add(dump, arcname="dump.sql")
    export_seconds = time.perf_counter() - started
    size = archive.stat().st_size

    restored = work / "baseline-restored"
    shutil.rmtree(restored, ignore_errors=True)
    started = time.perf_counter()
    with tarfile.open(archive) as tar:
        tar.extractall(restored, filter="data")
    with sqlite3.connect(restored / "restored.sqlite3") as conn:
        conn.executescript((restored / "dump.sql").read_text())
    import_seconds = time.perf_counter() - started
    return {"archive_bytes": size, "export_seconds": round(export_seconds, 3), "import_seconds": round(import_seconds, 3),
            "export_archive_mb_per_s": _mb_per_s(size, export_seconds),
            "import_archive_mb_per_s": _mb_per_s(size, import_seconds)}


def run_portability_bench(progress: ProgressCallback = None, data_dir: Path | None = None) -> dict[str, Any]:
    machine = machine_info()
    work = (data_dir or default_data_dir()) / "portability"
    source = _platform(work / "source")
    try:
        organization_id = _demo(source, progress)
        files, content_bytes = _content_bytes(source, organization_id)
        results: dict[str, Any] = {"parquet": _ours(source, organization_id, "parquet", work, progress)}
        results["baseline"] = _baseline(source, organization_id, work, progress)
        results["json"] = _ours(source, organization_id, "json", work, progress)
    finally:
        source.close()
    baseline = results["baseline"]
    for name in ("parquet", "json"):
        ours = results[name]
        ours["content_mb_per_s_export"] = _mb_per_s(content_bytes, ours["export_seconds"])
        ours["content_mb_per_s_import"] = _mb_per_s(content_bytes, ours["import_seconds"])
        ours["export_ratio_to_baseline"] = round(ours["export_seconds"] / baseline["export_seconds"], 2)
        ours["import_ratio_to_baseline"] = round(ours["import_seconds"] / baseline["import_seconds"], 2)
    baseline["content_mb_per_s_export"] = _mb_per_s(content_bytes, baseline["export_seconds"])
    baseline["content_mb_per_s_import"] = _mb_per_s(content_bytes, baseline["import_seconds"])
    return {"benchmark": "portability", "organization_id": str(organization_id),
            "organization": {"files": files, "content_bytes": content_bytes,
                             "chunks": results["parquet"]["counts"]["chunks"],
                             "rows": sum(v for k, v in results["parquet"]["counts"].items()
                                         if k not in {"text", "files", "search_chunks"})},
            **results, "peak_rss_mib": peak_rss_mib(), "machine": finish_machine_info(machine)}
