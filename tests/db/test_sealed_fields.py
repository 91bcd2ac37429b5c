"""Event free text and interaction clients are sealed field by field, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from encaptio_data.db import migrate, sealing
from encaptio_data.db.enums import EventType
from encaptio_data.db.models import Capsule, Interaction, InteractionEvent, Organization, User, utcnow
from encaptio_data.db.session import Database
from encaptio_data.errors import IntegrityError


def _world(database: Database, *, signed_in: bool = True) -> tuple[uuid.UUID | None, uuid.UUID, uuid.UUID]:
    with database.session() as session:
        org = Organization(name="Acme", slug=f"acme-{uuid.uuid4().hex[:6]}")
        session.add(org)
        session.flush()
        owner = User(organization_id=org.id, email=f"o{uuid.uuid4().hex[:6]}@example.com", name="Owner")
        session.add(owner)
        session.flush()
        capsule = Capsule(organization_id=org.id, owner_id=owner.id, title="Capsule")
        session.add(capsule)
        session.flush()
        user_id = owner.id if signed_in else None
        interaction = Interaction(capsule_id=capsule.id, user_id=user_id, session_id="s1", started_at=utcnow(),
                                  client={"user_agent": "Firefox/140", "ip": "203.0.113.9"})
        session.add(interaction)
        session.flush()
        return user_id, capsule.id, interaction.id


def _event(database: Database, user_id: uuid.UUID | None, capsule_id: uuid.UUID, interaction_id: uuid.UUID,
           payload: object, event_type: EventType = EventType.SEARCH) -> uuid.UUID:
    with database.session() as session:
        event = InteractionEvent(interaction_id=interaction_id, capsule_id=capsule_id, user_id=user_id,
                                 session_id="s1", event_type=event_type, payload=payload, occurred_at=utcnow())
        session.add(event)
        session.flush()
        return event.id


def _stored(database: Database, table: str, column: str, row_id: uuid.UUID) -> object:
    with database.engine.connect() as conn:
        raw = conn.execute(sa.text(f"SELECT {column} FROM {table} WHERE id = :id"),
                           {"id": row_id.hex if database.dialect == "sqlite" else row_id}).scalar_one()
    return json.loads(raw) if isinstance(raw, str) else raw


def test_a_signed_in_users_query_is_sealed_beside_its_blind_index(database: Database) -> None:
    user_id, capsule_id, interaction_id = _world(database)
    event_id = _event(database, user_id, capsule_id, interaction_id, {"query": "Ada's  Tax Return", "result_count": 4})
    stored = _stored(database, "interaction_events", "payload", event_id)
    assert sealing.is_sealed(stored["query"]) and "Tax" not in stored["query"]
    assert stored["result_count"] == 4, "fields that are not free text stay readable in SQL"
    index = sealing.text_indexer(sealing.keys_of(database.engine))
    assert stored["query_index"] == index("ada's tax return") == index("  ADA'S TAX\tRETURN ")
    with database.session() as session:
        # The model reads what the writer gave, without the storage-only index.
        assert session.get(InteractionEvent, event_id).payload == {"query": "Ada's  Tax Return", "result_count": 4}
        assert session.execute(sa.select(InteractionEvent.payload)).scalar_one()["query"] == "Ada's  Tax Return"


def test_every_field_of_a_signed_in_client_is_sealed(database: Database) -> None:
    _, _, interaction_id = _world(database)
    stored = _stored(database, "interactions", "client", interaction_id)
    assert set(stored) == {"user_agent", "ip"} and all(sealing.is_sealed(v) for v in stored.values())
    with database.session() as session:
        assert session.get(Interaction, interaction_id).client == {"user_agent": "Firefox/140", "ip": "203.0.113.9"}


def test_an_anonymous_sessions_text_stays_plain_with_its_index(database: Database) -> None:
    # No subject to erase it for: raw events of anonymous sessions live 90 days, then go.
    user_id, capsule_id, interaction_id = _world(database, signed_in=False)
    event_id = _event(database, user_id, capsule_id, interaction_id, {"query": "opening hours"})
    stored = _stored(database, "interaction_events", "payload", event_id)
    assert stored["query"] == "opening hours" and len(stored["query_index"]) == 64
    assert _stored(database, "interactions", "client", interaction_id)["ip"] == "203.0.113.9"


def test_a_query_that_is_not_text_is_left_for_the_quarantine(database: Database) -> None:
    user_id, capsule_id, interaction_id = _world(database)
    event_id = _event(database, user_id, capsule_id, interaction_id, {"query": 42})
    assert _stored(database, "interaction_events", "payload", event_id) == {"query": 42}
    not_an_object = _event(database, user_id, capsule_id, interaction_id, ["a", "list"], EventType.VIEW)
    assert _stored(database, "interaction_events", "payload", not_an_object) == ["a", "list"]


def test_bulk_inserts_seal_events_and_updates_seal_again(database: Database) -> None:
    user_id, capsule_id, interaction_id = _world(database)
    event_id = uuid.uuid4()
    with database.session() as session:
        sealing.insert_rows(session, InteractionEvent, [{
            "id": event_id, "interaction_id": interaction_id, "capsule_id": capsule_id, "user_id": user_id,
            "session_id": "s1", "event_type": EventType.CHAT_TURN, "payload": {"question": "Is my loan approved?"},
            "occurred_at": utcnow()}])
    assert sealing.is_sealed(_stored(database, "interaction_events", "payload", event_id)["question"])
    with database.session() as session:
        event = session.get(InteractionEvent, event_id)
        event.payload = {"question": "Is my mortgage approved?"}
    stored = _stored(database, "interaction_events", "payload", event_id)
    assert sealing.is_sealed(stored["question"])
    assert stored["question_index"] == sealing.text_indexer(sealing.keys_of(database.engine))("is my mortgage approved?")


def test_destroying_the_key_erases_the_text_in_every_copy(database: Database) -> None:
    user_id, capsule_id, interaction_id = _world(database)
    event_id = _event(database, user_id, capsule_id, interaction_id, {"query": "my diagnosis", "result_count": 1})
    sealing.keys_of(database.engine).destroy_data_key(str(user_id))
    with database.session() as session:
        assert session.get(InteractionEvent, event_id).payload == {"query": sealing.ERASED, "result_count": 1}
        assert session.get(Interaction, interaction_id).client == {"user_agent": sealing.ERASED,
                                                                  "ip": sealing.ERASED}


def test_a_sealed_field_moved_to_another_event_fails_authentication(database: Database) -> None:
    user_id, capsule_id, interaction_id = _world(database)
    first = _event(database, user_id, capsule_id, interaction_id, {"query": "first"})
    stored = _stored(database, "interaction_events", "payload", first)
    moved = {"question": stored["query"]}  # the query's ciphertext passed off as a question
    with database.engine.begin() as conn:
        conn.execute(sa.update(InteractionEvent.__table__).where(InteractionEvent.__table__.c.id == first)
                     .values(payload=sa.type_coerce(moved, sa.JSON())))
    with database.session() as session, pytest.raises(IntegrityError, match="payload.question"):
        session.get(InteractionEvent, first)


def test_migration_0006_seals_existing_events_and_the_downgrade_opens_them(empty_database: Database) -> None:
    database = empty_database
    migrate.upgrade(database, "0005")
    user_id, capsule_id, interaction_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    with database.session() as session:
        org = Organization(name="Acme", slug="acme")
        session.add(org)
        session.flush()
        session.add(User(id=user_id, organization_id=org.id, email="ada@example.com", name="Ada"))
        session.flush()
        session.add(Capsule(id=capsule_id, organization_id=org.id, owner_id=user_id, title="C"))
    events = sa.table("interaction_events", *(sa.column(c) for c in (
        "id", "interaction_id", "capsule_id", "user_id", "session_id", "event_type", "occurred_at")),
        sa.column("payload", sa.JSON()))
    interactions = sa.table("interactions", sa.column("id"), sa.column("capsule_id"), sa.column("user_id"),
                            sa.column("session_id"), sa.column("started_at"), sa.column("client", sa.JSON()))
    ids = [uuid.uuid4() for _ in range(3)]
    key = (lambda value: value.hex) if database.dialect == "sqlite" else (lambda value: value)
    with database.engine.begin() as conn:
        conn.execute(interactions.insert().values(id=key(interaction_id), capsule_id=key(capsule_id),
                                                  user_id=key(user_id), session_id="s", started_at=now,
                                                  client={"ip": "203.0.113.9"}))
        for event_id, user, payload in ((ids[0], key(user_id), {"query": "Tax  forms", "result_count": 2}),
                                        (ids[1], None, {"query": "opening hours"}),
                                        (ids[2], key(user_id), {"seconds": 12})):
            conn.execute(events.insert().values(id=key(event_id), interaction_id=key(interaction_id),
                                                capsule_id=key(capsule_id), user_id=user, session_id="s",
                                                event_type="search", payload=payload, occurred_at=now))
    migrate.upgrade(database)
    index = sealing.text_indexer(sealing.keys_of(database.engine))
    signed_in = _stored(database, "interaction_events", "payload", ids[0])
    assert sealing.is_sealed(signed_in["query"]) and signed_in["query_index"] == index("tax forms")
    assert _stored(database, "interaction_events", "payload", ids[1]) == {
        "query": "opening hours", "query_index": index("opening hours")}
    assert _stored(database, "interaction_events", "payload", ids[2]) == {"seconds": 12}
    assert sealing.is_sealed(_stored(database, "interactions", "client", interaction_id)["ip"])
    with database.session() as session:
        assert session.get(InteractionEvent, ids[0]).payload == {"query": "Tax  forms", "result_count": 2}
    migrate.upgrade(database)  # idempotent

    migrate.downgrade(database, "0005")
    assert _stored(database, "interaction_events", "payload", ids[0]) == {"query": "Tax  forms", "result_count": 2}
    assert _stored(database, "interaction_events", "payload", ids[1]) == {"query": "opening hours"}
    assert _stored(database, "interactions", "client", interaction_id) == {"ip": "203.0.113.9"}
    migrate.upgrade(database)
    assert sealing.is_sealed(_stored(database, "interaction_events", "payload", ids[0])["query"])
