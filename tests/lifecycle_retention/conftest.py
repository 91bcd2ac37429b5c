"""A small world for lifecycle tests: organizations, capsules with files whose text carries a marker,
events on chosen days. Search runs on the hashing embedder of the privacy tests, never the real model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.accounts import add_user, ensure_organization
from encaptio_data.authz import Grant, Permission, Principal, system_principal
from encaptio_data.content.uploads import upload_key
from encaptio_data.db.enums import EventType, OrganizationTier
from encaptio_data.db.models import Capsule, Content, Interaction, InteractionEvent
from encaptio_data.platform import Platform
from encaptio_data.search.service import SearchRequest, SearchService
from tests.privacy.conftest import HashingEmbedder, run_pipeline

__all__ = ["HashingEmbedder", "run_pipeline", "Box", "new_box", "add_event", "hits", "at", "NIGHTLY"]

# The purge as the nightly job runs it (run_purge is the dagster principal's; people need an admin).
NIGHTLY = system_principal("dagster", run="test")


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@dataclass
class Box:
    """One capsule with one file; ``marker`` appears in the file's text and nowhere else."""

    organization_id: uuid.UUID
    owner_id: uuid.UUID
    capsule_id: uuid.UUID
    marker: str
    key: str
    versions: list[str] = field(default_factory=list)
    owner_email: str = ""

    def content_ids(self, platform: Platform) -> list[uuid.UUID]:
        with platform.db.session() as session:
            return list(session.scalars(sa.select(Content.id).where(Content.capsule_id == self.capsule_id)))


def new_box(platform: Platform, label: str, *, org_slug: str = "acme",
            tier: OrganizationTier = OrganizationTier.STANDARD, versions: int = 1) -> Box:
    marker = f"zq{label}{uuid.uuid4().hex[:12]}"
    with platform.db.session() as session:
        org = ensure_organization(session, name=org_slug.title(), slug=org_slug, tier=tier)
        owner = add_user(session, email=f"owner-{org_slug}@example.org", name="Owner", organization_id=org.id,
                         role="creator")
        capsule = Capsule(organization_id=org.id, owner_id=owner.id, title=f"capsule {label}")
        session.add(capsule)
        session.flush()
        box = Box(org.id, owner.id, capsule.id, marker, upload_key(org.id, capsule.id, f"notes-{label}.md"),
                  owner_email=owner.email)
    for n in range(versions):
        text = (f"# Field notes\n\nVersion {n}. The hidden word is {marker} and it stays hidden. "
                + "Sourdough starters and telescopes fill the rest of this page. " * 20)
        box.versions.append(platform.objects.put(box.key, text.encode(), content_type="text/markdown",
                                                 metadata={"uploaded-by": str(box.owner_id)}).version_id)
    return box


def add_event(platform: Platform, capsule_id: uuid.UUID, user_id: uuid.UUID | None, when: datetime,
              payload: dict | None = None, event_type: EventType = EventType.VIEW) -> uuid.UUID:
    with platform.db.session() as session:
        interaction = Interaction(capsule_id=capsule_id, user_id=user_id, session_id=f"s-{uuid.uuid4().hex[:8]}",
                                  started_at=when)
        session.add(interaction)
        session.flush()
        event = InteractionEvent(interaction_id=interaction.id, capsule_id=capsule_id, user_id=user_id,
                                 session_id=interaction.session_id, event_type=event_type,
                                 payload=payload or {}, occurred_at=when)
        session.add(event)
        session.flush()
        return event.id


def hits(platform: Platform, box: Box, query: str, mode: str = "fulltext") -> list[str]:
    """Content ids of the hits, through the cache like every product search."""
    searcher = Principal("system:test-search", (Grant(frozenset({Permission.SEARCH_ORG}), None),), system=True)
    service = SearchService(platform.vectors, platform.cache, principal=searcher, db=platform.db,
                            embedder=HashingEmbedder())
    page = service.search(SearchRequest(organization_id=str(box.organization_id), query=query, mode=mode))
    return [hit.content_id for hit in page.hits]


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Platform]:
    """For tests whose subject is bookkeeping rather than the stores."""
    from encaptio_data.bootstrap import initialize
    from encaptio_data.settings import get_settings

    instance = Platform(get_settings(data_dir=tmp_path / "embedded"))
    initialize(instance)
    yield instance
    instance.close()
