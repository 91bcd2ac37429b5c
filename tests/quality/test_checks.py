"""The checks as Dagster runs them: per capsule partition, blocking, alerting, and with a history."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from bench.quality import SyntheticStores, build_synthetic_stores
from encaptio_data.assets import content as content_assets
from encaptio_data.db.models import AuditEntry, Chunk, Content
from encaptio_data.audit import verify_chain
from encaptio_data.platform import Platform
from encaptio_data.quality import catalog
from encaptio_data.quality.checks import GreatExpectationsResource, quality_checks, quality_resources
from encaptio_data.quality.history import stored_volume_history, volume_history
from encaptio_data.quality.runner import run_all
from encaptio_data.resources import DatabaseResource, ObjectStoreResource, VectorStoreResource, default_resources


def _resources(platform: Platform) -> dict[str, object]:
    settings = platform.settings
    return {
        "database": DatabaseResource(database_url=settings.resolved_database_url),
        "object_store": ObjectStoreResource(object_store=settings.resolved_object_store,
                                            s3_endpoint_url=settings.s3_endpoint_url),
        "vector_store": VectorStoreResource(lancedb_uri=settings.resolved_lancedb_uri),
        "great_expectations": GreatExpectationsResource(),
    }


def _checks_on(asset: str) -> list[dg.AssetChecksDefinition]:
    return [check for check in quality_checks if next(iter(check.check_keys)).asset_key == dg.AssetKey(asset)]


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def test_the_checks_load_into_the_code_location() -> None:
    defs = dg.Definitions(assets=dg.load_assets_from_modules([content_assets]), asset_checks=quality_checks,
                          resources={**default_resources(), **quality_resources()})
    dg.Definitions.validate_loadable(defs)
    specs = {spec.key: spec for check in quality_checks for spec in check.check_specs}
    for check in catalog.CHECKS:
        spec = specs[dg.AssetCheckKey(dg.AssetKey(check.asset), check.name)]
        assert spec.blocking is (check.severity is catalog.Severity.ERROR)
        assert spec.description == check.description


def test_a_failed_blocking_check_stops_its_capsule_downstream_and_raises_an_alert(
        platform: Platform, corpus: SyntheticStores) -> None:
    broken, clean = (str(capsule_id) for capsule_id in corpus.capsule_ids)
    with platform.db.session() as session:
        lost = session.scalars(sa.select(Content).where(Content.capsule_id == corpus.capsule_ids[0]).limit(1)).one()
    platform.objects.delete(lost.object_key, lost.object_version)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("capsules", [broken, clean])
    selection = [content_assets.content, content_assets.extracted_text, *_checks_on("content")]

    result = dg.materialize(selection, partition_key=broken, instance=instance, resources=_resources(platform),
                            raise_on_error=False)
    assert not result.success
    assert _materialized(result) == {"content"}, "extracted_text must not run after a failed blocking check"
    evaluations = _evaluations(result)
    failed = evaluations[catalog.CONTENT_OBJECTS]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["missing_versions"].value == 1
    assert str(lost.id) in failed.metadata["failing_examples"].value
    assert all(e.passed for name, e in evaluations.items() if name != catalog.CONTENT_OBJECTS)

    with platform.db.session() as session:
        [entry] = session.scalars(sa.select(AuditEntry)).all()
    assert (entry.action, entry.target, entry.organization_id) == (
        "quality.check_failed", catalog.CONTENT_OBJECTS, corpus.organization_id)
    assert entry.details["capsule_id"] == broken and entry.details["run_id"] == result.run_id
    assert entry.details["failing"] == [{"content_id": str(lost.id), "problem": "object version missing"}]
    assert verify_chain(platform.db).valid

    # The other capsule's run checks only that capsule, passes, and carries on downstream.
    result = dg.materialize(selection, partition_key=clean, instance=instance, resources=_resources(platform))
    assert _materialized(result) == {"content", "extracted_text"}
    assert all(e.passed for e in _evaluations(result).values())


def test_the_volume_check_judges_against_its_own_earlier_evaluations(embedded: Platform) -> None:
    corpus = build_synthetic_stores(embedded, capsules=2, content_per_capsule=10, chunks_per_content=2,
                                    events_per_capsule=0)
    volume = [check for check in _checks_on("search_indexes")
              if next(iter(check.check_keys)).name == catalog.CONTENT_VOLUME]
    with dg.DagsterInstance.from_config(str(embedded.settings.dagster_home)) as instance:

        def evaluate() -> dg.AssetCheckEvaluation:
            result = dg.materialize([content_assets.search_indexes, *volume], instance=instance,
                                    selection=dg.AssetSelection.checks(*volume), resources=_resources(embedded))
            return _evaluations(result)[catalog.CONTENT_VOLUME]

        for _ in range(3):
            assert evaluate().passed
        assert volume_history(instance)[0] == {"content": 20, "content_extractions": 20, "chunks": 40,
                                               "vector_rows": 40}

        with embedded.db.session() as session:
            session.execute(sa.delete(Chunk).where(Chunk.capsule_id == corpus.capsule_ids[0]))
        dropped = evaluate()
        assert not dropped.passed and dropped.severity == dg.AssetCheckSeverity.WARN
        assert dropped.metadata["chunks"].value == 20 and dropped.metadata["history_runs"].value == 3
        assert "chunks" in dropped.metadata["failing_examples"].value

    # `encaptio quality run` judges against the same history, without Dagster running.
    assert len(stored_volume_history(embedded.settings)) == 4
    outcome = next(check for check in run_all(embedded)["checks"] if check["name"] == catalog.CONTENT_VOLUME)
    assert not outcome["passed"] and outcome["statistics"]["history_runs"] == 4
