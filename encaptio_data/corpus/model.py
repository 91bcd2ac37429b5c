"""Plain records of the demo corpus, shaped like the rows the platform stores."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from encaptio_data.corpus.compose import Document
from encaptio_data.corpus.render import FileRecipe, document_for, render
from encaptio_data.db.enums import CapsuleStatus, ConsentPurpose, ContentType, EventType, OrganizationTier, UserRole

if TYPE_CHECKING:
    from encaptio_data.corpus.generator import CorpusSpec

DOCUMENT_CONTENT_TYPES = frozenset(
    {ContentType.PDF, ContentType.DOCUMENT, ContentType.MARKDOWN, ContentType.HTML, ContentType.TEXT}
)


@dataclass(frozen=True)
class Organization:
    id: uuid.UUID
    name: str
    slug: str
    tier: OrganizationTier


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    name: str
    role: UserRole
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Capsule:
    id: uuid.UUID
    organization_id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    description: str
    status: CapsuleStatus
    topic: str
    settings: dict[str, Any]
    created_at: datetime
    published_at: datetime | None


@dataclass(frozen=True)
class CorpusFile:
    id: uuid.UUID
    capsule_id: uuid.UUID
    organization_id: uuid.UUID
    uploaded_by: uuid.UUID
    filename: str
    mime_type: str
    content_type: ContentType
    title: str
    topic: str
    metadata: dict[str, Any]
    created_at: datetime
    # Everything needed to rebuild the bytes; kept instead of the bytes so a large corpus
    # stays small in memory.
    recipe: FileRecipe = field(repr=False)

    @property
    def data(self) -> bytes:
        """The file's bytes, rendered on every access (identical each time)."""
        return render(self.recipe)

    @property
    def is_document(self) -> bool:
        return self.content_type in DOCUMENT_CONTENT_TYPES

    def document(self) -> Document | None:
        """The structured text behind a document file (None for images and videos)."""
        return document_for(self.recipe)


@dataclass(frozen=True)
class Interaction:
    id: uuid.UUID
    capsule_id: uuid.UUID
    user_id: uuid.UUID | None
    session_id: str
    started_at: datetime


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    interaction_id: uuid.UUID
    capsule_id: uuid.UUID
    user_id: uuid.UUID | None
    session_id: str
    event_type: EventType
    payload: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class Consent:
    user_id: uuid.UUID
    purpose: ConsentPurpose
    granted: bool
    version: str
    recorded_at: datetime


@dataclass(frozen=True)
class LabelledQuery:
    text: str
    organization_id: uuid.UUID
    # None for an organisation-wide search across all of its capsules.
    capsule_id: uuid.UUID | None
    relevant_file_ids: tuple[uuid.UUID, ...]
    topic: str


@dataclass(frozen=True)
class Corpus:
    spec: CorpusSpec
    organizations: list[Organization]
    users: list[User]
    capsules: list[Capsule]
    files: list[CorpusFile]
    interactions: list[Interaction]
    events: list[Event]
    consents: list[Consent]
    queries: list[LabelledQuery]

    def iter_file_bytes(self) -> Iterator[tuple[CorpusFile, bytes]]:
        """Each file with its bytes, one at a time, so callers can stream uploads."""
        for corpus_file in self.files:
            yield corpus_file, corpus_file.data

    def summary(self) -> dict[str, Any]:
        return {
            "organizations": len(self.organizations),
            "users": len(self.users),
            "capsules": len(self.capsules),
            "files": len(self.files),
            "interactions": len(self.interactions),
            "events": len(self.events),
            "consents": len(self.consents),
            "queries": len(self.queries),
            "files_by_content_type": _count(f.content_type for f in self.files),
            "events_by_type": _count(e.event_type for e in self.events),
            "capsules_by_status": _count(c.status for c in self.capsules),
            "users_by_role": _count(u.role for u in self.users),
        }


def _count(values: Iterator[Any]) -> dict[str, int]:
    return {str(key): n for key, n in sorted(Counter(values).items())}


def iter_file_bytes(corpus: Corpus) -> Iterator[tuple[CorpusFile, bytes]]:
    return corpus.iter_file_bytes()
