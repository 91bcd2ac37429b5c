"""The compliance report on the demo data: every section, an overdue request named, HTML and PDF,
a store that is down, the CLI and the weekly Dagster asset."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from pypdf import PdfReader
from typer.testing import CliRunner

from encaptio_data.authz import system_principal
from encaptio_data.corpus import Corpus
from encaptio_data.db.enums import HoldScope, UserRole
from encaptio_data.db.models import Consent, LegalHold, User, utcnow
from encaptio_data.errors import InvalidInputError
from encaptio_data.governance.compliance import build_compliance_report, render_pdf, report_counts, write_report
from encaptio_data.lifecycle.backup import run_backup
from encaptio_data.lifecycle.drill import run_drill
from encaptio_data.lifecycle.retention import delete_capsule
from encaptio_data.platform import Platform
from encaptio_data.privacy.requests import Requests
from encaptio_data.settings import get_settings
from tests.governance.conftest import store_resources

HOLD_REASON = "litigation hold 2026-17 (counsel)"


def _pdf_text(data: bytes) -> str:
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    return re.sub(r"\s+", "", text)


def _admin(corpus: Corpus) -> str:
    return next(u.email for u in corpus.users if u.role is UserRole.ADMIN)


def _promises(platform: Platform, corpus: Corpus) -> dict[str, str]:
    """An overdue request, one due within a week, a capsule past its recovery window and one under a hold."""
    now = utcnow()
    creator = next(u for u in corpus.users if u.role is UserRole.CREATOR)
    late = Requests(platform, clock=lambda: now - timedelta(days=45)).submit(
        type="access", email=creator.email, organization_id=str(creator.organization_id))
    near = Requests(platform, clock=lambda: now - timedelta(days=25)).submit(
        type="rectification", email=creator.email, organization_id=str(creator.organization_id),
        changes={"name": "B. Smith"})
    gone, held = corpus.capsules[0], corpus.capsules[1]
    for capsule in (gone, held):
        delete_capsule(platform, capsule.id, operator=_admin(corpus), now=now - timedelta(days=40))
    with platform.db.session() as session:
        session.add(LegalHold(organization_id=held.organization_id, scope=HoldScope.CAPSULE, scope_id=held.id,
                              reason=HOLD_REASON, placed_by="counsel@example.org"))
    return {"late": late.request["id"], "near": near.request["id"], "gone": str(gone.id), "held": str(held.id)}


def test_report_on_the_demo_data_names_the_overdue_request_and_renders(demo: tuple[Platform, Corpus],
                                                                       tmp_path: Path) -> None:
    platform, corpus = demo
    ids = _promises(platform, corpus)
    embedded = platform.settings.profile == "embedded"
    if embedded:  # pgBackRest backups and drills are covered in tests/lifecycle; SQLite is quick
        system = system_principal("dagster")
        run_backup(platform, operator=system)
        drill = run_drill(platform, operator=system)
        assert drill["passed"], drill["checks"]
    quality = [{"asset": "content", "check": "content_suite", "passed": False, "severity": "ERROR",
                "evaluated_at": utcnow().isoformat(), "partition": None},
               {"asset": "chunks", "check": "chunks_suite", "passed": True, "severity": "ERROR",
                "evaluated_at": utcnow().isoformat(), "partition": None}]

    report = build_compliance_report(platform, quality=lambda: quality)
    sections = report["sections"]

    requests = sections["requests"]
    assert requests["status"] == "attention" and requests["total"] == 2
    assert [r["id"] for r in requests["overdue"]] == [ids["late"]]
    assert 13 <= requests["overdue"][0]["days_overdue"] <= 16 and requests["overdue"][0]["status"] == "approved"
    assert [r["id"] for r in requests["near_due"]] == [ids["near"]]
    assert requests["by_status"]["approved"] == 2 and requests["open"] == 2

    retention = sections["retention"]
    assert retention["status"] == "attention"
    assert retention["past_retention"]["soft_deleted"]["capsules"] == 1
    held = [h for h in retention["held"] if h["scope_id"] == ids["held"]]
    assert held and held[0]["reason"] == HOLD_REASON
    classes = {c["retention_class"]: c for c in retention["classes"]}
    assert "users" in classes["account"]["tables"].split(", ") and "capsules" in classes["soft_deleted"]["tables"]
    assert "30" in classes["soft_deleted"]["enforced_by"] or "purge" in classes["soft_deleted"]["enforced_by"]

    consent = sections["consent"]
    with platform.db.session() as session:
        users = session.scalar(sa.select(sa.func.count()).select_from(User).where(User.deleted_at.is_(None)))
        history = session.execute(sa.select(Consent.user_id, Consent.purpose, Consent.granted)
                                  .order_by(Consent.recorded_at, Consent.id)).all()
    latest = {(u, p.value): g for u, p, g in history}
    assert consent["users"] == users == len(corpus.users)
    for purpose in consent["purposes"]:
        granted = sum(1 for (u, p), g in latest.items() if p == purpose["purpose"] and g)
        assert purpose["granted"] == granted
        assert purpose["granted"] + purpose["withdrawn"] + purpose["no_record"] == users
    assert sum(p["granted"] + p["withdrawn"] for p in consent["purposes"]) > 0

    backups = sections["backups"]
    if embedded:
        assert backups["status"] == "ok" and backups["fresh"], backups["problems"]
        assert backups["last_drill"]["passed"] and backups["last_drill"]["rto_seconds"] > 0
    else:
        assert backups["status"] == "attention" and backups["problems"] == ["no restorable backup",
                                                                            "no restore drill recorded"]

    assert sections["quality"]["status"] == "attention" and sections["quality"]["blocking_failed"] == 1
    assert sections["catalog"]["status"] == "ok", sections["catalog"]["alerts"]
    assert sections["audit"]["status"] == "ok" and sections["audit"]["valid"] and sections["audit"]["entries"] > 0
    assert report["status"] == "attention" and report["unavailable"] == {}
    counts = report_counts(report)
    assert counts["requests_overdue"] == 1 and counts["held_items"] >= 1

    page = write_report(report, tmp_path / "out" / "report.html").read_text()
    assert ids["late"] in page and "Overdue requests" in page and HOLD_REASON in page
    assert "<script" not in page
    pdf = write_report(report, tmp_path / "out" / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    text = _pdf_text(pdf)
    assert ids["late"] in text and "Overduerequests" in text
    assert json.loads((write_report(report, tmp_path / "report.json")).read_text())["sections"]["requests"][
        "overdue"][0]["id"] == ids["late"]
    with pytest.raises(InvalidInputError, match="use .html, .pdf or .json"):
        write_report(report, tmp_path / "report.docx")


def test_html_escapes_what_operators_typed(demo: tuple[Platform, Corpus], tmp_path: Path) -> None:
    platform, corpus = demo
    capsule = corpus.capsules[0]
    delete_capsule(platform, capsule.id, operator=_admin(corpus), now=utcnow() - timedelta(days=40))
    with platform.db.session() as session:
        session.add(LegalHold(organization_id=capsule.organization_id, scope=HoldScope.CAPSULE, scope_id=capsule.id,
                              reason="<script>alert(1)</script>", placed_by="counsel@example.org"))
    page = write_report(build_compliance_report(platform), tmp_path / "r.html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_store_that_is_down_marks_its_sections_unavailable(tmp_path: Path) -> None:
    down = Platform(get_settings(data_dir=tmp_path / "data",
                                 database_url="postgresql+psycopg://postgres:hunter2secret@127.0.0.1:1/nowhere"))

    def broken_quality() -> list[dict[str, object]]:
        raise ConnectionError("dagster storage refused the connection")

    report = build_compliance_report(down, quality=broken_quality)
    assert report["status"] == "incomplete"
    assert set(report["unavailable"]) == {"requests", "retention", "consent", "backups", "quality", "catalog",
                                          "audit"}
    for name, reason in report["unavailable"].items():
        assert "\n" not in reason and reason, name
        assert "hunter2secret" not in reason
    assert "127.0.0.1" in report["unavailable"]["requests"]
    assert report["unavailable"]["quality"] == "ConnectionError: dagster storage refused the connection"
    assert "hunter2secret" not in json.dumps(report)
    page = write_report(report, tmp_path / "down.html").read_text()
    assert "unavailable" in page and "127.0.0.1" in page
    assert _pdf_text(render_pdf(report)).count("unavailable") >= 7


def test_compliance_report_command(demo: tuple[Platform, Corpus], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    platform, corpus = demo
    settings = platform.settings
    for name, value in (("DATABASE_URL", settings.database_url), ("OBJECT_STORE", settings.object_store),
                        ("S3_ENDPOINT_URL", settings.s3_endpoint_url), ("REDIS_URL", settings.redis_url),
                        ("CACHE_NAMESPACE", settings.cache_namespace)):
        if value:
            monkeypatch.setenv(f"ENCAPTIO_{name}", value)
    ids = _promises(platform, corpus)
    from encaptio_data.cli import app

    out = tmp_path / "compliance.pdf"
    result = CliRunner().invoke(app, ["compliance", "report", "--out", str(out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written_to"] == str(out) and out.read_bytes().startswith(b"%PDF-")
    assert [r["id"] for r in report["sections"]["requests"]["overdue"]] == [ids["late"]]
    # No Dagster run has happened in this data dir: the quality section says so rather than guess.
    assert report["sections"]["quality"]["status"] == "unavailable"


@pytest.mark.xdist_group("governance-dagster")
def test_weekly_asset_stores_the_report_and_evaluates_the_catalog_check(demo: tuple[Platform, Corpus]) -> None:
    from encaptio_data.assets.governance import (
        CATALOG_COMPLETE,
        compliance_report,
        compliance_report_schedule,
        with_catalog,
    )

    platform, corpus = demo
    ids = _promises(platform, corpus)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(with_catalog([compliance_report]), instance=instance, resources=store_resources(platform))
    assert result.success
    metadata = result.asset_materializations_for_node("compliance_report")[0].metadata
    assert metadata["requests_overdue"].value == 1 and ids["late"] in metadata["overdue_requests"].value
    stored = metadata["report_objects"].value
    assert set(stored) == {"json", "html", "pdf"}
    with platform.objects.open(stored["json"]) as body:
        assert json.loads(body.read())["sections"]["requests"]["overdue"][0]["id"] == ids["late"]
    with platform.objects.open(stored["pdf"]) as body:
        assert body.read().startswith(b"%PDF-")
    evaluation = {e.check_name: e for e in result.get_asset_check_evaluations()}[CATALOG_COMPLETE]
    assert evaluation.passed, evaluation.metadata
    logged = " ".join(str(record.dagster_event) for record in instance.all_logs(result.run_id))
    assert HOLD_REASON not in logged and HOLD_REASON not in str(metadata)
    assert compliance_report_schedule.cron_schedule == "0 6 * * 1"
