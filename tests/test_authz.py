"""Roles and least privilege, checked in the domain API on both profiles, and through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data import authz
from encaptio_data.accounts import add_user, ensure_organization
from encaptio_data.analytics.export import export_analytics
from encaptio_data.authz import Permission, actor_ref, authorize, resolve, system_principal
from encaptio_data.db.models import AuditEntry, DataSubjectRequest, RetentionPolicy
from encaptio_data.errors import InvalidInputError, PermissionDeniedError
from encaptio_data.keys import KeyStore, rotate_master_key
from encaptio_data.lifecycle import backup as bk
from encaptio_data.lifecycle.retention import set_policy
from encaptio_data.platform import Platform
from encaptio_data.privacy.access import AccessExports
from encaptio_data.privacy.process import RequestProcessor
from encaptio_data.privacy.requests import Requests
from encaptio_data.search.service import SearchRequest, SearchService
from tests.privacy.conftest import HashingEmbedder, plant, run_pipeline

ALL = {p.value for p in Permission}
# The promise, written out independently of authz.ROLE_PERMISSIONS so that a change to the table fails here.
EXPECTED = {
    "viewer": {"search_org"},
    "creator": {"search_org", "ingest_content", "manage_capsules"},
    "analyst": {"view_analytics", "export_analytics"},
    "privacy_officer": {"approve_erasure", "process_requests", "export_subject_data"},
    "admin": ALL,
}


@dataclass
class Tenants:
    home: uuid.UUID
    away: uuid.UUID

    @staticmethod
    def email(role: str) -> str:
        return f"{role.replace('_', '-')}@home.test"


def _tenants(platform: Platform) -> Tenants:
    with platform.db.session() as session:
        home = ensure_organization(session, name="Home", slug="home").id
        away = ensure_organization(session, name="Away", slug="away").id
        for role in EXPECTED:
            add_user(session, email=Tenants.email(role), name=role, organization_id=home, role=role)
        add_user(session, email="viewer@away.test", name="Away viewer", organization_id=away, role="viewer")
    return Tenants(home, away)


def _denials(platform: Platform) -> list[AuditEntry]:
    with platform.db.session() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == authz.DENIED_ACTION)
                                    .order_by(AuditEntry.seq)))


def _ref(platform: Platform, email: str) -> str:
    return actor_ref(KeyStore(platform.settings.keys_dir), email)


@pytest.mark.parametrize("role", list(EXPECTED))
def test_each_role_gets_exactly_its_permissions_in_its_own_organization(platform: Platform, role: str) -> None:
    tenants = _tenants(platform)
    principal = resolve(platform, Tenants.email(role))
    denied = []
    for permission in Permission:
        if permission.value in EXPECTED[role]:
            assert authorize(platform, principal, permission, tenants.home) is principal
        else:
            with pytest.raises(PermissionDeniedError, match=f"may not {permission.value} in organization") as raised:
                authorize(platform, principal, permission, tenants.home)
            assert "\n" not in str(raised.value) and Tenants.email(role) in str(raised.value)
            denied.append(permission.value)
    entries = _denials(platform)
    assert [e.details["permission"] for e in entries] == denied
    assert {e.actor for e in entries} <= {_ref(platform, Tenants.email(role))}
    assert all(e.organization_id == tenants.home and e.details["organization_id"] == str(tenants.home)
               for e in entries)


@pytest.mark.parametrize("role", list(EXPECTED))
def test_only_admins_act_in_another_organization_or_platform_wide(platform: Platform, role: str) -> None:
    tenants = _tenants(platform)
    principal = resolve(platform, Tenants.email(role))
    for permission in sorted(EXPECTED[role]):
        for scope in (tenants.away, None):
            if role == "admin":
                authorize(platform, principal, Permission(permission), scope)
            else:
                with pytest.raises(PermissionDeniedError, match=f"may not {permission}"):
                    authorize(platform, principal, Permission(permission), scope)
    expected_denials = 0 if role == "admin" else 2 * len(EXPECTED[role])
    entries = _denials(platform)
    assert len(entries) == expected_denials
    assert {e.organization_id for e in entries} <= {tenants.away, None}


def test_operators_must_be_named_and_known_and_cannot_borrow_a_system_principal(platform: Platform) -> None:
    _tenants(platform)
    with pytest.raises(PermissionDeniedError, match="--as EMAIL or set ENCAPTIO_OPERATOR"):
        authorize(platform, None, Permission.RUN_BACKUP)
    with pytest.raises(PermissionDeniedError, match="not a user of this platform"):
        authorize(platform, "stranger@nowhere.test", Permission.SEARCH_ORG)
    with pytest.raises(PermissionDeniedError, match="system principal"):
        authorize(platform, "system:dagster", Permission.RUN_BACKUP)
    with pytest.raises(InvalidInputError):
        system_principal("root")
    reasons = [(e.actor, e.details["reason"]) for e in _denials(platform)]
    assert reasons == [("anonymous", "no operator"), (_ref(platform, "stranger@nowhere.test"), "unknown operator"),
                       ("system:dagster", "system principal named by a string")]
    # People are named by a keyed reference, so the trail never blocks their erasure.
    with platform.db.session() as session:
        assert not session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                                  .where(sa.cast(AuditEntry.details, sa.Text).contains("stranger@")))


def test_the_dagster_principal_has_its_listed_permissions_only(platform: Platform) -> None:
    tenants = _tenants(platform)
    dagster = system_principal("dagster", run="abc12345")
    for permission in (Permission.RUN_BACKUP, Permission.RESTORE_BACKUP, Permission.PROCESS_REQUESTS,
                       Permission.EXPORT_ANALYTICS):
        authorize(platform, dagster, permission, tenants.away)
        authorize(platform, dagster, permission)
    for permission in (Permission.SEARCH_ORG, Permission.APPROVE_ERASURE, Permission.ROTATE_KEYS,
                       Permission.CHANGE_RETENTION, Permission.EXPORT_SUBJECT_DATA):
        with pytest.raises(PermissionDeniedError, match=f"system:dagster:abc12345 .* may not {permission.value}"):
            authorize(platform, dagster, permission, tenants.home)
    assert {e.actor for e in _denials(platform)} == {"system:dagster:abc12345"}


def test_search_is_scoped_to_the_principals_organization_and_refusals_are_audited(platform: Platform) -> None:
    subject = plant(platform, "searched")
    plant(platform, "elsewhere", org_slug="elsewhere")
    run_pipeline(platform)
    with platform.db.session() as session:
        add_user(session, email="reader@acme.test", name="Reader", organization_id=subject.organization_id,
                 role="viewer")
        add_user(session, email="numbers@acme.test", name="Numbers", organization_id=subject.organization_id,
                 role="analyst")
        other = ensure_organization(session, name="Acme", slug="elsewhere").id
    viewer = SearchService(platform.vectors, platform.cache, principal=resolve(platform, "reader@acme.test"),
                           db=platform.db, embedder=HashingEmbedder())
    hits = viewer.search(SearchRequest(str(subject.organization_id), "sourdough telescopes", mode="fulltext")).hits
    assert hits and {h.organization_id for h in hits} == {str(subject.organization_id)}
    with pytest.raises(PermissionDeniedError, match=f"may not search_org in organization {other}"):
        viewer.search(SearchRequest(str(other), "sourdough telescopes", mode="fulltext"))
    analyst = SearchService(platform.vectors, platform.cache, principal=resolve(platform, "numbers@acme.test"),
                            db=platform.db, embedder=HashingEmbedder())
    with pytest.raises(PermissionDeniedError, match="analyst .* may not search_org"):
        analyst.search(SearchRequest(str(subject.organization_id), "sourdough", mode="fulltext"))
    with pytest.raises(TypeError, match="Principal"):
        SearchService(platform.vectors, platform.cache, principal="reader@acme.test",  # type: ignore[arg-type]
                      db=platform.db)
    entries = _denials(platform)
    assert [(e.actor, e.details["permission"], e.organization_id) for e in entries] == [
        (_ref(platform, "reader@acme.test"), "search_org", other),
        (_ref(platform, "numbers@acme.test"), "search_org", subject.organization_id)]


def test_request_handling_follows_roles_and_records_the_operator(platform: Platform, tmp_path: Path) -> None:
    subject = plant(platform, "dsar")
    run_pipeline(platform)
    far = plant(platform, "far", org_slug="far")
    with platform.db.session() as session:
        add_user(session, email="dpo@acme.test", name="DPO", organization_id=subject.organization_id,
                 role="privacy_officer")
        add_user(session, email="reader@acme.test", name="Reader", organization_id=subject.organization_id,
                 role="viewer")
        add_user(session, email="dpo@far.test", name="Far DPO", organization_id=far.organization_id,
                 role="privacy_officer")
    requests = Requests(platform)
    erasure = requests.submit(type="erasure", email=far.email).request["id"]
    for operator in ("reader@acme.test", "dpo@acme.test"):  # a viewer, and an officer of another organization
        with pytest.raises(PermissionDeniedError, match="may not approve_erasure"):
            requests.approve(erasure, operator=operator)
        with pytest.raises(PermissionDeniedError, match="may not process_requests"):
            requests.reject(erasure, "no", operator=operator)
        with pytest.raises(PermissionDeniedError, match="may not process_requests"):
            requests.extend(erasure, "busy", operator=operator)
    with platform.db.session() as session:
        assert session.get(DataSubjectRequest, uuid.UUID(erasure)).status.value == "identity_verified"
    approved = requests.approve(erasure, operator="dpo@far.test")
    assert approved["steps"]["approved"]["by"] == _ref(platform, "dpo@far.test")

    access = requests.submit(type="access", email=subject.email).request["id"]
    processor = RequestProcessor(platform)
    with pytest.raises(PermissionDeniedError, match="may not process_requests"):
        processor.process(access, operator="reader@acme.test")
    # An officer works their own organization's queue: the other organization's erasure stays.
    done = processor.process_all(operator="dpo@acme.test")
    assert [r["id"] for r in done] == [access] and done[0]["status"] == "completed"
    with platform.db.session() as session:
        assert session.get(DataSubjectRequest, uuid.UUID(erasure)).status.value == "approved"
        completed = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "dsar.completed",
                                                                AuditEntry.target == access))
    assert completed.actor == _ref(platform, "dpo@acme.test")

    token = done[0]["receipt"]["export"]["token"]
    exports = AccessExports(platform)
    with pytest.raises(PermissionDeniedError, match="may not export_subject_data"):
        exports.download(token, tmp_path / "reader", operator="reader@acme.test")
    assert not (tmp_path / "reader").exists(), "refused before anything is written"
    assert exports.download(token, tmp_path / "subject", operator=subject.email).stat().st_size > 0
    assert exports.download(token, tmp_path / "dpo", operator="dpo@acme.test").stat().st_size > 0
    with platform.db.session() as session:
        downloads = session.scalars(sa.select(AuditEntry.actor).where(AuditEntry.action == "export.downloaded")
                                    .order_by(AuditEntry.seq)).all()
    assert downloads == [_ref(platform, subject.email), _ref(platform, "dpo@acme.test")]


def test_retention_changes_need_the_permission_and_are_audited_once(platform: Platform) -> None:
    tenants = _tenants(platform)
    for role in ("viewer", "creator", "analyst", "privacy_officer"):
        with pytest.raises(PermissionDeniedError, match="may not change_retention"):
            set_policy(platform, "analytics", 60, operator=Tenants.email(role), organization_id=tenants.home)
    with platform.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(RetentionPolicy)) == 0
    admin = Tenants.email("admin")
    first = set_policy(platform, "analytics", 60, operator=admin, organization_id=tenants.away)
    assert first["changed"] and first["retain_days"] == 60 and first["source"] == "organization override"
    assert not set_policy(platform, "analytics", 60, operator=admin, organization_id=tenants.away)["changed"]
    tier = set_policy(platform, "audit_log", 400, operator=admin, tier="enterprise")
    assert tier["source"] == "tier override" and tier["previous"] is None
    with pytest.raises(InvalidInputError, match="positive"):
        set_policy(platform, "analytics", 0, operator=admin)
    with platform.db.session() as session:
        changes = session.execute(sa.select(AuditEntry.actor, AuditEntry.organization_id, AuditEntry.target)
                                  .where(AuditEntry.action == "retention.changed").order_by(AuditEntry.seq)).all()
    assert [tuple(c) for c in changes] == [(_ref(platform, admin), tenants.away, "analytics"),
                                           (_ref(platform, admin), None, "audit_log")]


def test_analytics_exports_stay_within_the_analysts_organization(platform: Platform, tmp_path: Path) -> None:
    mine = plant(platform, "mine")
    plant(platform, "theirs", org_slug="theirs")
    with platform.db.session() as session:
        add_user(session, email="numbers@acme.test", name="Numbers", organization_id=mine.organization_id,
                 role="analyst")
        theirs = ensure_organization(session, name="Acme", slug="theirs").id
    today = datetime.now(UTC).date()
    for scope in (None, theirs):
        with pytest.raises(PermissionDeniedError, match="may not export_analytics"):
            export_analytics(platform, "json", tmp_path / "denied.json", date_from=today, date_to=today,
                             operator="numbers@acme.test", organization_id=scope)
    assert not (tmp_path / "denied.json").exists()
    own = export_analytics(platform, "json", tmp_path / "own.json", date_from=today, date_to=today, k=2,
                           operator="numbers@acme.test", organization_id=mine.organization_id)
    everyone = export_analytics(platform, "json", tmp_path / "all.json", date_from=today, date_to=today, k=2,
                                operator=system_principal("dagster"))
    assert own["organization_id"] == str(mine.organization_id)
    assert (own["events"], everyone["events"]) == (1, 2), "the organization filter keeps the other tenant out"


def test_key_rotation_is_for_admins_and_audited_with_the_operator(platform: Platform) -> None:
    _tenants(platform)
    keys = KeyStore(platform.settings.keys_dir)
    keys.data_key("someone")
    before = keys.master_key_id()
    with pytest.raises(PermissionDeniedError, match="may not rotate_keys platform-wide"):
        rotate_master_key(platform, operator=Tenants.email("privacy_officer"))
    assert keys.master_key_id() == before, "refused before any key is touched"
    report = rotate_master_key(platform, operator=Tenants.email("admin"))
    assert report["old_master_key_id"] == before != keys.master_key_id()
    with platform.db.session() as session:
        rotated = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "keys.rotated"))
    assert rotated.actor == _ref(platform, Tenants.email("admin"))


def test_backups_and_restores_follow_roles(tmp_path: Path) -> None:
    from encaptio_data.bootstrap import initialize
    from encaptio_data.settings import get_settings

    platform = Platform(get_settings(data_dir=tmp_path / "backups"))
    initialize(platform)
    _tenants(platform)
    admin = Tenants.email("admin")
    with pytest.raises(PermissionDeniedError, match="may not run_backup"):
        bk.run_backup(platform, "full", operator=Tenants.email("creator"))
    assert bk.list_backups(platform) == []
    backup = bk.run_backup(platform, "full", operator=admin)
    with pytest.raises(PermissionDeniedError, match="may not restore_backup"):
        bk.restore(platform, datetime.now(UTC), tmp_path / "denied.sqlite3", operator=Tenants.email("viewer"))
    assert not (tmp_path / "denied.sqlite3").exists()
    restored = bk.restore(platform, datetime.now(UTC), tmp_path / "copy.sqlite3", operator=admin)
    assert restored["backup_id"] == backup["backup_id"]
    with platform.db.session() as session:
        actors = dict(session.execute(sa.select(AuditEntry.action, AuditEntry.actor)
                                      .where(AuditEntry.action.in_(["backup.completed", "backup.restored"]))).all())
    assert actors == {"backup.completed": _ref(platform, admin), "backup.restored": _ref(platform, admin)}

    # The database that holds the roles is unreadable: only the documented disaster path goes on.
    ledger = bk.export_ledger(platform)
    platform.db.dispose()
    live = bk.sqlite_database_path(platform.db)
    live.write_bytes(b"not a database any more")
    for suffix in ("-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    with pytest.raises(bk.BackupError, match="cannot check the operator's role"):
        bk.restore(platform, datetime.now(UTC), "live", operator=admin)
    result = bk.restore(platform, datetime.now(UTC), "live", operator=admin, ledger=ledger)
    assert result["target"] == "live"
    with platform.db.session() as session:
        last = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).one()
    assert (last.action, last.actor) == ("backup.restored", _ref(platform, admin) + ":break-glass")
    platform.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Through `main`, the `encaptio` console script's entry point, so the exit code and the error line
    are the ones operators get."""
    return subprocess.run([sys.executable, "-c", "import sys; from encaptio_data.cli import main; "
                           "sys.argv[0] = 'encaptio'; main()", *args], capture_output=True, text=True, timeout=600)


