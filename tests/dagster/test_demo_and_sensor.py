"""`encaptio demo` end to end on the embedded default, its crash recovery, and the uploads sensor."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from typer.testing import CliRunner

from encaptio_data.cli import app
from encaptio_data.content.uploads import upload_key
from encaptio_data.platform import Platform
from encaptio_data.resources import DatabaseResource, ObjectStoreResource
from encaptio_data.sensors import uploads_sensor

TINY = ["--organizations", "2", "--capsules", "1", "--files", "4", "--events", "20", "--json"]
runner = CliRunner()


def _demo(*extra: str) -> dict:
    result = runner.invoke(app, ["demo", *TINY, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_demo_materializes_the_graph_and_a_rerun_converges() -> None:
    first = _demo()
    assert first["run"]["success"] and not first["run"]["failures"]
    materialized = {name.split("[")[0] for name in first["run"]["assets_materialized"]}
    assert {"uploads", "content", "extracted_text", "chunks", "chunk_embeddings", "search_indexes"} <= materialized
    assert first["status"]["vectors"]["rows"]["chunks"] > 0
    assert first["sample_search"]["hits"], "the demo's sample search found nothing"

    second = _demo()
    assert second["seeded"]["files_uploaded"] == 0 and sum(second["seeded"]["rows_inserted"].values()) == 0
    # A re-run is a new run: it takes another backup and appends to the audit trail (both
    # append-only by design). Everything else must be exactly where the first run left it.
    appended = {"audit_log", "backups"}
    rows = [{k: v for k, v in run["status"]["relational"]["rows"].items() if k not in appended}
            for run in (first, second)]
    assert rows[0] == rows[1]
    uploads = [run["seeded"]["corpus"] for run in (first, second)]
    assert uploads[0] == uploads[1]
    assert second["status"]["vectors"] == first["status"]["vectors"]


def test_a_demo_that_crashed_while_seeding_converges_when_re_run(monkeypatch: pytest.MonkeyPatch) -> None:
    real_put, puts = Platform.objects, []

    class Crash(Exception):
        pass

    def crash_on_third_file(self: Platform):  # type: ignore[no-untyped-def]
        store = real_put.func(self)  # cached_property's function: build the real store
        original = store.put

        def put(*args, **kwargs):  # type: ignore[no-untyped-def]
            puts.append(args[0])
            if len(puts) == 3:
                raise Crash("killed mid-seed")
            return original(*args, **kwargs)

        store.put = put
        return store

    # A context of its own: undoing it must not undo the isolated data dir of this test.
    with monkeypatch.context() as patch:
        patch.setattr(Platform, "objects", property(crash_on_third_file))
        with pytest.raises(Crash):
            runner.invoke(app, ["demo", *TINY], catch_exceptions=False)
    recovered = _demo()
    clean_rows = recovered["status"]["relational"]["rows"]
    assert recovered["run"]["success"]
    uploads = list(Platform().objects.list("uploads/"))
    assert len(uploads) == clean_rows["content"], "every upload registered once, none lost, none twice"


def test_uploads_sensor_requests_one_run_per_changed_capsule() -> None:
    from encaptio_data.accounts import add_user, ensure_organization
    from encaptio_data.bootstrap import initialize
    from encaptio_data.db.models import Capsule

    platform = Platform()
    initialize(platform)
    with platform.db.session() as session:
        org = ensure_organization(session, name="Org", slug="org")
        owner = add_user(session, email="o@org.test", name="O", organization_id=org.id, role="creator")
        capsule = Capsule(organization_id=org.id, owner_id=owner.id, title="C")
        session.add(capsule)
    key = upload_key(org.id, capsule.id, "a.txt")
    platform.objects.put(key, b"first", content_type="text/plain")
    resources = {"database": DatabaseResource(data_dir=str(platform.settings.root)),
                 "object_store": ObjectStoreResource(data_dir=str(platform.settings.root))}
    with dg.instance_for_test() as instance:

        def evaluate(cursor: str | None = None) -> dg.SensorResult:
            with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
                return uploads_sensor(context)

        result = evaluate()
        assert [r.partition_key for r in result.run_requests] == [str(capsule.id)]
        assert result.dynamic_partitions_requests[0].partition_keys == [str(capsule.id)]
        assert evaluate(result.cursor).run_requests == []

        platform.objects.put(key, b"second", content_type="text/plain")
        changed = evaluate(result.cursor)
        assert len(changed.run_requests) == 1 and changed.run_requests[0].run_key != result.run_requests[0].run_key
