"""Constraints hold on both engines: the database itself refuses bad rows, not only our code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from encaptio_data.db.enums import CapsuleStatus, ContentType, UserRole
from encaptio_data.db.models import Capsule, Content, Organization, User, personal_columns
from encaptio_data.db.session import Database


def _org_and_user(database: Database) -> tuple[uuid.UUID, uuid.UUID]:
    with database.session() as session:
        org = Organization(name="Acme", slug=f"acme-{uuid.uuid4().hex[:6]}")
        session.add(org)
        session.flush()
        user = User(organization_id=org.id, email="ada@example.com", name="Ada", role=UserRole.CREATOR)
        session.add(user)
        session.flush()
        return org.id, user.id


def _refused(database: Database, *rows: object) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        with database.session() as session:
            session.add_all(rows)
            session.flush()


def test_timestamps_come_back_aware_utc(database: Database) -> None:
    org_id, _ = _org_and_user(database)
    with database.session() as session:
        org = session.get(Organization, org_id)
        assert org.created_at.tzinfo is not None and org.created_at.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(database: Database) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        with database.session() as session:
            session.add(Organization(name="N", slug="naive", created_at=datetime(2026, 1, 1)))
            session.flush()


def test_email_unique_per_organization_but_not_across(database: Database) -> None:
    org_id, _ = _org_and_user(database)
    _refused(database, User(organization_id=org_id, email="ada@example.com", name="Other Ada"))
    other_org, _ = _org_and_user(database)
    assert other_org != org_id


def test_foreign_keys_are_enforced(database: Database) -> None:
    _refused(database, User(organization_id=uuid.uuid4(), email="ghost@example.com", name="Ghost"))


def test_enum_check_constraints_are_enforced_by_the_engine(database: Database) -> None:
    org_id, _ = _org_and_user(database)
    with pytest.raises(sa.exc.IntegrityError):
        with database.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO users (id, organization_id, email, name, role, metadata, created_at, updated_at) "
                "VALUES (:id, :org, 'x@example.com', 'X', 'overlord', '{}', :now, :now)"
            ), {"id": uuid.uuid4().hex if database.dialect == "sqlite" else str(uuid.uuid4()),
                "org": org_id.hex if database.dialect == "sqlite" else str(org_id), "now": datetime.now(UTC)})


@pytest.mark.parametrize("bad", [
    {"sha256": "abc"},
    {"size_bytes": -1},
])
def test_content_checks(database: Database, bad: dict[str, object]) -> None:
    org_id, user_id = _org_and_user(database)
    capsule = Capsule(organization_id=org_id, owner_id=user_id, title="T")
    values = {"capsule_id": capsule.id, "organization_id": org_id, "type": ContentType.TEXT, "object_key": "k",
              "object_version": "v", "sha256": "0" * 64, "size_bytes": 1, "mime_type": "text/plain"} | bad
    with database.session() as session:
        session.add(capsule)
    _refused(database, Content(**values))


def test_published_capsule_needs_a_publication_time(database: Database) -> None:
    org_id, user_id = _org_and_user(database)
    _refused(database, Capsule(organization_id=org_id, owner_id=user_id, title="T", status=CapsuleStatus.PUBLISHED))


def test_deleting_an_organization_cascades(database: Database) -> None:
    org_id, _ = _org_and_user(database)
    with database.session() as session:
        session.execute(sa.delete(Organization).where(Organization.id == org_id))
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(User).where(User.organization_id == org_id)) == 0


def test_personal_columns_are_declared_in_the_model() -> None:
    declared = personal_columns()
    assert declared["users"] == ["email", "name", "metadata"]
    assert "payload" in declared["interaction_events"]
    assert "capsules" not in declared
