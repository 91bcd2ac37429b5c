"""Sensors: what starts runs without an operator."""

import json

import dagster as dg

from encaptio_data.assets.partitions import capsule_partitions
from encaptio_data.content.uploads import capsule_ids, upload_fingerprints
from encaptio_data.jobs import content_pipeline_job
from encaptio_data.resources import DatabaseResource, ObjectStoreResource


@dg.sensor(
    job=content_pipeline_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Runs the content pipeline for every capsule whose uploads changed (a new file or a new version). "
        "Registers a capsule's partition the first time it has uploads. The run key is the capsule id plus a "
        "digest of its uploads' versions, so a restarted daemon never runs the same change twice."
    ),
)
def uploads_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource,
                   object_store: ObjectStoreResource) -> dg.SensorResult:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = upload_fingerprints(object_store.get(), set(capsule_ids(database.get())))
    changed = sorted(capsule for capsule, digest in current.items() if seen.get(capsule) != digest)
    new_partitions = [c for c in changed if not context.instance.has_dynamic_partition(capsule_partitions.name, c)]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=c, run_key=f"{c}:{current[c]}") for c in changed],
        dynamic_partitions_requests=[capsule_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps(current, sort_keys=True),
    )
