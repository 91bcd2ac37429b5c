"""Distributed execution: the content pipeline and the data subject request jobs on Celery workers.

The same steps as `content_pipeline_job` and the `dsar_*_job`s, with dagster-celery's
executor: the run process only orchestrates, each step is a task on the broker (RabbitMQ or
Redis) that a `dagster-celery worker` on any machine picks up. Workers share no disk with
the run: they reach the same PostgreSQL (Dagster's instance and the platform's database),
the same object store (uploads, and step outputs through `io_managers.ObjectStoreIOManager`)
and the same LanceDB copy, all named by the ENCAPTIO_* and DAGSTER settings of their
environment. docs/scale-out.md has the deployment.

Two queues, so that a bulk ingest never delays a data subject request past its deadline:
content steps go to `encaptio-content`, request steps to `encaptio-privacy`; a worker serves
either or both (`-q`). Executor config per run (`execution: config:`) may name another
`queue` or `broker`; the broker otherwise comes from ENCAPTIO_CELERY_BROKER_URL when the run
starts, else RabbitMQ on localhost.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dagster as dg
import yaml
from dagster_celery import celery_executor

from encaptio_data.db.enums import RequestType
from encaptio_data.errors import SettingsError, StoreUnavailableError
from encaptio_data.jobs import content_pipeline_job
from encaptio_data.jobs.privacy import dsar_jobs

BROKER_ENV = "ENCAPTIO_CELERY_BROKER_URL"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
# RabbitMQ's rpc:// backend sends each step's events straight back to the run that
# submitted it: no result store to run or clean up.
DEFAULT_BACKEND = "rpc://"
CONTENT_QUEUE = "encaptio-content"
PRIVACY_QUEUE = "encaptio-privacy"


def broker_url() -> str:
    return os.environ.get(BROKER_ENV) or DEFAULT_BROKER


def celery_executor_config(*, queue: str, broker: str | None = None, backend: str = DEFAULT_BACKEND) -> dict:
    """The config of dagster-celery's own executor: what `dagster-celery worker start -y` also reads
    (under `execution: config:`), so workers and runs agree on the broker."""
    return {"broker": broker or broker_url(), "backend": backend,
            "config_source": {"task_default_queue": queue}}


def _celery_on(default_queue: str, name: str) -> dg.ExecutorDefinition:
    def to_celery_config(config: dict) -> dict:
        # Runs when a run's config is resolved (in the run and in each worker), never at import.
        return celery_executor_config(queue=config["queue"], broker=config.get("broker"))

    return celery_executor.configured(
        to_celery_config,
        name=name,
        config_schema={
            "queue": dg.Field(str, default_value=default_queue, description="The Celery queue of every step."),
            "broker": dg.Field(dg.StringSource, is_required=False,
                               description=f"Broker URL; default ${BROKER_ENV}, else {DEFAULT_BROKER}."),
        },
    )


content_celery_executor = _celery_on(CONTENT_QUEUE, "celery_content")
privacy_celery_executor = _celery_on(PRIVACY_QUEUE, "celery_privacy")

content_pipeline_celery_job = dg.define_asset_job(
    "content_pipeline_celery_job",
    selection=content_pipeline_job.selection,
    executor_def=content_celery_executor,
    description=f"{content_pipeline_job.description} Steps run on Celery workers (queue {CONTENT_QUEUE}).",
    tags={"domain": "content"},
)


def _on_celery(job: dg.JobDefinition) -> dg.JobDefinition:
    return job.graph.to_job(
        name=job.name.removesuffix("_job") + "_celery_job",
        description=f"{job.description} The step runs on a Celery worker (queue {PRIVACY_QUEUE}).",
        tags=job.tags,
        executor_def=privacy_celery_executor,
    )


dsar_celery_jobs: dict[RequestType, dg.JobDefinition] = {kind: _on_celery(job) for kind, job in dsar_jobs.items()}


def celery_jobs() -> list:
    """Every job that runs on Celery, for the code location's `jobs`."""
    return [content_pipeline_celery_job, *dsar_celery_jobs.values()]


@cache
def scaleout_definitions() -> dg.Definitions:
    """The code location with the Celery jobs and the object-store I/O manager added where it
    lacks them: what a run and its workers load when the code location itself does not (yet)
    carry them. Imported lazily: definitions.py may import this module."""
    from encaptio_data.definitions import defs
    from encaptio_data.io_managers import io_manager_resources

    present = {job.name for job in defs.jobs or []}
    extra_jobs = [job for job in celery_jobs() if job.name not in present]
    extra_resources = {k: v for k, v in io_manager_resources().items() if k not in (defs.resources or {})}
    return dg.Definitions.merge(defs, dg.Definitions(jobs=extra_jobs, resources=extra_resources))


