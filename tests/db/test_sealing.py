"""Personal columns are sealed with their subject's key, on SQLite and PostgreSQL (db/sealing.py)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from encaptio_data.accounts import email_is
from encaptio_data.db import migrate, sealing
from encaptio_data.db.enums import RequestType
from encaptio_data.db.models import DataSubjectRequest, Organization, User, utcnow
from encaptio_data.db.session import Database
from encaptio_data.errors import IntegrityError


def _user(database: Database, email: str = "ada@example.com", **values: object) -> tuple[uuid.UUID, uuid.UUID]:
    with database.session() as session:
        org = Organization(name="Acme", slug=f"acme-{uuid.uuid4().hex[:6]}")
        session.add(org)
        session.flush()
        user = User(organization_id=org.id, email=email, name="Ada Lovelace", metadata_={"city": "London"}, **values)
        session.add(user)
        session.flush()
        return org.id, user.id


def _raw(database: Database, sql: str, **params: object) -> list[tuple]:
    with database.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def test_the_database_holds_only_ciphertext_and_the_model_reads_plaintext(database: Database) -> None:
    _, user_id = _user(database)
    [(email, name, metadata, index)] = _raw(database, "SELECT email, name, metadata, email_index FROM users")
    for stored in (email, name, metadata):
        assert stored.startswith(sealing.SEALED_PREFIX) and str(user_id) in stored
    assert "ada@example.com" not in email and "Lovelace" not in name and "London" not in metadata
    # Keyed: not the plain digest a dictionary of addresses could reverse.
    assert len(index) == 64 and index != hashlib.sha256(b"ada@example.com").hexdigest()
    with database.session() as session:
        user = session.get(User, user_id)
        assert (user.email, user.name, user.metadata_) == ("ada@example.com", "Ada Lovelace", {"city": "London"})
        # Column selects and joins go through the column type too, not only ORM objects.
        assert session.execute(sa.select(User.email, User.name)).one() == ("ada@example.com", "Ada Lovelace")


def test_the_object_keeps_its_plaintext_after_a_flush_and_updates_are_sealed_again(database: Database) -> None:
    org_id, user_id = _user(database)
    with database.session() as session:
        user = session.get(User, user_id)
        user.name = "Augusta Ada King"
        session.flush()
        assert user.name == "Augusta Ada King" and user.email == "ada@example.com"
    [(name,)] = _raw(database, "SELECT name FROM users")
    assert sealing.is_sealed(name) and "Augusta" not in name
    with database.session() as session:
        assert session.get(User, user_id).name == "Augusta Ada King"


def test_lookups_go_through_the_blind_index_which_also_keeps_emails_unique(database: Database) -> None:
    org_id, user_id = _user(database)
    with database.session() as session:
        assert session.scalar(sa.select(User.id).where(email_is(session, " ADA@example.com "))) == user_id
        assert session.scalar(sa.select(User.id).where(email_is(session, "bob@example.com"))) is None
    with pytest.raises(sa.exc.IntegrityError):
        with database.session() as session:
            session.add(User(organization_id=org_id, email="ada@example.com", name="Another Ada"))
            session.flush()
    # Changing the email moves the index with it.
    with database.session() as session:
        session.get(User, user_id).email = "ada@analytical.example"
    with database.session() as session:
        assert session.scalar(sa.select(User.id).where(email_is(session, "ada@analytical.example"))) == user_id
        assert session.scalar(sa.select(User.id).where(email_is(session, "ada@example.com"))) is None


def test_a_plaintext_write_or_comparison_is_refused_with_one_line(database: Database) -> None:
    org_id, _ = _user(database)
    with pytest.raises(sa.exc.StatementError, match="users.email would be written unsealed"):
        with database.session() as session:
            session.execute(sa.insert(User.__table__).values(id=uuid.uuid4(), organization_id=org_id,
                                                             email="bob@example.com", name="Bob", role="viewer",
                                                             metadata="{}", email_index="x" * 64,
                                                             created_at=utcnow(), updated_at=utcnow()))
    with pytest.raises(sa.exc.StatementError, match="unsealed"):
        with database.session() as session:
            session.execute(sa.select(User.id).where(User.email == "ada@example.com"))
    assert _raw(database, "SELECT count(*) FROM users") == [(1,)]


def test_bulk_inserts_are_sealed_by_sealed_rows(database: Database) -> None:
    with database.session() as session:
        org = Organization(name="Bulk", slug="bulk")
        session.add(org)
        session.flush()
        rows = [{"id": uuid.uuid4(), "organization_id": org.id, "email": f"u{i}@bulk.example", "name": f"User {i}",
                 "metadata_": {"n": i}, "created_at": utcnow(), "updated_at": utcnow()} for i in range(50)]
        sealing.insert_rows(session, User, rows)
    assert all(sealing.is_sealed(v) for (v,) in _raw(database, "SELECT email FROM users"))
    with database.session() as session:
        found = session.scalar(sa.select(User).where(email_is(session, "u7@bulk.example")))
        assert (found.name, found.metadata_) == ("User 7", {"n": 7})


def test_destroying_the_key_makes_every_copy_unreadable(database: Database) -> None:
    _, user_id = _user(database)
    copy = _raw(database, "SELECT email, name, metadata FROM users")
    assert database.keys.destroy_data_key(str(user_id))
    with database.session() as session:
        user = session.get(User, user_id)
        assert (user.email, user.name, user.metadata_) == (sealing.ERASED, sealing.ERASED, {})
    # The values taken before (as a backup holds them) cannot be opened by anyone with the key store.
    for field, value in zip(("users.email", "users.name", "users.metadata"), copy[0], strict=True):
        with pytest.raises(Exception, match="destroyed"):
            sealing.open_sealed(database.keys, field, value)


def test_a_value_moved_to_another_column_or_subject_fails_authentication(database: Database) -> None:
    _, ada = _user(database)
    _, bob = _user(database, email="bob@example.com")
    [(ada_email,)] = _raw(database, "SELECT email FROM users WHERE id = :id", id=_id_param(database, ada))
    with pytest.raises(IntegrityError, match="failed authentication"):
        sealing.open_sealed(database.keys, "users.name", ada_email)
    forged = ada_email.replace(str(ada), str(bob))
    with pytest.raises(IntegrityError, match="failed authentication"):
        sealing.open_sealed(database.keys, "users.email", forged)


def _id_param(database: Database, value: uuid.UUID) -> str:
    return str(value) if database.dialect == "postgresql" else value.hex


def test_request_emails_and_changes_are_sealed_for_the_requester(database: Database) -> None:
    org_id, user_id = _user(database)
    with database.session() as session:
        session.add(DataSubjectRequest(organization_id=org_id, user_id=user_id, subject_email="ada@example.com",
                                       subject_hash="h" * 64, type=RequestType.RECTIFICATION,
                                       changes={"name": "Ada King"}, due_at=utcnow() + timedelta(days=30)))
    [(email, changes)] = _raw(database, "SELECT subject_email, changes FROM data_subject_requests")
    assert sealing.is_sealed(email) and sealing.is_sealed(changes) and "King" not in changes
    with database.session() as session:
        request = session.scalar(sa.select(DataSubjectRequest))
        assert (request.subject_email, request.changes) == ("ada@example.com", {"name": "Ada King"})


def test_a_database_without_a_key_store_refuses_personal_columns(database: Database) -> None:
    _user(database)
    keyless = Database(database.url)
    try:
        with pytest.raises(IntegrityError, match="no key store attached"):
            with keyless.session() as session:
                session.scalar(sa.select(User.email))
    finally:
        keyless.dispose()


def test_migration_0005_seals_existing_rows_and_the_downgrade_opens_them(empty_database: Database) -> None:
    database = empty_database
    migrate.upgrade(database, "0004")
    org_id, ada, request_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    # The schema as revision 0004 left it, typed by hand (reflection would not know the UUIDs).
    types = {**dict.fromkeys(("id", "organization_id", "user_id"), sa.Uuid()),
             **dict.fromkeys(("created_at", "updated_at", "received_at", "due_at", "recorded_at"),
                             sa.DateTime(timezone=True)),
             **dict.fromkeys(("metadata", "changes", "steps"), sa.JSON())}

    def table(name: str, *columns: str) -> sa.TableClause:
        return sa.table(name, *(sa.column(c, types.get(c)) for c in columns))

    organizations = table("organizations", "id", "name", "slug", "tier", "created_at")
    users = table("users", "id", "organization_id", "email", "name", "role", "metadata", "created_at", "updated_at")
    requests = table("data_subject_requests", "id", "organization_id", "user_id", "subject_email", "subject_hash",
                     "type", "status", "jurisdiction", "source", "changes", "received_at", "due_at", "steps")
    consents = table("consents", "id", "user_id", "purpose", "granted", "version", "source", "recorded_at")
    with database.engine.begin() as conn:
        conn.execute(organizations.insert().values(id=org_id, name="Acme", slug="acme", tier="standard",
                                                   created_at=now))
        conn.execute(users.insert().values(id=ada, organization_id=org_id, email="ada@example.com", name="Ada",
                                           role="viewer", metadata={"city": "London"}, created_at=now,
                                           updated_at=now))
        conn.execute(requests.insert().values(id=request_id, organization_id=org_id, user_id=ada,
                                              subject_email="ada@example.com", subject_hash="h" * 64,
                                              type="access", status="received", jurisdiction="gdpr", source="cli",
                                              changes={"purpose": "analytics"}, received_at=now,
                                              due_at=now + timedelta(days=30),
                                              steps={}))
        conn.execute(consents.insert().values(id=uuid.uuid4(), user_id=ada, purpose="analytics", granted=True,
                                              version="1", source="cli", recorded_at=now))
    migrate.upgrade(database)
    # SQLite rebuilds users by copy, drop and rename: the drop must not cascade into child tables.
    assert _raw(database, "SELECT count(*) FROM consents") == [(1,)]
    assert _raw(database, "SELECT count(*) FROM data_subject_requests WHERE user_id IS NOT NULL") == [(1,)]
    [(email, name, stored_metadata)] = _raw(database, "SELECT email, name, metadata FROM users")
    assert all(sealing.is_sealed(v) for v in (email, name, stored_metadata))
    [(subject_email, changes)] = _raw(database, "SELECT subject_email, changes FROM data_subject_requests")
    assert sealing.is_sealed(subject_email) and sealing.is_sealed(changes)
    with database.session() as session:
        user = session.scalar(sa.select(User).where(email_is(session, "ada@example.com")))
        assert (user.id, user.name, user.metadata_) == (ada, "Ada", {"city": "London"})
        assert session.get(DataSubjectRequest, request_id).changes == {"purpose": "analytics"}
    migrate.upgrade(database)  # idempotent: nothing left to seal

    migrate.downgrade(database, "0004")
    assert _raw(database, "SELECT email, name FROM users") == [("ada@example.com", "Ada")]
    assert _raw(database, "SELECT subject_email FROM data_subject_requests") == [("ada@example.com",)]
