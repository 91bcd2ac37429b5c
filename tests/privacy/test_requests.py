"""Intake, verification, approval, deadlines, access exports, rectification, restriction, consent, audit."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.audit import append, verify_chain
from encaptio_data.db.enums import Jurisdiction
from encaptio_data.db.models import AuditEntry, ProcessingRestriction, User
from encaptio_data.errors import IntegrityError, InvalidInputError, NotFoundError
from encaptio_data.platform import Platform
from encaptio_data.privacy.access import AccessExports, ExpiredLinkError
from encaptio_data.privacy.consent import excluded_users, may_process, record_consent
from encaptio_data.privacy.process import RequestProcessor
from encaptio_data.privacy.requests import (
    InvalidTransitionError, PermissionDeniedError, Requests, due_dates,
)
from tests.privacy.conftest import plant, run_pipeline


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_due_dates_per_jurisdiction() -> None:
    received = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    gdpr_due, gdpr_ack = due_dates(Jurisdiction.GDPR, received)
    assert gdpr_due == datetime(2026, 2, 28, 12, 0, tzinfo=UTC) and gdpr_ack is None
    ccpa_due, ccpa_ack = due_dates(Jurisdiction.CCPA, datetime(2026, 11, 6, 12, 0, tzinfo=UTC))  # a Friday
    assert ccpa_due == datetime(2026, 12, 21, 12, 0, tzinfo=UTC)
    assert ccpa_ack == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # ten business days later


def test_self_service_requests_verify_identity_first(platform: Platform) -> None:
    subject = plant(platform, "verify")
    requests = Requests(platform)
    submitted = requests.submit(type="access", email=subject.email, source="web")
    assert submitted.request["status"] == "received" and submitted.verification_code
    with pytest.raises(PermissionDeniedError):
        requests.verify(submitted.request["id"], "000000" if submitted.verification_code != "000000" else "111111")
    view = requests.verify(submitted.request["id"], submitted.verification_code)
    assert view["status"] == "approved", "access needs no approval once identity is verified"


def test_erasure_needs_a_privacy_officer(platform: Platform, officer: str) -> None:
    subject = plant(platform, "approve")
    requests = Requests(platform)
    request_id = requests.submit(type="erasure", email=subject.email).request["id"]
    with pytest.raises(PermissionDeniedError, match="--as"):
        requests.approve(request_id, operator=None)
    with pytest.raises(PermissionDeniedError, match="creator of organization .* may not approve_erasure"):
        requests.approve(request_id, operator=subject.email)
    assert requests.approve(request_id, operator=officer)["status"] == "approved"
    with pytest.raises(InvalidTransitionError):
        requests.approve(request_id, operator=officer)


def test_duplicate_requests_are_merged(platform: Platform) -> None:
    subject = plant(platform, "dup")
    requests = Requests(platform)
    first = requests.submit(type="erasure", email=subject.email)
    second = requests.submit(type="erasure", email=subject.email.upper())
    assert second.merged and second.request["id"] == first.request["id"]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"type": "access", "email": "not-an-email"}, InvalidInputError, "invalid email"),
    ({"type": "access", "email": "nobody@nowhere.test"}, NotFoundError, "no data subject"),
    ({"type": "teleport", "email": "x@y.test"}, InvalidInputError, "teleport"),
    ({"type": "rectification", "email": "x@y.test", "changes": {"role": "admin"}}, InvalidInputError, "cannot rectify"),
    ({"type": "access", "email": "x@y.test", "changes": {"name": "x"}}, InvalidInputError, "only for"),
    ({"type": "objection", "email": "x@y.test", "changes": {"purpose": "world domination"}}, InvalidInputError,
     "unknown purpose"),
])
def test_bad_requests_get_one_line(platform: Platform, kwargs: dict, error: type, match: str) -> None:
    plant(platform, "bad")
    with pytest.raises(error, match=match) as raised:
        Requests(platform).submit(**kwargs)
    assert "\n" not in str(raised.value)


def test_a_request_for_another_organizations_user_is_refused(platform: Platform) -> None:
    subject = plant(platform, "tenant")
    other = plant(platform, "other", org_slug="other")
    with pytest.raises(NotFoundError):
        Requests(platform).submit(type="access", email=subject.email, organization_id=str(other.organization_id))


def test_deadlines_flag_near_and_overdue_requests(platform: Platform) -> None:
    subject = plant(platform, "late")
    clock = Clock()
    requests = Requests(platform, clock=clock)
    request_id = requests.submit(type="access", email=subject.email, source="web").request["id"]
    assert requests.deadlines() == {"overdue": [], "near_due": []}
    clock.now += timedelta(days=26)
    assert [r["id"] for r in requests.deadlines()["near_due"]] == [request_id]
    clock.now += timedelta(days=10)
    assert [r["id"] for r in requests.deadlines()["overdue"]] == [request_id]


def test_access_export_holds_everything_and_the_link_expires(platform: Platform, tmp_path: Path, officer: str) -> None:
    subject = plant(platform, "access")
    run_pipeline(platform)
    clock = Clock()
    requests = Requests(platform, clock=clock)
    request_id = requests.submit(type="access", email=subject.email).request["id"]
    result = RequestProcessor(platform, clock=clock).process(request_id, operator=officer)
    assert result["status"] == "completed"
    token = result["receipt"]["export"]["token"]
    exports = AccessExports(platform, clock=clock)
    archive = zipfile.ZipFile(exports.download(token, tmp_path / "out", operator=subject.email))
    names = archive.namelist()
    assert {"data.json", "schema.json", "report.pdf", "csv/users.csv", "csv/interaction_events.csv"} <= set(names)
    files = [archive.read(name) for name in names if name.startswith("files/")]
    assert files and all(subject.canary.encode() in data for data in files), "the subject's files, decrypted"
    data = json.loads(archive.read("data.json"))
    assert data["tables"]["users"][0]["email"] == subject.email
    assert {"purposes", "recipients", "retention", "sources"} <= set(data["article_15"])
    assert subject.canary in archive.read("csv/interaction_events.csv").decode()
    assert archive.read("report.pdf").startswith(b"%PDF")
    stored = platform.objects.get(next(v.key for v in platform.objects.list("exports/") if v.key.endswith(".enc")))
    assert subject.canary.encode() not in stored, "the stored export is encrypted with the subject's key"
    if platform.settings.profile == "production":
        assert "Expires=" in result["receipt"]["export"]["presigned_url"]

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises((IntegrityError, InvalidInputError)):
        exports.download(tampered, tmp_path / "bad", operator=officer)
    clock.now += timedelta(days=7, seconds=1)
    with pytest.raises(ExpiredLinkError):
        exports.download(token, tmp_path / "late", operator=officer)
    with platform.db.session() as session:
        actions = session.scalars(sa.select(AuditEntry.action)).all()
    assert "export.downloaded" in actions


def test_rectification_restriction_objection_and_consent(platform: Platform, officer: str) -> None:
    subject = plant(platform, "rectify")
    processor = RequestProcessor(platform)
    requests = Requests(platform)
    rid = requests.submit(type="rectification", email=subject.email, changes={"name": "Correct Name"}).request["id"]
    assert processor.process(rid, operator=officer)["receipt"]["rectified_fields"] == ["name"]
    with platform.db.session() as session:
        assert session.get(User, subject.user_id).name == "Correct Name"
        assert may_process(session, subject.user_id, "analytics")

    rid = requests.submit(type="objection", email=subject.email, changes={"purpose": "marketing"}).request["id"]
    processor.process(rid, operator=officer)
    with platform.db.session() as session:
        assert not may_process(session, subject.user_id, "marketing")
        assert may_process(session, subject.user_id, "analytics")
        record_consent(session, subject.user_id, "analytics", granted=False, version="2026-11")
    with platform.db.session() as session:
        assert subject.user_id in excluded_users(session, "analytics")

    rid = requests.submit(type="restriction", email=subject.email).request["id"]
    processor.process(rid, operator=officer)
    processor.process(rid, operator=officer)  # idempotent
    with platform.db.session() as session:
        rows = session.scalars(sa.select(ProcessingRestriction).where(ProcessingRestriction.user_id == subject.user_id))
        assert len(rows.all()) == 2
        assert not may_process(session, subject.user_id, "personalization")


def test_audit_chain_detects_edit_insert_and_removal(platform: Platform) -> None:
    for index in range(5):
        append(platform.db, actor="ops@acme.test", action="test.step", details={"n": index})
    assert verify_chain(platform.db).valid
    with platform.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    report = verify_chain(platform.db)
    assert not report.valid and report.first_break == 3 and "edited" in report.problem
    with platform.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor = 'ops@acme.test' WHERE seq = 3"))
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 2"))
    report = verify_chain(platform.db)
    assert not report.valid and report.first_break == 3 and "removed or inserted" in report.problem
