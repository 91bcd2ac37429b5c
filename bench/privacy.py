"""Privacy benchmarks: erasure of one subject end to end, and the access export of a heavy subject.

Targets (issue #5): erasure within 5 s on the demo data (run launch excluded); the access
export of a subject with 10k interaction events and 100 files within 30 s. Each is measured
against a baseline in the same run: for erasure, a bare SQL delete of the same user (what a
system that only cleans its database would do); for the export, reading the same rows and
zipping the same files with no packaging, encryption, PDF or audit.
"""

from __future__ import annotations

import io
import shutil
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench._common import ProgressCallback, default_data_dir, finish_machine_info, machine_info, peak_rss_mib, say


def _platform(root: Path) -> Any:
    from encaptio_data.bootstrap import initialize
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    if root.exists():
        shutil.rmtree(root)
    platform = Platform(get_settings(data_dir=root))
    initialize(platform)
    return platform


def _demo(platform: Any, progress: ProgressCallback) -> None:
    from encaptio_data.content.embedding import load_embedder
    from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content
    from encaptio_data.content.uploads import register_uploads
    from encaptio_data.demo import seed_demo
    from encaptio_data.keys import KeyStore
    from encaptio_data.search.index import build_indexes, open_chunks_table

    say(progress, "seeding the demo corpus and running the pipeline")
    seed_demo(platform)
    keys = KeyStore(platform.settings.keys_dir)  # the demo's uploads are sealed with their uploaders' keys
    register_uploads(platform.db, platform.objects, keys=keys)
    extract_content(platform.db, platform.objects, keys=keys)
    chunk_content(platform.db)
    embed_content(platform.db, platform.vectors, load_embedder(), cache=platform.cache)
    build_indexes(open_chunks_table(platform.vectors))


def _officer(platform: Any, organization_id: uuid.UUID) -> str:
    from encaptio_data.accounts import add_user

    with platform.db.session() as session:
        return add_user(session, email=f"dpo-{organization_id.hex[:6]}@bench.test", name="DPO",
                        organization_id=organization_id, role="privacy_officer").email


def _creator(platform: Any, exclude: set[uuid.UUID]) -> Any:
    from encaptio_data.db.models import Capsule, User

    with platform.db.session() as session:
        return session.scalars(sa.select(User).join(Capsule, Capsule.owner_id == User.id)
                               .where(User.id.not_in(exclude)).order_by(User.id).limit(1)).first()


def bench_erasure(platform: Any) -> dict[str, Any]:
    from encaptio_data.db.models import User
    from encaptio_data.privacy.process import RequestProcessor
    from encaptio_data.privacy.requests import Requests

    subject = _creator(platform, set())
    officer = _officer(platform, subject.organization_id)
    requests = Requests(platform)
    request_id = requests.submit(type="erasure", email=subject.email).request["id"]
    requests.approve(request_id, operator=officer)
    started = time.perf_counter()
    result = RequestProcessor(platform).process(request_id, operator=officer)
    ours = time.perf_counter() - started
    if result["status"] != "completed":
        raise RuntimeError(f"erasure failed: {result['status_reason']}")

    baseline_subject = _creator(platform, {subject.id})
    started = time.perf_counter()
    with platform.db.session() as session:
        from encaptio_data.db.models import Capsule

        session.execute(sa.delete(Capsule).where(Capsule.owner_id == baseline_subject.id))
        session.execute(sa.delete(User).where(User.id == baseline_subject.id))
    baseline = time.perf_counter() - started
    erased = result["receipt"]["erased"]
    return {"seconds": round(ours, 3), "target_seconds": 5.0, "met": ours <= 5.0,
            "baseline_sql_delete_seconds": round(baseline, 4), "ratio_to_sql_delete": round(ours / baseline, 1),
            "rows_deleted": sum(erased["rows_deleted"].values()), "object_versions_deleted":
            erased["object_versions_deleted"], "vector_rows_deleted": erased["vector_rows_deleted"],
            "verification_scanned": result["receipt"]["verification"]["scanned"]}


