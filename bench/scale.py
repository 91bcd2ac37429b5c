"""Scale-out: the content pipeline through the Celery executor on one and on two workers, and
through the multiprocess executor, on the same corpus in the same run.

Each mode gets a fresh platform and a fresh production Dagster instance (two PostgreSQL
databases, deploy/production/dagster.yaml), seeds the same deterministic corpus, and ingests
it as operators would: one run of the capsule's partition per capsule, `in_flight` runs at a
time, each run in a process of its own (as the daemon's run launcher starts them) calling
`dg.execute_job`; the run process orchestrates, the steps run in step processes or on the
workers. The clock runs from the first submission to the last run's end: step process
start-up or the Celery round trips, loading the tokenizer and the model, the database and
LanceDB writes. The run processes and the workers have loaded the code location before the
clock starts (workers preload it, executors.PRELOAD); a multiprocess step pays that import
itself, which is what that executor costs. The runs cover the four ingest steps; the asset
checks of the job are steps with the same per-step costs and are left out to keep the run
within its time budget.

The modes get the same number of step slots where it is a like-for-like comparison:
multiprocess runs `in_flight` runs with one step process each; Celery with two workers has two
slots (concurrency 1 each) and with one worker one. Objects and LanceDB are directories on this
machine, which the workers share as separate machines would share S3 and the durable copy;
the cache is in-process (nothing here reads it).
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._common import ProgressCallback, default_data_dir, finish_machine_info, machine_info, ratio, say

POSTGRES_ADMIN_ENV = "ENCAPTIO_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MODES = ("multiprocess", "celery-1", "celery-2")
INGEST_STEPS = ("content", "extracted_text", "chunks", "chunk_embeddings")
PRODUCTION_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "deploy" / "production" / "dagster.yaml"


def _admin_url() -> str:
    return os.environ.get(POSTGRES_ADMIN_ENV) or DEFAULT_POSTGRES_ADMIN


@contextmanager
def _databases(names: list[str]) -> Iterator[dict[str, str]]:
    """Fresh PostgreSQL databases, dropped afterwards: SQLAlchemy URLs by name."""
    import sqlalchemy as sa

    from encaptio_data.errors import StoreUnavailableError

    admin_url = _admin_url()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                created.append(name)
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise StoreUnavailableError(f"{POSTGRES_ADMIN_ENV}: PostgreSQL is not reachable at "
                                    f"{sa.make_url(admin_url).render_as_string()}: {str(exc.orig).strip()}") from None
    try:
        yield {name: admin_url.rsplit("/", 1)[0] + f"/{name}" for name in names}
    finally:
        with admin.connect() as conn:
            for name in created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """The settings the run processes and workers read, set for the duration of one mode."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _step_times(instance: Any, run_ids: list[str]) -> dict[str, Any]:
    """Seconds per step kind (start to success, as the event log has them) and in all."""
    import dagster as dg

    per_kind: dict[str, list[float]] = defaultdict(list)
    for run_id in run_ids:
        started: dict[str, float] = {}
        for record in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START,
                                                         dg.DagsterEventType.STEP_SUCCESS}):
            step = record.dagster_event.step_key
            if record.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                started[step] = record.timestamp
            elif step in started:
                kind = step if step in INGEST_STEPS else "asset checks"
                per_kind[kind].append(record.timestamp - started[step])
    return {"steps": sum(len(v) for v in per_kind.values()),
            "step_seconds_total": round(sum(sum(v) for v in per_kind.values()), 2),
            "by_step": {kind: {"count": len(v), "seconds": round(sum(v), 2)} for kind, v in sorted(per_kind.items())}}


