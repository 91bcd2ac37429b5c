"""The permissions enforced in the domain API beyond search, requests, backups and exports: ingesting
content, managing users, the retention purge, and deleting or restoring a capsule. On both profiles,
each refusal is audited and one line, leaves nothing behind, and an allowed role passes; the CLI
passes `--as` through to the same checks."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from encaptio_data import authz
from encaptio_data.accounts import add_user, create_user, email_is, ensure_organization, set_role
from encaptio_data.authz import actor_ref, system_principal
from encaptio_data.cli import app
from encaptio_data.content.ingest import ingest_files
from encaptio_data.db.models import AuditEntry, Capsule, User, utcnow
from encaptio_data.errors import InvalidInputError, PermissionDeniedError
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle.purge import purge
from encaptio_data.lifecycle.retention import delete_capsule, restore_capsule
from encaptio_data.platform import Platform

ROLES = ("viewer", "creator", "analyst", "privacy_officer", "admin")
runner = CliRunner()


def _email(role: str, slug: str = "home") -> str:
    return f"{role.replace('_', '-')}@{slug}.test"


def _world(platform: Platform) -> tuple[uuid.UUID, uuid.UUID]:
    """Every role in `home`, a creator in `away`; returns both organization ids."""
    with platform.db.session() as session:
        home = ensure_organization(session, name="Home", slug="home").id
        away = ensure_organization(session, name="Away", slug="away").id
        for role in ROLES:
            add_user(session, email=_email(role), name=role, organization_id=home, role=role)
        add_user(session, email=_email("creator", "away"), name="Away creator", organization_id=away, role="creator")
    return home, away


def _capsule(platform: Platform, organization_id: uuid.UUID, owner: str) -> uuid.UUID:
    with platform.db.session() as session:
        owner_id = session.scalar(sa.select(User.id).where(email_is(session, owner),
                                                           User.organization_id == organization_id))
        capsule = Capsule(organization_id=organization_id, owner_id=owner_id, title="Field notes")
        session.add(capsule)
        session.flush()
        return capsule.id


def _denials(platform: Platform) -> list[tuple[str, str | None, str]]:
    with platform.db.session() as session:
        entries = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == authz.DENIED_ACTION)
                                  .order_by(AuditEntry.seq)).all()
    return [(e.actor, e.details["permission"], e.details["reason"]) for e in entries]


def _ref(platform: Platform, email: str) -> str:
    return actor_ref(KeyStore(platform.settings.keys_dir), email)


def _refused(call, match: str) -> None:
    with pytest.raises(PermissionDeniedError, match=match) as raised:
        call()
    assert "\n" not in str(raised.value)


def test_ingest_needs_ingest_content_in_the_capsules_organization(platform: Platform, tmp_path: Path) -> None:
    home, away = _world(platform)
    capsule = _capsule(platform, home, _email("creator"))
    note = tmp_path / "note.md"
    note.write_text("# Starter\n\nFlour and water, fed daily.")
    for role in ("viewer", "analyst"):
        _refused(lambda: ingest_files(platform, [note], capsule_id=str(capsule), operator=_email(role)),
                 f"may not ingest_content in organization {home}")
        _refused(lambda: ingest_files(platform, [note], new_capsule_title="Mine", owner_email=_email("creator"),
                                      organization_id=str(home), operator=_email(role)), "may not ingest_content")
    _refused(lambda: ingest_files(platform, [note], capsule_id=str(capsule), operator=_email("creator", "away")),
             f"may not ingest_content in organization {home}")
    assert list(platform.objects.list_versions("uploads/")) == [], "refused before any upload"
    with platform.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Capsule)) == 1, "no capsule created"
    assert [d[1] for d in _denials(platform)] == ["ingest_content"] * 5

    report = ingest_files(platform, [note], capsule_id=str(capsule), operator=_email("creator")).as_dict()
    assert report["uploaded"] == 1
    created = ingest_files(platform, [note], new_capsule_title="Admin's", owner_email=_email("creator"),
                           organization_id=str(home), operator=_email("admin")).as_dict()
    assert created["created_capsule"] and created["uploaded"] == 1
    with platform.db.session() as session:
        actors = session.scalars(sa.select(AuditEntry.actor).where(AuditEntry.action == "content.ingested")
                                 .order_by(AuditEntry.seq)).all()
    assert actors == [_ref(platform, _email("creator")), _ref(platform, _email("admin"))]


def test_users_are_managed_by_admins_only_and_the_first_admin_bootstraps(platform: Platform) -> None:
    with platform.db.session() as session:
        home = ensure_organization(session, name="Home", slug="home").id
    _refused(lambda: create_user(platform, email="v@home.test", name="V", organization_id=home, role="viewer",
                                 operator=None), "needs an operator")
    first = create_user(platform, email="root@home.test", name="Root", organization_id=home, role="admin",
                        operator=None)
    assert first.created and first.role == "admin"
    _refused(lambda: create_user(platform, email="second@home.test", name="S", organization_id=home, role="admin",
                                 operator=None), "needs an operator")
    _world(platform)
    for role in ("viewer", "analyst", "creator", "privacy_officer"):
        _refused(lambda: create_user(platform, email="new@home.test", name="New", organization_id=home,
                                     operator=_email(role)), f"may not manage_users in organization {home}")
        _refused(lambda: set_role(platform, email=_email("viewer"), organization_id=home, role="admin",
                                  operator=_email(role)), "may not manage_users")
    with platform.db.session() as session:
        assert session.scalar(sa.select(User.id).where(email_is(session, "new@home.test"))) is None
        assert session.scalar(sa.select(User.role).where(email_is(session, _email("viewer")))).value == "viewer"

    added = create_user(platform, email="new@home.test", name="New", organization_id=home, role="analyst",
                        operator=_email("admin"))
    assert added.created and not create_user(platform, email="new@home.test", name="New", organization_id=home,
                                             operator=_email("admin")).created
    promoted = set_role(platform, email=_email("viewer"), organization_id=home, role="creator",
                        operator="root@home.test")
    assert promoted == {**promoted, "role": "creator", "previous": "viewer", "changed": True}
    assert not set_role(platform, email=_email("viewer"), organization_id=home, role="creator",
                        operator="root@home.test")["changed"]
    with platform.db.session() as session:
        changes = session.execute(sa.select(AuditEntry.action, AuditEntry.actor).where(
            AuditEntry.action.in_(["user.created", "user.role_changed"])).order_by(AuditEntry.seq)).all()
    assert [tuple(c) for c in changes] == [("user.created", "bootstrap"),
                                           ("user.created", _ref(platform, _email("admin"))),
                                           ("user.role_changed", _ref(platform, "root@home.test"))]


def test_the_last_admin_cannot_be_demoted(platform: Platform) -> None:
    with platform.db.session() as session:
        home = ensure_organization(session, name="Home", slug="home").id
    create_user(platform, email="root@home.test", name="Root", organization_id=home, role="admin", operator=None)
    with pytest.raises(InvalidInputError, match="last admin"):
        set_role(platform, email="root@home.test", organization_id=home, role="viewer", operator="root@home.test")
    create_user(platform, email="two@home.test", name="Two", organization_id=home, role="admin",
                operator="root@home.test")
    assert set_role(platform, email="root@home.test", organization_id=home, role="viewer",
                    operator="two@home.test")["changed"]


def test_the_purge_is_for_admins_and_the_nightly_job(platform: Platform) -> None:
    home, _ = _world(platform)
    capsule = _capsule(platform, home, _email("creator"))
    delete_capsule(platform, capsule, operator=_email("creator"), now=utcnow() - timedelta(days=40))
    for role in ("viewer", "analyst", "creator", "privacy_officer"):
        _refused(lambda: purge(platform, operator=_email(role)), "may not run_purge platform-wide")
    _refused(lambda: purge(platform), "needs an operator")
    with platform.db.session() as session:
        assert session.get(Capsule, capsule) is not None, "refused before anything was purged"
    # A dry run changes nothing, so it needs no permission (the compliance report runs one).
    assert purge(platform, dry_run=True)["classes"]["soft_deleted"]["purged"]["capsules"] == 1
    report = purge(platform, operator=_email("admin"))
    assert report["classes"]["soft_deleted"]["purged"]["capsules"] == 1
    assert purge(platform, operator=system_principal("dagster", run="nightly"))["totals"]["purged"] == 0
    with platform.db.session() as session:
        purged_by = session.scalar(sa.select(AuditEntry.actor).where(AuditEntry.action == "capsule.purged"))
    assert purged_by == _ref(platform, _email("admin"))
    assert [d[1] for d in _denials(platform)] == ["run_purge"] * 4 + [None]


def test_capsules_are_deleted_and_restored_by_their_owner_or_an_admin(platform: Platform) -> None:
    home, _ = _world(platform)
    with platform.db.session() as session:
        add_user(session, email="other-creator@home.test", name="Other", organization_id=home, role="creator")
    capsule = _capsule(platform, home, _email("creator"))
    for operator in (_email("viewer"), _email("analyst"), _email("privacy_officer"), _email("creator", "away")):
        _refused(lambda: delete_capsule(platform, capsule, operator=operator), "may not manage_capsules")
    _refused(lambda: delete_capsule(platform, capsule, operator="other-creator@home.test"),
             "on what another user owns")
    with platform.db.session() as session:
        assert session.get(Capsule, capsule).deleted_at is None, "refused before the delete"

    assert not delete_capsule(platform, capsule, operator=_email("creator"))["already_deleted"]
    for operator in (_email("viewer"), _email("analyst"), "other-creator@home.test"):
        _refused(lambda: restore_capsule(platform, capsule, operator=operator), "may not manage_capsules")
    with platform.db.session() as session:
        assert session.get(Capsule, capsule).deleted_at is not None, "refused before the restore"
    assert restore_capsule(platform, capsule, operator=_email("admin"))["capsule_id"] == str(capsule)
    assert delete_capsule(platform, capsule, operator=_email("admin"))["capsule_id"] == str(capsule)
    assert restore_capsule(platform, capsule, operator=_email("creator"))["capsule_id"] == str(capsule)
    with platform.db.session() as session:
        trail = session.execute(sa.select(AuditEntry.action, AuditEntry.actor).where(
            AuditEntry.target == str(capsule)).order_by(AuditEntry.seq)).all()
    assert [tuple(t) for t in trail] == [
        ("capsule.deleted", _ref(platform, _email("creator"))), ("capsule.restored", _ref(platform, _email("admin"))),
        ("capsule.deleted", _ref(platform, _email("admin"))), ("capsule.restored", _ref(platform, _email("creator")))]
    reasons = [(p, r) for _, p, r in _denials(platform)]
    assert reasons == [("manage_capsules", "not granted")] * 4 + [("manage_capsules", "not the owner")] + [
        ("manage_capsules", "not granted")] * 2 + [("manage_capsules", "not the owner")]


def test_the_cli_passes_the_operator_to_each_check(tmp_path: Path) -> None:
    from encaptio_data.bootstrap import initialize

    platform = Platform()
    initialize(platform)
    home, _ = _world(platform)
    capsule = _capsule(platform, home, _email("creator"))
    note = tmp_path / "note.md"
    note.write_text("# Notes\n\nTelescopes and starters.")

    def cli(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout if result.exit_code == 0 else str(result.exception)

    code, error = cli("ingest", str(note), "--capsule", str(capsule), "--no-run", "--as", _email("viewer"))
    assert code == 1 and "may not ingest_content" in error
    code, out = cli("ingest", str(note), "--capsule", str(capsule), "--no-run", "--as", _email("creator"), "--json")
    assert code == 0 and json.loads(out)["uploaded"] == 1
    code, error = cli("capsule", "delete", str(capsule), "--as", _email("viewer"))
    assert code == 1 and "may not manage_capsules" in error
    code, out = cli("capsule", "delete", str(capsule), "--as", _email("creator"), "--json")
    assert code == 0 and json.loads(out)["capsule_id"] == str(capsule)
    code, error = cli("restore", "capsule", str(capsule), "--no-run", "--as", _email("analyst"))
    assert code == 1 and "may not manage_capsules" in error
    code, out = cli("restore", "capsule", str(capsule), "--no-run", "--as", _email("creator"), "--json")
    assert code == 0 and json.loads(out)["content_restored"] == 0
    code, error = cli("purge", "--as", _email("privacy_officer"))
    assert code == 1 and "may not run_purge" in error
    code, out = cli("purge", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["dry_run"] is True
    code, out = cli("purge", "--as", _email("admin"), "--json")
    assert code == 0 and not json.loads(out)["dry_run"]
    code, error = cli("users", "set-role", "--email", _email("viewer"), "--role", "admin", "--org", str(home),
                      "--as", _email("creator"))
    assert code == 1 and "may not manage_users" in error
    code, out = cli("users", "set-role", "--email", _email("viewer"), "--role", "creator", "--org", str(home),
                    "--as", _email("admin"), "--json")
    assert code == 0 and json.loads(out)["previous"] == "viewer"
    assert [d[1] for d in _denials(platform)] == ["ingest_content", "manage_capsules", "manage_capsules", "run_purge",
                                                  "manage_users"]
    platform.close()