def _heavy_subject(platform: Any, events: int, files: int, progress: ProgressCallback) -> Any:
    from encaptio_data.accounts import add_user, ensure_organization
    from encaptio_data.content.uploads import register_uploads, upload_key
    from encaptio_data.db import sealing
    from encaptio_data.db.enums import EventType
    from encaptio_data.db.models import Capsule, Interaction, InteractionEvent, utcnow

    say(progress, f"creating a subject with {events} events and {files} files")
    with platform.db.session() as session:
        org = ensure_organization(session, name="Heavy", slug="heavy")
        user = add_user(session, email="heavy@bench.test", name="Heavy User", organization_id=org.id, role="creator")
        capsule = Capsule(organization_id=org.id, owner_id=user.id, title="Heavy capsule")
        session.add(capsule)
        session.flush()
        interactions = [Interaction(id=uuid.uuid4(), capsule_id=capsule.id, user_id=user.id, session_id=f"s{i}",
                                    started_at=utcnow()) for i in range(events // 20)]
        session.add_all(interactions)
        session.flush()
        now = utcnow()
        sealing.insert_rows(session, InteractionEvent, [
            {"id": uuid.uuid4(), "interaction_id": interactions[i % len(interactions)].id, "capsule_id": capsule.id,
             "user_id": user.id, "session_id": f"s{i % len(interactions)}", "event_type": EventType.SEARCH,
             "payload": {"query": f"query number {i}"}, "occurred_at": now} for i in range(events)])
    for index in range(files):
        body = (f"File {index} of the heavy subject. " * 400).encode()
        platform.objects.put(upload_key(org.id, capsule.id, f"file-{index:03d}.txt"), body, content_type="text/plain")
    register_uploads(platform.db, platform.objects)
    return user


def bench_access_export(platform: Any, *, events: int, files: int, progress: ProgressCallback) -> dict[str, Any]:
    from encaptio_data.authz import system_principal
    from encaptio_data.db.models import Content, InteractionEvent
    from encaptio_data.privacy.process import RequestProcessor
    from encaptio_data.privacy.requests import Requests

    user = _heavy_subject(platform, events, files, progress)
    request_id = Requests(platform).submit(type="access", email=user.email).request["id"]
    say(progress, "exporting")
    started = time.perf_counter()
    result = RequestProcessor(platform).process(request_id, operator=system_principal("bench"))
    ours = time.perf_counter() - started
    if result["status"] != "completed":
        raise RuntimeError(f"export failed: {result['status_reason']}")

    started = time.perf_counter()
    buffer = io.BytesIO()
    with platform.db.session() as session, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        rows = session.execute(sa.select(InteractionEvent).where(InteractionEvent.user_id == user.id)).all()
        archive.writestr("events.txt", "\n".join(str(r) for r in rows))
        for content in session.scalars(sa.select(Content).where(Content.uploaded_by == user.id)):
            archive.writestr(content.filename, platform.objects.get(content.object_key, content.object_version))
    baseline = time.perf_counter() - started
    export = result["receipt"]["export"]
    return {"seconds": round(ours, 3), "target_seconds": 30.0, "met": ours <= 30.0,
            "baseline_select_and_zip_seconds": round(baseline, 3), "ratio_to_baseline": round(ours / baseline, 1),
            "events": events, "files": files, "export_bytes": export["bytes"], "counts": export["counts"]}


def run_privacy_bench(*, events: int = 10_000, files: int = 100, data_dir: Path | None = None,
                      progress: ProgressCallback = None, demo: bool = True) -> dict[str, Any]:
    machine = machine_info()
    root = (data_dir or default_data_dir()) / "privacy"
    platform = _platform(root)
    try:
        if demo:
            _demo(platform, progress)
        say(progress, "erasing one subject")
        erasure = bench_erasure(platform)
        export = bench_access_export(platform, events=events, files=files, progress=progress)
    finally:
        platform.close()
    return {"erasure": erasure, "access_export": export, "peak_rss_mib": peak_rss_mib(),
            "machine": finish_machine_info(machine)}