def _run_mode(mode: str, spec: Any, root: Path, in_flight: int, progress: ProgressCallback) -> dict[str, Any]:
    import dagster as dg
    import sqlalchemy as sa

    from encaptio_data.bootstrap import initialize
    from encaptio_data.content.uploads import capsule_ids
    from encaptio_data.db.models import Chunk, Content
    from encaptio_data.demo import seed_demo
    from encaptio_data.jobs.executors import content_pipeline_in_processes, content_pipeline_on_celery, running_workers
    from encaptio_data.platform import Platform
    from encaptio_data.search.index import open_chunks_table
    from encaptio_data.settings import get_settings

    tag = f"{mode.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    home = root / mode / "dagster-home"
    home.mkdir(parents=True)
    shutil.copy(PRODUCTION_DAGSTER_YAML, home / "dagster.yaml")
    workers = int(mode.split("-")[1]) if mode.startswith("celery") else 0
    queue = f"encaptio-bench-{tag}"
    with _databases([f"encaptio_bench_{tag}", f"encaptio_bench_{tag}_dagster"]) as urls:
        app_url, dagster_url = urls[f"encaptio_bench_{tag}"], urls[f"encaptio_bench_{tag}_dagster"]
        env = {"ENCAPTIO_DATA_DIR": str(root / mode / "data"), "ENCAPTIO_DATABASE_URL": app_url,
               "ENCAPTIO_DAGSTER_PG_URL": dagster_url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1),
               "DAGSTER_HOME": str(home)}
        for name in ("ENCAPTIO_OBJECT_STORE", "ENCAPTIO_LANCEDB_URI", "ENCAPTIO_REDIS_URL"):
            env[name] = ""  # the local directories and the in-process cache, whatever the caller's settings
        with _environment(env):
            platform = Platform(get_settings())
            try:
                say(progress, f"{mode}: seeding {spec.organizations * spec.capsules_per_organization} capsules")
                initialize(platform)
                seed_demo(platform, spec)
                capsules = sorted(capsule_ids(platform.db))
                instance = dg.DagsterInstance.from_config(str(home))
                instance.add_dynamic_partitions("capsules", capsules)
                if workers:
                    target = dg.reconstructable(content_pipeline_on_celery)
                    run_config: dict[str, Any] = {"execution": {"config": {"queue": queue}}}
                else:
                    target = dg.reconstructable(content_pipeline_in_processes)
                    run_config = {"execution": {"config": {"multiprocess": {"max_concurrent": 1}}}}

                # The four ingest steps; the asset checks are steps of the same job with the same
                # per-step cost, left out so the corpus can be larger within the time budget.
                target = target.get_subset(asset_selection={dg.AssetKey(key) for key in INGEST_STEPS},
                                           asset_check_selection=set())

                specs = {f"bench-{tag[-8:]}-{i}": [queue] for i in range(1, workers + 1)}
                # Runs in processes of their own, as the daemon's run launcher starts them (Dagster's
                # execution is not safe across threads of one process); the pool is started and has
                # loaded the code location before the clock starts, in every mode alike.
                with ProcessPoolExecutor(max_workers=in_flight, mp_context=get_context("spawn"),
                                         initializer=_load_code_location) as pool, \
                        (running_workers(specs, log_dir=root / mode / "workers", env=dict(os.environ))
                         if workers else _nothing()):
                    list(pool.map(time.sleep, [2.0] * in_flight))
                    say(progress, f"{mode}: ingesting {len(capsules)} capsules, {in_flight} runs at a time")
                    started = time.perf_counter()
                    outcomes = list(pool.map(_execute, [target] * len(capsules), [instance.get_ref()] * len(capsules),
                                             [run_config] * len(capsules), capsules))
                    seconds = time.perf_counter() - started
                results = [instance.get_run_by_id(run_id) for run_id, _ in outcomes]
                failed = {run_id: failure for run_id, failure in outcomes if failure is not None}
                with platform.db.session() as session:
                    documents = session.scalar(sa.select(sa.func.count()).select_from(Content))
                    chunks = session.scalar(sa.select(sa.func.count()).select_from(Chunk))
                    with_chunks = session.scalar(sa.select(sa.func.count(sa.distinct(Chunk.content_id))))
                vector_rows = open_chunks_table(platform.vectors).count_rows()
                steps = _step_times(instance, [run.run_id for run in results])
                instance.dispose()
            finally:
                platform.close()
    return {
        "mode": mode, "workers": workers,
        "step_slots": workers if workers else in_flight,
        "runs": len(results), "failed_runs": failed, "seconds": round(seconds, 2),
        "documents": documents, "documents_with_chunks": with_chunks, "chunks": chunks,
        "lancedb_rows": vector_rows, "consistent": vector_rows == chunks and not failed,
        "documents_per_s": round(documents / seconds, 3) if seconds else None,
        "chunks_per_s": round(chunks / seconds, 2) if seconds else None,
        **steps,
        # What the pipeline's own work cost against the wall clock over the slots it had: the
        # rest is orchestration (process start-up, broker round trips, waiting for a slot).
        "slot_utilization": round(steps["step_seconds_total"] / (seconds * (workers or in_flight)), 3)
        if seconds else None,
    }


