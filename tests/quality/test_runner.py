"""`encaptio quality run` and `report`: every check outside Dagster, on real demo data and on damaged data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.quality import SyntheticStores
from encaptio_data.audit import verify_chain
from encaptio_data.content.uploads import upload_key
from encaptio_data.corpus import CorpusSpec
from encaptio_data.db.models import AuditEntry, Chunk, Content
from encaptio_data.platform import Platform
from encaptio_data.quality import catalog
from encaptio_data.quality.runner import run_all, write_report
from encaptio_data.settings import get_settings
from tests.search.conftest import build

# One organization, two capsules of four real files each: enough for every check to have rows
# (documents and media, events, users of several roles) while the real model embeds in seconds.
TINY = CorpusSpec(seed=5, organizations=1, users_per_organization=3, capsules_per_organization=2,
                  files_per_capsule=4, events_per_capsule=12)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform = Platform(get_settings(data_dir=tmp_path_factory.mktemp("quality-demo") / "data"))
    build(platform, TINY)
    yield platform
    platform.close()


@pytest.mark.xdist_group("quality-demo")
def test_demo_data_through_the_real_pipeline_passes_every_check(demo: Platform, tmp_path: Path) -> None:
    result = run_all(demo)
    assert result["passed"], [(c["name"], c["examples"]) for c in result["checks"] if not c["passed"]]
    assert not result["blocking_failed"]
    assert [c["name"] for c in result["checks"]] == [check.name for check in catalog.CHECKS] + [
        "daily_engagement_suite", "aggregates_reconcile_with_raw_events"]
    by_name = {c["name"]: c for c in result["checks"]}
    chunks = by_name[catalog.CHUNKS_SUITE]["statistics"]["rows"]
    assert chunks > 0 and by_name[catalog.EMBEDDINGS_SUITE]["statistics"]["rows"] == chunks
    assert by_name[catalog.INTERACTION_EVENTS_SUITE]["statistics"]["rows"] > 0
    assert by_name[catalog.NEAR_DUPLICATE_CONTENT]["statistics"]["content_compared"] >= 4

    page = write_report(result, tmp_path / "report" / "quality.html").read_text()
    assert "all checks passed" in page
    assert all(check.name in page for check in catalog.CHECKS)


def test_failures_are_reported_with_examples_and_blocking_ones_alert(embedded: Platform,
                                                                     embedded_corpus: SyntheticStores,
                                                                     tmp_path: Path) -> None:
    with embedded.db.session() as session:
        lost = session.get(Content, embedded_corpus.content_ids[0])
        session.execute(sa.update(Chunk).where(Chunk.content_id == embedded_corpus.content_ids[1])
                        .values(token_count=999))
    embedded.objects.delete(lost.object_key, lost.object_version)
    embedded.objects.put(upload_key(embedded_corpus.organization_id, embedded_corpus.capsule_ids[1], "stray.txt"),
                         b"never registered", content_type="text/plain")

    result = run_all(embedded, alert=True)
    assert not result["passed"] and result["blocking_failed"]
    failed = {c["name"]: c for c in result["checks"] if not c["passed"]}
    assert set(failed) == {catalog.CONTENT_OBJECTS, catalog.CHUNKS_SUITE, catalog.UPLOADS_REGISTERED}
    assert failed[catalog.CONTENT_OBJECTS]["examples"][0]["content_id"] == str(lost.id)
    assert failed[catalog.CHUNKS_SUITE]["statistics"]["success_percent"] == 75.0
    # ERROR checks raise alerts; the WARN check (an orphan upload) only reports.
    assert "alert" not in failed[catalog.UPLOADS_REGISTERED]
    with embedded.db.session() as session:
        targets = session.scalars(sa.select(AuditEntry.target).order_by(AuditEntry.seq)).all()
    assert targets == [catalog.CONTENT_OBJECTS, catalog.CHUNKS_SUITE]
    assert [failed[name]["alert"]["audit_seq"] for name in targets] == [1, 2]
    assert verify_chain(embedded.db).valid

    page = write_report(result, tmp_path / "quality.html").read_text()
    assert "blocking checks failed" in page and str(lost.id) in page


def test_warnings_alone_do_not_block(embedded: Platform, embedded_corpus: SyntheticStores) -> None:
    embedded.objects.put(upload_key(embedded_corpus.organization_id, embedded_corpus.capsule_ids[0], "stray.txt"),
                         b"never registered", content_type="text/plain")
    result = run_all(embedded, alert=True)
    assert result["failed"] == [catalog.UPLOADS_REGISTERED]
    assert not result["passed"] and not result["blocking_failed"]
    with embedded.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 0
