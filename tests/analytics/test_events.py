"""The event-write path seals what signed-in users type; bad batches write nothing; repairs seal the rest."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest
import sqlalchemy as sa

from encaptio_data.analytics.aggregate import materialize_day
from encaptio_data.analytics.events import record_events, seal_events
from encaptio_data.authz import Grant, Permission, Principal
from encaptio_data.db import sealing
from encaptio_data.db.models import DailyTopQuery, Interaction, InteractionEvent
from encaptio_data.errors import InvalidInputError, PermissionDeniedError
from encaptio_data.platform import Platform
from tests.analytics.world import DAY, NOW, at, build_world

KEYS_ADMIN = Principal("system:test-keys", (Grant(frozenset({Permission.ROTATE_KEYS}), None),), system=True)


def _stored_payloads(platform: Platform) -> list[dict]:
    with platform.db.engine.connect() as conn:
        rows = conn.execute(sa.select(sa.type_coerce(InteractionEvent.__table__.c.payload, sa.JSON()))
                            .order_by(InteractionEvent.__table__.c.occurred_at)).scalars().all()
    return [json.loads(r) if isinstance(r, str) else r for r in rows]


def _search(capsule: uuid.UUID, user: uuid.UUID | None, session: str, when: datetime, query: str,
            **extra: object) -> dict:
    return {"capsule_id": capsule, "user_id": user, "session_id": session, "event_type": "search",
            "occurred_at": when, "payload": {"query": query, "result_count": 2}, **extra}


def test_recorded_events_are_sealed_aggregated_and_idempotent(platform: Platform) -> None:
    world = build_world(platform)
    capsule = world.capsules[0]
    batch = [_search(capsule, world.users[i], f"s{i}", at(DAY, 9, i), "Pension  Forms", id=uuid.uuid4(),
                     client={"user_agent": "Safari"}) for i in range(5)]
    batch.append(_search(capsule, None, "anon", at(DAY, 9, 30), "pension forms", id=uuid.uuid4()))
    first = record_events(platform.db, batch)
    assert first.as_dict() == {"recorded": 6, "already_stored": 0, "sessions_started": 6}
    assert record_events(platform.db, batch).as_dict() == {"recorded": 0, "already_stored": 6, "sessions_started": 0}

    stored = _stored_payloads(platform)
    assert all(sealing.is_sealed(p["query"]) for p in stored[:5]) and stored[5]["query"] == "pension forms"
    assert len({p["query_index"] for p in stored}) == 1, "equal after normalization: one index"
    with platform.db.session() as session:
        clients = session.scalars(sa.select(Interaction.client).where(Interaction.user_id.is_not(None))).all()
    assert clients == [{"user_agent": "Safari"}] * 5

    materialize_day(platform, DAY, now=NOW)
    with platform.db.session() as session:
        assert [(r.query_norm, r.subjects) for r in session.scalars(sa.select(DailyTopQuery))] == [
            ("pension forms", 6)]


@pytest.mark.parametrize(("change", "message"), [
    ({"capsule_id": uuid.uuid4()}, "event 1: unknown capsule"),
    ({"user_id": uuid.uuid4()}, "event 1: unknown user"),
    ({"user_id": "not-a-uuid"}, "event 1: user_id 'not-a-uuid' is not a valid id"),
    ({"event_type": "teleport"}, "event 1: event_type 'teleport' is not one of"),
    ({"occurred_at": datetime(2026, 10, 7, 9)}, "event 1: occurred_at must be a timezone-aware"),
    ({"payload": ["not", "an", "object"]}, "event 1: payload and client must be JSON objects"),
    ({"payload": {"query": 42}}, "event 1: payload.query must be text"),
    ({"session_id": ""}, "event 1: session_id must be text"),
    ({"session_id": "x" * 65}, "event 1: session_id must be text"),
    ({"sql": "'; DROP TABLE interaction_events; --"}, "event 1: unknown field"),
])
def test_a_bad_event_refuses_the_whole_batch_with_one_line(platform: Platform, change: dict, message: str) -> None:
    world = build_world(platform)
    good = _search(world.capsules[0], world.users[0], "s0", at(DAY, 9), "fine")
    with pytest.raises(InvalidInputError, match=message) as refused:
        record_events(platform.db, [good, {**good, "session_id": "s1", **change}])
    assert "\n" not in str(refused.value)
    assert _stored_payloads(platform) == [], "nothing of the batch was written"


def test_the_same_id_twice_in_one_batch_is_refused(platform: Platform) -> None:
    world = build_world(platform)
    event = _search(world.capsules[0], world.users[0], "s0", at(DAY, 9), "twice", id=uuid.uuid4())
    with pytest.raises(InvalidInputError, match="same event id twice"):
        record_events(platform.db, [event, event])


def test_seal_events_repairs_rows_written_around_the_path(platform: Platform) -> None:
    world = build_world(platform)
    user, capsule = world.users[0], world.capsules[0]
    interaction = uuid.uuid4()
    # A service that writes with plain SQL: the text is stored in the clear, without an index.
    table = InteractionEvent.__table__
    with platform.db.engine.begin() as conn:
        conn.execute(sa.insert(Interaction.__table__).values(
            id=interaction, capsule_id=capsule, user_id=user, session_id="raw", started_at=at(DAY, 8),
            client=sa.type_coerce({"ip": "198.51.100.7"}, sa.JSON())))
        conn.execute(sa.insert(table).values(
            id=uuid.uuid4(), interaction_id=interaction, capsule_id=capsule, user_id=user, session_id="raw",
            event_type="chat_turn", occurred_at=at(DAY, 8),
            payload=sa.type_coerce({"question": "Can I see my salary?", "turn": 1}, sa.JSON())))
    assert _stored_payloads(platform)[0]["question"] == "Can I see my salary?"

    with pytest.raises(PermissionDeniedError):
        seal_events(platform, operator=Principal("system:nobody", (), system=True))
    assert seal_events(platform, operator=KEYS_ADMIN) == {"interactions": 1, "interaction_events": 1}
    (payload,) = _stored_payloads(platform)
    assert sealing.is_sealed(payload["question"]) and len(payload["question_index"]) == 64
    assert seal_events(platform, operator=KEYS_ADMIN) == {"interactions": 0, "interaction_events": 0}
    with platform.db.session() as session:
        assert session.scalars(sa.select(InteractionEvent.payload)).one() == {"question": "Can I see my salary?",
                                                                             "turn": 1}
        assert session.scalars(sa.select(Interaction.client).where(Interaction.id == interaction)).one() == {
            "ip": "198.51.100.7"}
