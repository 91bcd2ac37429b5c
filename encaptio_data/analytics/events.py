"""Writing interaction events: the path the product's services use.

Events go in through the model, so what a signed-in user typed (a search's query, a chat
turn's question) and their client are sealed under their data key before the database sees
them, each text with the blind index the daily aggregation counts by (db/sealing.py). A row
written around this path with plain text still aggregates (the aggregation indexes it), but
it escapes crypto-shredding until `encaptio keys seal-events` seals it.

A batch is validated whole before anything is written, and written in one transaction:
a bad event refuses the batch with one line naming it. Re-sending a batch is safe: events
are keyed by their id, and an id already stored is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from encaptio_data.accounts import parse_uuid
from encaptio_data.db import sealing
from encaptio_data.db.enums import EventType
from encaptio_data.db.models import EVENT_FREE_TEXT, Capsule, Interaction, InteractionEvent, User
from encaptio_data.db.session import Database
from encaptio_data.errors import InvalidInputError
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform

if TYPE_CHECKING:
    from encaptio_data.authz import Principal

_SESSION_ID_CHARS = 64
_FIELDS = {"id", "capsule_id", "user_id", "session_id", "event_type", "payload", "occurred_at", "client"}


@dataclass
class RecordReport:
    recorded: int = 0
    already_stored: int = 0
    sessions_started: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"recorded": self.recorded, "already_stored": self.already_stored,
                "sessions_started": self.sessions_started}


def _checked(event: Mapping[str, Any], position: int) -> dict[str, Any]:
    where = f"event {position}"
    if not isinstance(event, Mapping):
        raise InvalidInputError(f"{where}: expected an object with capsule_id, session_id, event_type, occurred_at")
    unknown = set(event) - _FIELDS
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = [name for name in ("capsule_id", "session_id", "event_type", "occurred_at") if event.get(name) is None]
    if missing:
        raise InvalidInputError(f"{where}: missing {', '.join(missing)}")
    session_id = event["session_id"]
    if not isinstance(session_id, str) or not session_id or len(session_id) > _SESSION_ID_CHARS:
        raise InvalidInputError(f"{where}: session_id must be text of 1 to {_SESSION_ID_CHARS} characters")
    try:
        event_type = EventType(event["event_type"])
    except ValueError:
        raise InvalidInputError(f"{where}: event_type {str(event['event_type'])[:40]!r} is not one of "
                                f"{', '.join(e.value for e in EventType)}") from None
    occurred_at = event["occurred_at"]
    if not isinstance(occurred_at, datetime) or occurred_at.tzinfo is None:
        raise InvalidInputError(f"{where}: occurred_at must be a timezone-aware datetime")
    payload, client = event.get("payload") or {}, event.get("client") or {}
    if not isinstance(payload, dict) or not isinstance(client, dict):
        raise InvalidInputError(f"{where}: payload and client must be JSON objects")
    for name in EVENT_FREE_TEXT:
        if name in payload and not isinstance(payload[name], str):
            raise InvalidInputError(f"{where}: payload.{name} must be text")
    return {"id": parse_uuid(event["id"], f"{where}: id") if event.get("id") is not None else uuid.uuid4(),
            "capsule_id": parse_uuid(event["capsule_id"], f"{where}: capsule_id"),
            "user_id": parse_uuid(event["user_id"], f"{where}: user_id") if event.get("user_id") is not None else None,
            "session_id": session_id, "event_type": event_type, "payload": payload, "client": client,
            "occurred_at": occurred_at}


def record_events(db: Database, events: Iterable[Mapping[str, Any]]) -> RecordReport:
    """Store a batch of events (see the module docstring); returns what was written and skipped."""
    checked = [_checked(event, position) for position, event in enumerate(events)]
    report = RecordReport()
    if not checked:
        return report
    ids = [event["id"] for event in checked]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("the batch holds the same event id twice")
    with db.session() as session:
        capsules = {event["capsule_id"] for event in checked}
        known_capsules = set(session.scalars(sa.select(Capsule.id).where(Capsule.id.in_(capsules))))
        users = {event["user_id"] for event in checked} - {None}
        known_users = set(session.scalars(sa.select(User.id).where(User.id.in_(users)))) if users else set()
        for position, event in enumerate(checked):
            if event["capsule_id"] not in known_capsules:
                raise InvalidInputError(f"event {position}: unknown capsule {event['capsule_id']}")
            if event["user_id"] is not None and event["user_id"] not in known_users:
                raise InvalidInputError(f"event {position}: unknown user {event['user_id']}")
        stored = set(session.scalars(sa.select(InteractionEvent.id).where(InteractionEvent.id.in_(ids))))
        fresh = [event for event in checked if event["id"] not in stored]
        report.already_stored = len(checked) - len(fresh)

        # One interaction per (capsule, session, user): the first event of a session starts it.
        sessions = {(e["capsule_id"], e["session_id"], e["user_id"]) for e in fresh}
        interactions: dict[tuple[Any, ...], uuid.UUID] = {}
        if sessions:
            rows = session.execute(sa.select(Interaction.id, Interaction.capsule_id, Interaction.session_id,
                                             Interaction.user_id)
                                   .where(Interaction.session_id.in_({s for _, s, _ in sessions}))).all()
            interactions = {(r.capsule_id, r.session_id, r.user_id): r.id for r in rows}
        new_interactions = []
        for event in sorted(fresh, key=lambda e: e["occurred_at"]):
            key = (event["capsule_id"], event["session_id"], event["user_id"])
            if key not in interactions:
                interactions[key] = uuid.uuid4()
                new_interactions.append({"id": interactions[key], "capsule_id": key[0], "session_id": key[1],
                                         "user_id": key[2], "started_at": event["occurred_at"],
                                         "client": event["client"]})
        sealing.insert_rows(session, Interaction, new_interactions)
        sealing.insert_rows(session, InteractionEvent, [{
            "id": e["id"], "interaction_id": interactions[(e["capsule_id"], e["session_id"], e["user_id"])],
            "capsule_id": e["capsule_id"], "user_id": e["user_id"], "session_id": e["session_id"],
            "event_type": e["event_type"], "payload": e["payload"], "occurred_at": e["occurred_at"]} for e in fresh])
        report.recorded, report.sessions_started = len(fresh), len(new_interactions)
    return report


def seal_events(platform: Platform, *, operator: Principal | str | None) -> dict[str, int]:
    """`encaptio keys seal-events`: seal what was written around ``record_events`` (a signed-in
    user's plain query, question or client; a text without its blind index). Idempotent, and
    safe to re-run after a crash: each batch commits on its own."""
    from encaptio_data import audit, authz

    actor = authz.authorize(platform, operator, authz.Permission.ROTATE_KEYS).actor
    keys = KeyStore(platform.settings.keys_dir)
    result = {table.name: sealing.seal_stored(platform.db.engine, keys, table)
              for table in (Interaction.__table__, InteractionEvent.__table__)}
    audit.append(platform.db, actor=actor, action="events.sealed", details=result)
    return result
