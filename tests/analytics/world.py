"""Hand-built analytics worlds: an organization, people with locales, capsules, and events placed exactly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from encaptio_data.analytics.aggregate import EVENT_SCHEMA
from encaptio_data.db.enums import CapsuleStatus, ConsentPurpose, RestrictionKind, UserRole
from encaptio_data.db.models import (
    Capsule,
    Consent,
    Interaction,
    InteractionEvent,
    Organization,
    ProcessingRestriction,
    User,
)
from encaptio_data.platform import Platform

DAY = date(2026, 10, 7)  # a Wednesday
NOW = datetime(2026, 10, 20, 12, tzinfo=UTC)  # the runs' clock: the day is in the past, not stale
LOCALES = ["en_US", "en_US", "de_DE", "de_DE", "fr_FR", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT", "en_US", "de_DE"]


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0, microsecond: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, microsecond, tzinfo=UTC)


@dataclass
class World:
    platform: Platform
    organization: uuid.UUID
    owner: uuid.UUID
    capsules: list[uuid.UUID]
    users: list[uuid.UUID]
    sessions: dict[str, uuid.UUID] = field(default_factory=dict)

    def event(self, capsule: uuid.UUID, user: uuid.UUID | None, session: str, event_type: str, when: datetime,
              payload: Any = None) -> uuid.UUID:
        """Insert one event (and its interaction the first time a session is seen)."""
        event_id = uuid.uuid4()
        with self.platform.db.session() as s:
            if session not in self.sessions:
                interaction = Interaction(capsule_id=capsule, user_id=user, session_id=session, started_at=when)
                s.add(interaction)
                s.flush()
                self.sessions[session] = interaction.id
            s.add(InteractionEvent(id=event_id, interaction_id=self.sessions[session], capsule_id=capsule,
                                   user_id=user, session_id=session, event_type=event_type,
                                   payload=default_payload(event_type) if payload is None else payload,
                                   occurred_at=when))
        return event_id

    def consent(self, user: uuid.UUID, granted: bool, when: datetime,
                purpose: ConsentPurpose = ConsentPurpose.ANALYTICS) -> None:
        with self.platform.db.session() as s:
            s.add(Consent(user_id=user, purpose=purpose, granted=granted, version="2026-01", recorded_at=when))

    def restrict(self, user: uuid.UUID, kind: RestrictionKind, purpose: ConsentPurpose | None = None,
                 lifted: bool = False) -> None:
        created = datetime(2026, 9, 1, tzinfo=UTC)
        with self.platform.db.session() as s:
            s.add(ProcessingRestriction(user_id=user, kind=kind, purpose=purpose, reason="test", created_at=created,
                                        lifted_at=created + timedelta(days=1) if lifted else None))


def default_payload(event_type: str) -> dict[str, Any]:
    return {"view": {"referrer": "direct", "device": "desktop"},
            "search": {"query": "budget basics", "result_count": 3},
            "chat_turn": {"question": "What is a budget?", "turn": 1}, "dwell": {"seconds": 30},
            "completion": {"progress": 1.0}}.get(event_type, {})


def build_world(platform: Platform, *, users: int = 12, capsules: int = 2) -> World:
    with platform.db.session() as s:
        organization = Organization(name="Analytica", slug=f"analytica-{uuid.uuid4().hex[:6]}")
        s.add(organization)
        s.flush()
        people = [User(organization_id=organization.id, email=f"person{i}@analytica.test", name=f"Person {i}",
                       role=UserRole.VIEWER, metadata_={"locale": LOCALES[i % len(LOCALES)]}) for i in range(users)]
        owner = User(organization_id=organization.id, email="owner@analytica.test", name="Owner",
                     role=UserRole.CREATOR, metadata_={"locale": "en_US"})
        s.add_all([*people, owner])
        s.flush()
        created = datetime(2026, 6, 1, tzinfo=UTC)
        boxes = [Capsule(organization_id=organization.id, owner_id=owner.id, title=f"Capsule {i}",
                         status=CapsuleStatus.PUBLISHED, created_at=created, updated_at=created,
                         published_at=created + timedelta(days=1)) for i in range(capsules)]
        s.add_all(boxes)
        s.flush()
        return World(platform, organization.id, owner.id, [c.id for c in boxes], [p.id for p in people])


def arrow_events(rows: list[dict[str, Any]]) -> pa.Table:
    """An Arrow table in EVENT_SCHEMA from partial rows (missing columns are null)."""
    return pa.Table.from_pylist([{name: row.get(name) for name in EVENT_SCHEMA.names} for row in rows],
                                schema=EVENT_SCHEMA)