def test_the_cli_acts_as_the_named_operator_and_refuses_a_viewer() -> None:
    platform = Platform()
    from encaptio_data.bootstrap import initialize

    initialize(platform)
    subject = plant(platform, "cli")
    with platform.db.session() as session:
        add_user(session, email="viewer@acme.test", name="Viewer", organization_id=subject.organization_id,
                 role="viewer")
        add_user(session, email="root@acme.test", name="Root", organization_id=subject.organization_id,
                 role="admin")
    request_id = Requests(platform).submit(type="erasure", email=subject.email).request["id"]
    platform.close()

    approve = _cli("dsar", "approve", request_id, "--as", "viewer@acme.test")
    assert approve.returncode == 1 and approve.stdout == ""
    assert approve.stderr.strip().count("\n") == 0
    assert "permission denied: viewer@acme.test (viewer of organization" in approve.stderr
    assert "may not approve_erasure" in approve.stderr

    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    restore = _cli("backup", "restore", "--at", at, "--to", "live", "--as", "viewer@acme.test")
    assert restore.returncode == 1 and restore.stderr.strip().count("\n") == 0
    assert "may not restore_backup platform-wide" in restore.stderr

    ran = _cli("backup", "run", "--as", "root@acme.test", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "succeeded"

    with Platform() as platform:
        entries = _denials(platform)
        viewer = _ref(platform, "viewer@acme.test")
        assert [(e.actor, e.details["permission"]) for e in entries] == [
            (viewer, "approve_erasure"), (viewer, "restore_backup")]
        assert entries[0].organization_id == subject.organization_id and entries[1].organization_id is None
        with platform.db.session() as session:
            completed = session.scalar(sa.select(AuditEntry.actor).where(AuditEntry.action == "backup.completed"))
            status = session.get(DataSubjectRequest, uuid.UUID(request_id)).status.value
        assert completed == _ref(platform, "root@acme.test")
        assert status == "identity_verified", "the refused approval changed nothing"