# Module-level functions, so dg.reconstructable() can name them to a worker: a worker imports
# this module and calls the function to get the same job the run was launched with.
def content_pipeline_on_celery() -> dg.JobDefinition:
    return scaleout_definitions().resolve_job_def(content_pipeline_celery_job.name)


def content_pipeline_in_processes() -> dg.JobDefinition:
    """The same pipeline with the code location's default executor (a process per step): the
    baseline `encaptio bench scale` compares the Celery runs with."""
    return scaleout_definitions().resolve_job_def(content_pipeline_job.name)


def dsar_access_on_celery() -> dg.JobDefinition:
    return scaleout_definitions().resolve_job_def(dsar_celery_jobs[RequestType.ACCESS].name)


def dsar_erasure_on_celery() -> dg.JobDefinition:
    return scaleout_definitions().resolve_job_def(dsar_celery_jobs[RequestType.ERASURE].name)


# Workers on this machine ----------------------------------------------------------------------

@dataclass
class CeleryWorker:
    """A `dagster-celery worker start` process, the leader of its own process group."""

    name: str
    queues: tuple[str, ...]
    process: subprocess.Popen
    log_path: Path

    @property
    def node_name(self) -> str:
        # dagster-celery names a worker NAME@%h; Celery expands %h to the host name.
        return f"{self.name}@{socket.gethostname()}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown (the task in hand finishes), then the whole group is killed if it lingers."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # The CLI may be gone while the celery process it started (same group) is not.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


# Imported by the worker before it forks its pool: each task then starts with the code location
# (torch, Great Expectations, LanceDB: tens of seconds on a busy machine) already loaded.
PRELOAD = ("encaptio_data.definitions",)


def start_worker(name: str, queues: Sequence[str], *, log_dir: Path, env: Mapping[str, str] | None = None,
                 broker: str | None = None, concurrency: int = 1,
                 preload: Sequence[str] = PRELOAD) -> CeleryWorker:
    """Start one worker with `dagster-celery worker start`, as an operator would on a worker machine.

    `env` is the worker's whole environment: the ENCAPTIO_* settings and ENCAPTIO_DAGSTER_PG_URL
    it shares with the runs, and a DAGSTER_HOME (dagster-celery writes its config module there).
    """
    environment = dict(os.environ if env is None else env)
    if not environment.get("DAGSTER_HOME"):
        raise SettingsError("DAGSTER_HOME: a Celery worker needs one (dagster-celery keeps its config there)")
    bin_dir = Path(sys.executable).parent
    # dagster-celery starts `celery` by name.
    environment["PATH"] = f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    config = log_dir / f"{name}.yaml"
    executor = celery_executor_config(queue=queues[0], broker=broker)
    config.write_text(yaml.safe_dump({"execution": {"config": {k: executor[k] for k in ("broker", "backend")}}}))
    log_path = log_dir / f"{name}.log"
    command = [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(config),
               "-n", name, *(arg for queue in queues for arg in ("-q", queue)),
               *(arg for module in preload for arg in ("-i", module)), "--loglevel", "INFO",
               "--", "--concurrency", str(concurrency), "--without-gossip", "--without-mingle"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return CeleryWorker(name, tuple(queues), process, log_path)


def wait_until_ready(workers: Sequence[CeleryWorker], *, broker: str | None = None, timeout: float = 180.0) -> None:
    """Block until every worker answers a ping through the broker; StoreUnavailableError with the
    worker's log if one exits or stays silent."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    app = make_app(CeleryExecutor.for_cli(broker=broker or broker_url()).app_args())
    waiting = {worker.node_name: worker for worker in workers}
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            for worker in waiting.values():
                if worker.process.poll() is not None:
                    raise StoreUnavailableError(f"celery worker {worker.name} exited with {worker.process.returncode}: "
                                                f"{worker.log_tail(5)}")
            if time.monotonic() > deadline:
                raise StoreUnavailableError(f"celery workers {', '.join(sorted(waiting))} did not answer within "
                                            f"{timeout:.0f}s")
            for reply in app.control.ping(destination=list(waiting), timeout=1.0):
                for node in reply:
                    waiting.pop(node, None)
    finally:
        app.close()


@contextmanager
def running_workers(specs: Mapping[str, Sequence[str]], *, log_dir: Path, env: Mapping[str, str] | None = None,
                    broker: str | None = None, concurrency: int = 1) -> Iterator[list[CeleryWorker]]:
    """Workers name → queues, started, ready, and stopped again however the block ends."""
    workers: list[CeleryWorker] = []
    try:
        for name, queues in specs.items():
            workers.append(start_worker(name, queues, log_dir=log_dir, env=env, broker=broker,
                                        concurrency=concurrency))
        wait_until_ready(workers, broker=broker)
        yield workers
    finally:
        for worker in workers:
            worker.stop()