def _load_code_location() -> None:
    import encaptio_data.definitions  # noqa: F401


def _execute(target: Any, instance_ref: Any, run_config: dict[str, Any], capsule: str) -> tuple[str, str | None]:
    """One capsule's run, in a pool process: its id and, if it failed, why."""
    import dagster as dg

    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        result = dg.execute_job(target, instance, run_config=run_config, tags={"dagster/partition": capsule})
        return result.run_id, None if result.success else _failure(result)


def _failure(result: Any) -> str:
    """The first line of what failed a run: a step's own error, else the run's."""
    import dagster as dg

    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            return f"{event.step_key}: {error.message.strip().splitlines()[0]}"
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.RUN_FAILURE and event.message:
            return event.message.strip().splitlines()[0]
    return "failed"


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def run_scale_bench(progress: ProgressCallback = None, *, documents: int = 4, capsules: int = 2, seed: int = 7,
                    in_flight: int = 2, modes: tuple[str, ...] = MODES, data_dir: Path | None = None,
                    keep: bool = False) -> dict[str, Any]:
    """Ingest the same corpus of about `documents` files in `capsules` capsules once per mode
    (multiprocess, Celery with one worker, with two) and compare documents per second."""
    from encaptio_data.corpus import CorpusSpec
    from encaptio_data.errors import InvalidInputError

    unknown = set(modes) - set(MODES)
    if unknown:
        raise InvalidInputError(f"unknown scale bench mode {', '.join(sorted(unknown))}; known: {', '.join(MODES)}")
    if documents < 1 or capsules < 1 or in_flight < 1:
        raise InvalidInputError("documents, capsules and in_flight must be at least 1")
    started = time.perf_counter()
    machine = machine_info()
    # One organisation: capsules of an organisation have distinct topics, so the corpus is as
    # varied as the generator makes it.
    spec = CorpusSpec(seed=seed, organizations=1, users_per_organization=3, capsules_per_organization=capsules,
                      files_per_capsule=math.ceil(documents / capsules), events_per_capsule=0)
    root = (Path(data_dir) if data_dir else default_data_dir()) / "scale"
    shutil.rmtree(root, ignore_errors=True)
    results: dict[str, dict[str, Any]] = {}
    try:
        for mode in modes:
            results[mode] = _run_mode(mode, spec, root, in_flight, progress)
            say(progress, f"{mode}: {results[mode]['documents_per_s']} documents/s "
                          f"({results[mode]['documents']} in {results[mode]['seconds']} s)")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)

    def rate(mode: str) -> float | None:
        return results[mode]["documents_per_s"] if mode in results else None

    return {
        "benchmark": "scale",
        "machine": finish_machine_info(machine),
        "corpus": {"organizations": 1, "capsules": capsules, "files_per_capsule": spec.files_per_capsule,
                   "files": capsules * spec.files_per_capsule, "seed": seed},
        "in_flight_runs": in_flight,
        "modes": results,
        "ratios": {
            "celery_2_vs_celery_1": ratio(rate("celery-2"), rate("celery-1")),
            "celery_2_vs_multiprocess": ratio(rate("celery-2"), rate("multiprocess")),
            "celery_1_vs_multiprocess": ratio(rate("celery-1"), rate("multiprocess")),
        },
        "all_consistent": all(r["consistent"] for r in results.values()),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
