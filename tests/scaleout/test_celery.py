"""The content pipeline and an erasure request through dagster-celery, on two real workers.

The production instance (deploy/production/dagster.yaml on a fresh PostgreSQL database), two
`dagster-celery worker start` processes on RabbitMQ, one per queue, and the platform on
PostgreSQL, moto's S3, Redis and a LanceDB directory. The run process only orchestrates: the
test proves each step ran inside the worker it was routed to, and that the work landed in the
stores the workers share.
"""

from __future__ import annotations

import os
import pickle
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from encaptio_data.accounts import add_user
from encaptio_data.bootstrap import initialize
from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content
from encaptio_data.content.uploads import capsule_ids, capsule_upload_prefix, register_uploads
from encaptio_data.corpus import CorpusSpec
from encaptio_data.db.models import Chunk, Content
from encaptio_data.demo import seed_demo
from encaptio_data.io_managers import IO_PREFIX
from encaptio_data.keys import KeyStore
from encaptio_data.jobs.executors import (
    CeleryWorker,
    content_pipeline_on_celery,
    dsar_erasure_on_celery,
    running_workers,
)
from encaptio_data.platform import Platform
from encaptio_data.privacy.erasure import verify_erased
from encaptio_data.privacy.requests import Requests
from encaptio_data.search.index import open_chunks_table
from encaptio_data.settings import get_settings
from tests.privacy.conftest import HashingEmbedder, plant
from tests.scaleout.conftest import Cluster

# Two workers with the real model each, and RabbitMQ queues: never beside another copy of itself.
pytestmark = pytest.mark.xdist_group("celery")

SPEC = CorpusSpec(seed=23, organizations=1, users_per_organization=3, capsules_per_organization=1,
                  files_per_capsule=4, events_per_capsule=0)


def _workers_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key → the Celery worker that executed it, from the event the worker itself records."""
    placed = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
        if "Celery worker" in metadata:
            placed[event.step_key] = metadata["Celery worker"].value
    return placed


def _step_pids(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    return {record.dagster_event.step_key: record.dagster_event.pid
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)}


def _assert_ran_in(worker: CeleryWorker, instance: dg.DagsterInstance, result: dg.ExecuteJobResult) -> None:
    placed = _workers_by_step(instance, result.run_id)
    pids = _step_pids(instance, result.run_id)
    assert pids and set(placed) == set(pids), f"steps {sorted(pids)} but worker events for {sorted(placed)}"
    assert set(placed.values()) == {worker.node_name}, placed
    for step, pid in pids.items():
        assert pid != os.getpid(), f"{step} ran in the test process"
        # Every process a worker starts (its Celery pool children) stays in its process group.
        assert os.getpgid(pid) == worker.process.pid, f"{step} ran in pid {pid}, outside worker {worker.name}"


def _explain(result: dg.ExecuteJobResult, workers: list[CeleryWorker]) -> str:
    failures = [str(event.step_failure_data.error.message).strip() for event in result.all_events
                if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    logs = "\n".join(f"--- {w.name}\n{w.log_tail()}" for w in workers)
    return f"run {result.run_id} failed: {failures}\n{logs}"


def test_content_pipeline_and_an_erasure_run_on_two_celery_workers(cluster: Cluster) -> None:
    platform = Platform(get_settings())
    initialize(platform)
    seed_demo(platform, SPEC)
    subject = plant(platform, "celery", org_slug="celery-acme")
    with platform.db.session() as session:
        officer = add_user(session, email="dpo@celery-acme.test", name="DPO", organization_id=subject.organization_id,
                           role="privacy_officer").email
    corpus_capsule = next(c for c in capsule_ids(platform.db) if c != str(subject.capsule_id))
    # The subject's capsule goes through the pipeline functions here, with the hashing stand-in
    # for the model: the erasure needs the subject's rows in every store, not a second run.
    subject_prefix = capsule_upload_prefix(platform.db, subject.capsule_id)
    keys = KeyStore(platform.settings.keys_dir)  # the demo's uploads are sealed
    register_uploads(platform.db, platform.objects, prefix=subject_prefix, keys=keys)
    extract_content(platform.db, platform.objects, capsule_id=subject.capsule_id, keys=keys)
    chunk_content(platform.db, capsule_id=subject.capsule_id)
    embed_content(platform.db, platform.vectors, HashingEmbedder(), capsule_id=subject.capsule_id,
                  cache=platform.cache)

    instance = dg.DagsterInstance.from_config(str(cluster.dagster_home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    instance.add_dynamic_partitions("capsules", [corpus_capsule])
    suffix = uuid.uuid4().hex[:6]
    specs = {f"content-{suffix}": [cluster.queue("content")], f"privacy-{suffix}": [cluster.queue("privacy")]}
    with running_workers(specs, log_dir=cluster.log_dir, env=cluster.env) as workers:
        content_worker, privacy_worker = workers

        result = dg.execute_job(dg.reconstructable(content_pipeline_on_celery), instance,
                                run_config={"execution": {"config": {"queue": cluster.queue("content")}}},
                                tags={"dagster/partition": corpus_capsule})
        assert result.success, _explain(result, workers)
        _assert_ran_in(content_worker, instance, result)
        # The four assets, and their checks as steps of their own.
        assert {"content", "extracted_text", "chunks", "chunk_embeddings"} <= set(_step_pids(instance, result.run_id))

        table = open_chunks_table(platform.vectors)
        with platform.db.session() as session:
            contents = session.scalar(sa.select(sa.func.count()).select_from(Content)
                                      .where(Content.capsule_id == uuid.UUID(corpus_capsule)))
            chunks = session.scalar(sa.select(sa.func.count()).select_from(Chunk).join(Content)
                                    .where(Content.capsule_id == uuid.UUID(corpus_capsule)))
        assert contents == SPEC.files_per_capsule and chunks > 0
        assert table.count_rows(f"capsule_id = '{corpus_capsule}'") == chunks
        assert table.search().where(f"text LIKE '%{subject.canary}%'").to_list(), "the subject's text is not indexed"

        requests = Requests(platform)
        request_id = requests.submit(type="erasure", email=subject.email).request["id"]
        requests.approve(request_id, operator=officer)
        erasure = dg.execute_job(
            dg.reconstructable(dsar_erasure_on_celery), instance,
            run_config={"execution": {"config": {"queue": cluster.queue("privacy")}},
                        "ops": {"process_erasure_request": {"config": {"request_id": request_id}}}},
            tags={"dsar/request_id": request_id, "dsar/type": "erasure"})
        assert erasure.success, _explain(erasure, workers)
        _assert_ran_in(privacy_worker, instance, erasure)

    with platform.db.session() as session:
        assert requests.get(session, request_id).status.value == "completed"
    verification = verify_erased(platform, None, [subject.canary])
    assert verification.passed, verification.findings
    assert not open_chunks_table(platform.vectors).search().where(f"text LIKE '%{subject.canary}%'").to_list()
    # The op's output went through the object-store I/O manager to S3, where any worker can read it.
    output_key = f"{IO_PREFIX}/runs/{erasure.run_id}/process_erasure_request/result"
    assert platform.objects.uri.startswith("s3://")
    assert pickle.loads(platform.objects.get(output_key)) == {"status": "completed"}
    platform.cache.clear()
    platform.close()
