"""The relational data model: SQLAlchemy 2.0 typed ORM, portable between SQLite and PostgreSQL.

Personal data is declared here and nowhere else: a column built with ``personal(...)``
carries ``info["classification"] = "personal"``, and every consumer (access export,
erasure, the catalog, PII checks) derives its list from the metadata through
``personal_columns()``. What belongs to a subject is likewise derived from the foreign
keys declared here, never from hand-kept lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from encaptio_data.db.enums import (
    BackupKind,
    BackupStatus,
    CapsuleStatus,
    ConsentPurpose,
    ContentType,
    DataClassification,
    EventType,
    ExtractionStatus,
    HoldScope,
    Jurisdiction,
    OrganizationTier,
    RequestStatus,
    RequestType,
    RestrictionKind,
    RetentionAction,
    UserRole,
)
from encaptio_data.db.sealing import Sealed, SealedFields, SealingRule, email_index, seal_on_flush


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both engines.

    SQLite has no timezone type and hands back naive datetimes; normalising here means
    no caller ever compares an aware and a naive timestamp, and a naive input (whose zone
    we cannot know) is refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# The payload fields end users type into (a search's query, a chat turn's question).
EVENT_FREE_TEXT = ("query", "question")


def enum_column(enum: type[StrEnum], **kwargs: Any) -> Any:
    """A string column with a named CHECK constraint, identical on SQLite and PostgreSQL.

    Native PostgreSQL enums would need ALTER TYPE migrations for every new value and do not
    exist on SQLite; a CHECK constraint is enforced by both engines.
    """
    return mapped_column(
        sa.Enum(enum, native_enum=False, create_constraint=True, length=32, values_callable=lambda e: [m.value for m in e],
                name=f"ck_{enum.__name__.lower()}", validate_strings=True),
        **kwargs,
    )


def personal(column: Any, classification: DataClassification = DataClassification.PERSONAL) -> Any:
    """Mark a column as holding personal (or sensitive) data: the one place this is declared."""
    column.column.info["classification"] = classification.value
    return column


@dataclass(frozen=True)
class ColumnGroup:
    """Columns that share a meaning and a classification, in the data catalog.

    A personal or sensitive group about the row's subject holds exactly the columns declared
    with ``personal(...)`` (so exports and erasure, which read those declarations, and the
    catalog never disagree). ``subject_data=False`` marks personal data about someone else:
    the operators who acted (audit actors, approvers), which must outlive a subject's erasure
    and is therefore not ``personal(...)``. ``scanned_by`` names the process that finds PII in
    free text the platform stores on purpose (document text), which the catalog's own PII
    check then leaves to it.
    """

    description: str
    classification: DataClassification
    columns: tuple[str, ...]
    retention: str | None = None
    subject_data: bool = True
    scanned_by: str | None = None


_PROTECTED = {DataClassification.PERSONAL.value, DataClassification.SENSITIVE.value}


def catalogued(*, owner: str, description: str, classification: DataClassification, retention: str,
               groups: dict[str, ColumnGroup]) -> Callable[[type[Any]], type[Any]]:
    """Declare a table's catalog entry (owner, description, classification, retention class, column groups).

    Stored in ``table.info["catalog"]`` and each column's ``info["catalog_group"]``: metadata
    only, no DDL, so no migration. ``governance.catalog`` reads it; a contradiction with the
    ``personal(...)`` declarations fails at import, before any data is touched.
    """

    def apply(cls: type[Any]) -> type[Any]:
        table = cls.__table__
        for name, group in groups.items():
            for column_name in group.columns:
                if column_name not in table.c:
                    raise ValueError(f"catalog of {table.name}: group {name!r} names unknown column {column_name!r}")
                column = table.c[column_name]
                if "catalog_group" in column.info:
                    raise ValueError(f"catalog of {table.name}: column {column_name!r} is in two groups")
                declared = column.info.get("classification")
                about_subject = group.classification.value in _PROTECTED and group.subject_data
                if (declared is not None) != about_subject or (declared and declared != group.classification.value):
                    raise ValueError(f"catalog of {table.name}: column {column_name!r} is declared "
                                     f"{declared or 'not personal'} but sits in the {group.classification.value} "
                                     f"group {name!r}")
                # Replaced, not updated: columns may share one info dict (``info=NOT_OWNED``).
                column.info = {**column.info, "catalog_group": name}
        table.info = {**table.info, "catalog": {
            "owner": owner, "description": description, "classification": classification.value,
            "retention": retention,
            "groups": {name: {"description": g.description, "classification": g.classification.value,
                              "columns": list(g.columns), "retention": g.retention or retention,
                              "subject_data": g.subject_data, "scanned_by": g.scanned_by}
                       for name, g in groups.items()},
        }}
        return cls

    return apply


def _keys(*columns: str) -> ColumnGroup:
    return ColumnGroup("Identifiers and references to other rows.", DataClassification.INTERNAL, columns)


def _times(*columns: str) -> ColumnGroup:
    return ColumnGroup("When the row was created, changed or deleted.", DataClassification.INTERNAL, columns)


_PERSONAL, _INTERNAL = DataClassification.PERSONAL, DataClassification.INTERNAL
# Owners are Dagster owner strings, so the same values label assets in the UI.
_PLATFORM, _PRIVACY, _ANALYTICS = "team:data-platform", "team:privacy", "team:analytics"


# The subject graph (what belongs to a person) follows foreign keys from users outwards. An
# edge marked NOT_OWNED is a reference, not ownership: another user's interaction with a
# creator's capsule is not the creator's personal data, so the graph does not cross it.
# Edges to organizations are never followed (the graph starts below the tenant).
NOT_OWNED = {"subject_edge": False}
# Tables whose rows an erasure keeps with their personal columns blanked, because the row
# itself is a record the platform must keep (that a request was made and answered).
ANONYMIZE_ON_ERASURE = {"erasure": "anonymize"}

naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=naming_convention)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, uuid.UUID: sa.Uuid}


def _id() -> Any:
    return mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)


def _created() -> Any:
    return mapped_column(UTCDateTime, default=utcnow, nullable=False)


@catalogued(owner=_PLATFORM, classification=_INTERNAL, retention="account",
            description="Tenants: each organization's data is isolated from every other's.",
            groups={"keys": _keys("id"),
                    "profile": ColumnGroup("The organization's business name, URL slug and plan.", _INTERNAL,
                                           ("name", "slug", "tier")),
                    "timestamps": _times("created_at")})
class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(100), unique=True)
    tier: Mapped[OrganizationTier] = enum_column(OrganizationTier, default=OrganizationTier.STANDARD)
    created_at: Mapped[datetime] = _created()

    __table_args__ = (sa.CheckConstraint("length(slug) > 0", name="slug_not_empty"),)


@catalogued(owner=_PRIVACY, classification=_PERSONAL, retention="account",
            description="People with an account in an organization: creators, viewers, operators.",
            groups={"keys": _keys("id", "organization_id", "data_key_id"),
                    "identity": ColumnGroup("Who the person is: email address and display name.", _PERSONAL,
                                            ("email", "name")),
                    "profile": ColumnGroup("Free-form profile attributes the person gave us.", _PERSONAL,
                                           ("metadata",)),
                    "lookup": ColumnGroup("Keyed hash of the email: finds the person without opening the sealed "
                                          "address.", _INTERNAL, ("email_index",)),
                    "access": ColumnGroup("The role that decides what the person may do.", _INTERNAL, ("role",)),
                    "timestamps": _times("created_at", "updated_at", "deleted_at")})
class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    # Sealed with the user's own data key (db/sealing.py): erasure destroys the key, and the
    # values in every backup taken before become unreadable. Validated in accounts.py, since
    # the database only ever sees ciphertext.
    email: Mapped[str] = personal(mapped_column(Sealed("users.email")))
    name: Mapped[str] = personal(mapped_column(Sealed("users.name")))
    role: Mapped[UserRole] = enum_column(UserRole, default=UserRole.VIEWER)
    metadata_: Mapped[dict[str, Any]] = personal(mapped_column("metadata", Sealed("users.metadata", json_value=True),
                                                               default=dict))
    email_index: Mapped[str] = mapped_column(sa.String(64))
    # The per-subject data key lives in the key store, never in this database (a backup of
    # the database must not hold the keys that crypto-shredding destroys); this is its id.
    data_key_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("organization_id", "email_index", name="uq_users_organization_email_index"),
    )


seal_on_flush(User, SealingRule("id", derived={"email_index": ("email", email_index)}))


@catalogued(owner=_PLATFORM, classification=_INTERNAL, retention="soft_deleted",
            description="Collections of content a creator publishes; deleted capsules are recoverable for 30 days.",
            groups={"keys": _keys("id", "organization_id", "owner_id"),
                    "publication": ColumnGroup("What the creator wrote about the capsule and its publication state.",
                                               _INTERNAL, ("title", "description", "status", "settings",
                                                           "published_at")),
                    "timestamps": _times("created_at", "updated_at", "deleted_at")})
class Capsule(Base):
    __tablename__ = "capsules"

    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[CapsuleStatus] = enum_column(CapsuleStatus, default=CapsuleStatus.DRAFT)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (
        sa.CheckConstraint("updated_at >= created_at", name="updated_after_created"),
        sa.CheckConstraint("published_at IS NULL OR published_at >= created_at", name="published_after_created"),
        sa.CheckConstraint("status != 'published' OR published_at IS NOT NULL", name="published_has_timestamp"),
    )


@catalogued(owner=_PLATFORM, classification=_INTERNAL, retention="soft_deleted",
            description="One row per distinct uploaded file, pointing at its exact object version.",
            groups={"keys": _keys("id", "capsule_id", "organization_id", "uploaded_by"),
                    "file": ColumnGroup("What the file is: type, title, file name, MIME type, size, metadata.",
                                        _INTERNAL, ("type", "title", "filename", "mime_type", "size_bytes",
                                                    "metadata")),
                    "location": ColumnGroup("Where the bytes are: object key, version and sha256.", _INTERNAL,
                                            ("object_key", "object_version", "sha256")),
                    "timestamps": _times("created_at", "deleted_at")})
class Content(Base):
    __tablename__ = "content"

    id: Mapped[uuid.UUID] = _id()
    capsule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("capsules.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    type: Mapped[ContentType] = enum_column(ContentType)
    title: Mapped[str] = mapped_column(sa.String(300), default="")
    filename: Mapped[str] = mapped_column(sa.String(300), default="")
    object_key: Mapped[str] = mapped_column(sa.String(1024))
    object_version: Mapped[str] = mapped_column(sa.String(128))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    mime_type: Mapped[str] = mapped_column(sa.String(127))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = _created()
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (
        # One row per distinct byte string in a capsule: re-uploading identical bytes is no new work.
        sa.UniqueConstraint("capsule_id", "sha256", name="uq_content_capsule_sha256"),
        sa.UniqueConstraint("object_key", "object_version", name="uq_content_object_version"),
        sa.CheckConstraint("size_bytes >= 0", name="size_not_negative"),
        sa.CheckConstraint("length(sha256) = 64", name="sha256_length"),
        sa.CheckConstraint("length(object_key) > 0", name="object_key_not_empty"),
    )


@catalogued(owner=_PLATFORM, classification=_INTERNAL, retention="derived",
            description="Text extracted from each content item and how far the pipeline has carried it.",
            groups={"keys": _keys("content_id"),
                    "text": ColumnGroup("The document's text and structure, as its creator wrote it.", _INTERNAL,
                                        ("text", "sections", "metadata"), scanned_by="pii_findings"),
                    "pipeline": ColumnGroup("Extraction, chunking and embedding state per stage.", _INTERNAL,
                                            ("sha256", "status", "reason", "extractor", "extractor_version",
                                             "char_count", "page_count", "chunked_sha256", "chunker_version",
                                             "chunk_count", "embedded_sha256", "embedding_model")),
                    "timestamps": _times("extracted_at", "embedded_at")})
class ContentExtraction(Base):
    """The text extracted from one content item, and how far the pipeline has carried it.

    The *_sha256 columns record which bytes each stage last processed: a stage has work
    only where its column differs from the content's current sha256, which is what makes
    the pipeline incremental and a re-run after a crash a no-op for finished items.
    """

    __tablename__ = "content_extractions"

    content_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("content.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[ExtractionStatus] = enum_column(ExtractionStatus)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    extractor: Mapped[str] = mapped_column(sa.String(64))
    extractor_version: Mapped[str] = mapped_column(sa.String(16))
    text: Mapped[str] = mapped_column(sa.Text, default="")
    sections: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    char_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    page_count: Mapped[int | None] = mapped_column(sa.Integer)
    extracted_at: Mapped[datetime] = _created()
    chunked_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    chunker_version: Mapped[str | None] = mapped_column(sa.String(16))
    chunk_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    embedded_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    embedding_model: Mapped[str | None] = mapped_column(sa.String(128))
    embedded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("char_count >= 0", name="char_count_not_negative"),
        sa.CheckConstraint("chunk_count >= 0", name="chunk_count_not_negative"),
        sa.CheckConstraint("status != 'failed' OR reason IS NOT NULL", name="failure_has_reason"),
    )


@catalogued(owner=_PLATFORM, classification=_INTERNAL, retention="derived",
            description="Retrieval units of extracted text; LanceDB holds the same rows with their vectors.",
            groups={"keys": _keys("id", "content_id", "capsule_id", "organization_id"),
                    "text": ColumnGroup("A passage of the document and its heading.", _INTERNAL, ("text", "heading"),
                                        scanned_by="pii_findings"),
                    "position": ColumnGroup("Where the passage sits in its document.", _INTERNAL,
                                            ("chunk_index", "start_char", "end_char", "page", "token_count",
                                             "content_sha256"))})
class Chunk(Base):
    """A retrieval unit of extracted text. The relational copy is the truth; LanceDB holds
    the same rows with their vectors and can always be rebuilt from here."""

    __tablename__ = "chunks"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    content_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("content.id", ondelete="CASCADE"))
    capsule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("capsules.id", ondelete="CASCADE"), index=True,
                                                  info=NOT_OWNED)
    organization_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    chunk_index: Mapped[int] = mapped_column(sa.Integer)
    text: Mapped[str] = mapped_column(sa.Text)
    start_char: Mapped[int] = mapped_column(sa.Integer)
    end_char: Mapped[int] = mapped_column(sa.Integer)
    page: Mapped[int | None] = mapped_column(sa.Integer)
    heading: Mapped[str | None] = mapped_column(sa.String(300))
    token_count: Mapped[int] = mapped_column(sa.Integer)
    content_sha256: Mapped[str] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.UniqueConstraint("content_id", "chunk_index", name="uq_chunks_content_index"),
        sa.CheckConstraint("end_char > start_char AND start_char >= 0", name="offsets_ordered"),
        sa.CheckConstraint("token_count > 0", name="token_count_positive"),
        sa.CheckConstraint("length(text) > 0", name="text_not_empty"),
    )


@catalogued(owner=_ANALYTICS, classification=_PERSONAL, retention="raw_events",
            description="End-user sessions with a capsule.",
            groups={"keys": _keys("id", "capsule_id", "user_id", "session_id"),
                    "client": ColumnGroup("The user's client (user agent, locale, address).", _PERSONAL, ("client",)),
                    "timestamps": _times("started_at")})
class Interaction(Base):
    """One end-user session with a capsule; its events hang below it."""

    __tablename__ = "interactions"

    id: Mapped[uuid.UUID] = _id()
    capsule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("capsules.id", ondelete="CASCADE"), index=True,
                                                  info=NOT_OWNED)
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Every field of the client (user agent, locale, address) is sealed under the user's key.
    client: Mapped[dict[str, Any]] = personal(mapped_column(SealedFields("interactions.client"), default=dict))


seal_on_flush(Interaction, SealingRule("user_id"))


@catalogued(owner=_ANALYTICS, classification=_PERSONAL, retention="raw_events",
            description="Raw interaction events (views, searches, chat turns, dwell, completions).",
            groups={"keys": _keys("id", "interaction_id", "capsule_id", "user_id", "session_id"),
                    "activity": ColumnGroup("What kind of event happened, and when.", _INTERNAL,
                                            ("event_type", "occurred_at")),
                    "payload": ColumnGroup("What the user typed or did: queries, questions, positions.", _PERSONAL,
                                           ("payload",))})
class InteractionEvent(Base):
    __tablename__ = "interaction_events"

    id: Mapped[uuid.UUID] = _id()
    interaction_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("interactions.id", ondelete="CASCADE"), index=True)
    # Denormalised from the interaction: analytics scans events by capsule and day without a join.
    capsule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("capsules.id", ondelete="CASCADE"), info=NOT_OWNED)
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(sa.String(64))
    event_type: Mapped[EventType] = enum_column(EventType)
    # Free text typed by end users (queries, chat questions) can hold anything about them: it is
    # sealed under the user's key, with a blind index the daily aggregation counts queries by.
    payload: Mapped[dict[str, Any]] = personal(mapped_column(
        SealedFields("interaction_events.payload", fields=EVENT_FREE_TEXT, indexed=EVENT_FREE_TEXT), default=dict))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (sa.Index("ix_interaction_events_capsule_time", "capsule_id", "occurred_at"),)


seal_on_flush(InteractionEvent, SealingRule("user_id"))


@catalogued(owner=_PRIVACY, classification=_PERSONAL, retention="account",
            description="Append-only consent history per user and purpose; the latest row is in force.",
            groups={"keys": _keys("id", "user_id"),
                    "choice": ColumnGroup("The purpose, the choice made, the notice version and where it was made.",
                                          _INTERNAL, ("purpose", "granted", "version", "source")),
                    "timestamps": _times("recorded_at")})
class Consent(Base):
    """Append-only consent history: the latest row per (user, purpose) is in force."""

    __tablename__ = "consents"

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[ConsentPurpose] = enum_column(ConsentPurpose)
    granted: Mapped[bool] = mapped_column(sa.Boolean)
    version: Mapped[str] = mapped_column(sa.String(32))
    source: Mapped[str] = mapped_column(sa.String(64), default="product")
    recorded_at: Mapped[datetime] = _created()

    __table_args__ = (sa.Index("ix_consents_user_purpose_time", "user_id", "purpose", "recorded_at"),)


@catalogued(owner=_PRIVACY, classification=_PERSONAL, retention="account",
            description="Art. 18 restrictions and Art. 21 objections that pipelines honour.",
            groups={"keys": _keys("id", "user_id", "request_id"),
                    "restriction": ColumnGroup("The kind, the purpose concerned and the stated reason.", _INTERNAL,
                                               ("kind", "purpose", "reason")),
                    "timestamps": _times("created_at", "lifted_at")})
class ProcessingRestriction(Base):
    """Art. 18 restrictions and Art. 21 objections; pipelines exclude subjects with an active one."""

    __tablename__ = "processing_restrictions"

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[RestrictionKind] = enum_column(RestrictionKind)
    # NULL purpose: every purpose (a restriction); objections name the purpose objected to.
    purpose: Mapped[ConsentPurpose | None] = enum_column(ConsentPurpose, nullable=True)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    request_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("data_subject_requests.id", ondelete="SET NULL"),
                                                         info=NOT_OWNED)
    created_at: Mapped[datetime] = _created()
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (sa.CheckConstraint("lifted_at IS NULL OR lifted_at >= created_at", name="lifted_after_created"),)


@catalogued(owner=_PRIVACY, classification=_PERSONAL, retention="compliance_record",
            description="Data subject requests and how they were handled; kept, anonymized, after an erasure.",
            groups={"keys": _keys("id", "organization_id", "user_id", "duplicate_of"),
                    "subject": ColumnGroup("Who asked and what they asked to change.", _PERSONAL,
                                           ("subject_email", "changes")),
                    "pseudonyms": ColumnGroup("Keyed hashes: the subject and the verification code, unreadable.",
                                              _INTERNAL, ("subject_hash", "verification_hash")),
                    "workflow": ColumnGroup("Type, state, jurisdiction, channel, reasons and the signed receipt.",
                                            _INTERNAL, ("type", "status", "jurisdiction", "source", "status_reason",
                                                        "extension_reason", "receipt")),
                    "handling": ColumnGroup("Who approved and handled each step (operators' identities).",
                                            _PERSONAL, ("approved_by", "steps"), subject_data=False),
                    "deadlines": _times("received_at", "verified_at", "approved_at", "due_at", "extended_due_at",
                                        "completed_at")})
class DataSubjectRequest(Base):
    __tablename__ = "data_subject_requests"

    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    # Set null on erasure so the request row (our proof of having acted) outlives the subject.
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    subject_email: Mapped[str | None] = personal(mapped_column(Sealed("data_subject_requests.subject_email")))
    # Keyed hash of the subject's email: lets duplicate requests merge after the email is erased.
    subject_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    type: Mapped[RequestType] = enum_column(RequestType)
    status: Mapped[RequestStatus] = enum_column(RequestStatus, default=RequestStatus.RECEIVED)
    jurisdiction: Mapped[Jurisdiction] = enum_column(Jurisdiction, default=Jurisdiction.GDPR)
    source: Mapped[str] = mapped_column(sa.String(64), default="cli")
    changes: Mapped[dict[str, Any]] = personal(mapped_column(Sealed("data_subject_requests.changes", json_value=True),
                                                             default=dict))
    verification_hash: Mapped[str | None] = mapped_column(sa.String(128))
    received_at: Mapped[datetime] = _created()
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), info=NOT_OWNED)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    extended_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_reason: Mapped[str | None] = mapped_column(sa.Text)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("data_subject_requests.id", ondelete="SET NULL"),
                                                           info=NOT_OWNED)
    steps: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        sa.CheckConstraint("due_at >= received_at", name="due_after_received"),
        sa.CheckConstraint("extended_due_at IS NULL OR extended_due_at >= due_at", name="extension_after_due"),
        sa.CheckConstraint("completed_at IS NULL OR completed_at >= received_at", name="completed_after_received"),
        {"info": ANONYMIZE_ON_ERASURE},
    )


# A request about nobody known (user_id NULL) is refused before it is stored, and erasure
# blanks the personal values as it clears user_id, so every non-blank value has a subject.
seal_on_flush(DataSubjectRequest, SealingRule("user_id"))

@catalogued(owner=_PRIVACY, classification=_PERSONAL, retention="audit_log",
            description="The append-only, hash-chained audit trail; subjects appear only as keyed hashes.",
            groups={"chain": ColumnGroup("Sequence number and the hashes that chain the entries.", _INTERNAL,
                                         ("seq", "prev_hash", "hash")),
                    "event": ColumnGroup("What was done, to what, in which organization, with what details.",
                                         _INTERNAL, ("action", "organization_id", "subject_ref", "target",
                                                     "details")),
                    "operator": ColumnGroup("Who acted: an operator's email or a system actor.", _PERSONAL,
                                            ("actor",), subject_data=False),
                    "timestamps": _times("occurred_at")})
class AuditEntry(Base):
    """Append-only, hash-chained: each entry's hash covers its content and the previous hash."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = _created()
    actor: Mapped[str] = mapped_column(sa.String(320))
    action: Mapped[str] = mapped_column(sa.String(100), index=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    # Pseudonymous reference to whom the entry is about: the audit trail must survive erasure.
    subject_ref: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    target: Mapped[str | None] = mapped_column(sa.String(300))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    prev_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)

    __table_args__ = (
        sa.CheckConstraint("length(hash) = 64", name="hash_length"),
        sa.CheckConstraint("length(prev_hash) = 64", name="prev_hash_length"),
    )


@catalogued(owner=_PLATFORM, classification=_INTERNAL, retention="configuration",
            description="Overrides of the default retention per data class, tier or organization.",
            groups={"keys": _keys("id", "organization_id"),
                    "policy": ColumnGroup("Data class, tier, days kept and what happens after.", _INTERNAL,
                                          ("data_class", "tier", "retain_days", "action")),
                    "timestamps": _times("created_at")})
class RetentionPolicy(Base):
    __tablename__ = "retention_policies"

    id: Mapped[uuid.UUID] = _id()
    data_class: Mapped[str] = mapped_column(sa.String(64))
    tier: Mapped[OrganizationTier] = enum_column(OrganizationTier)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"))
    retain_days: Mapped[int] = mapped_column(sa.Integer)
    action: Mapped[RetentionAction] = enum_column(RetentionAction)
    created_at: Mapped[datetime] = _created()

    __table_args__ = (
        sa.UniqueConstraint("data_class", "tier", "organization_id", name="uq_retention_policies_class_tier_org"),
        sa.CheckConstraint("retain_days > 0", name="retain_days_positive"),
    )


@catalogued(owner=_PRIVACY, classification=_PERSONAL, retention="configuration",
            description="Legal holds that suspend retention and erasure for what they cover.",
            groups={"keys": _keys("id", "organization_id", "scope_id"),
                    "hold": ColumnGroup("What the hold covers and counsel's reason.", _INTERNAL, ("scope", "reason")),
                    "operator": ColumnGroup("Who placed the hold (an operator's email).", _PERSONAL, ("placed_by",),
                                            subject_data=False),
                    "timestamps": _times("placed_at", "released_at")})
class LegalHold(Base):
    __tablename__ = "legal_holds"

    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    scope: Mapped[HoldScope] = enum_column(HoldScope)
    scope_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    reason: Mapped[str] = mapped_column(sa.Text)
    placed_by: Mapped[str] = mapped_column(sa.String(320))
    placed_at: Mapped[datetime] = _created()
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("length(reason) > 0", name="reason_given"),
        sa.CheckConstraint("released_at IS NULL OR released_at >= placed_at", name="released_after_placed"),
    )


@catalogued(owner=_PLATFORM, classification=_INTERNAL, retention="backups",
            description="The backup catalog: every backup, its location, digest, key id and manifest.",
            groups={"keys": _keys("id"),
                    "backup": ColumnGroup("Store, kind, state, location, size, digest, wrapping key id and manifest.",
                                          _INTERNAL, ("store", "kind", "status", "location", "size_bytes", "sha256",
                                                      "key_id", "manifest")),
                    "timestamps": _times("started_at", "finished_at")})
class Backup(Base):
    __tablename__ = "backups"

    id: Mapped[uuid.UUID] = _id()
    store: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[BackupKind] = enum_column(BackupKind)
    status: Mapped[BackupStatus] = enum_column(BackupStatus, default=BackupStatus.RUNNING)
    started_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    location: Mapped[str] = mapped_column(sa.String(1024), default="")
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    key_id: Mapped[str | None] = mapped_column(sa.String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (
        sa.CheckConstraint("finished_at IS NULL OR finished_at >= started_at", name="finished_after_started"),
        sa.CheckConstraint("size_bytes IS NULL OR size_bytes >= 0", name="size_not_negative"),
    )


@catalogued(owner=_PRIVACY, classification=_INTERNAL, retention="compliance_record",
            description="Who was erased, by keyed hash only; replayed after every restore.",
            groups={"keys": _keys("id", "organization_id", "request_id"),
                    "erasure": ColumnGroup("The erased subject's keyed hash.", _INTERNAL, ("subject_hash",)),
                    "timestamps": _times("erased_at")})
class ErasureLedger(Base):
    """Who was erased, by keyed hash only: replayed after any restore so erased data stays erased."""

    __tablename__ = "erasure_ledger"

    id: Mapped[uuid.UUID] = _id()
    subject_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    request_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    erased_at: Mapped[datetime] = _created()


def personal_columns(metadata: sa.MetaData = Base.metadata) -> dict[str, list[str]]:
    """Table name → the columns declared personal or sensitive, derived from the model."""
    found: dict[str, list[str]] = {}
    for table in metadata.sorted_tables:
        names = [c.name for c in table.columns if c.info.get("classification") in {"personal", "sensitive"}]
        if names:
            found[table.name] = names
    return found


# --- analytics ---

from datetime import date  # noqa: E402  (appended section: the header above belongs to the core model)


@catalogued(owner=_ANALYTICS, classification=_INTERNAL, retention="analytics",
            description="Engagement per capsule and UTC day, counted over pseudonyms.",
            groups={"keys": _keys("day", "capsule_id", "organization_id"),
                    "metrics": ColumnGroup("Counts and dwell statistics of the day.", _INTERNAL,
                                           ("events", "views", "unique_sessions", "searches", "chat_turns",
                                            "dwell_events", "completions", "total_dwell_seconds",
                                            "median_dwell_seconds", "unique_users")),
                    "timestamps": _times("computed_at")})
class DailyEngagement(Base):
    """Engagement per capsule and UTC day, rebuilt whole each time its day is materialized.

    Counts only events that passed validation and whose subject may be processed for
    analytics; everything else is accounted for in ``daily_engagement_runs`` and
    ``analytics_quarantine``, so the day's raw events always reconcile.
    """

    __tablename__ = "daily_engagement"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    capsule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("capsules.id", ondelete="CASCADE"), primary_key=True,
                                                  info=NOT_OWNED)
    organization_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    events: Mapped[int] = mapped_column(sa.Integer)
    views: Mapped[int] = mapped_column(sa.Integer)
    unique_sessions: Mapped[int] = mapped_column(sa.Integer)
    searches: Mapped[int] = mapped_column(sa.Integer)
    chat_turns: Mapped[int] = mapped_column(sa.Integer)
    dwell_events: Mapped[int] = mapped_column(sa.Integer)
    completions: Mapped[int] = mapped_column(sa.Integer)
    total_dwell_seconds: Mapped[float] = mapped_column(sa.Float)
    median_dwell_seconds: Mapped[float | None] = mapped_column(sa.Float)
    # Distinct signed-in users, counted over keyed pseudonyms: the raw ids never reach this table.
    unique_users: Mapped[int] = mapped_column(sa.Integer)
    computed_at: Mapped[datetime] = _created()

    __table_args__ = (
        sa.CheckConstraint(
            "events >= 0 AND views >= 0 AND unique_sessions >= 0 AND searches >= 0 AND chat_turns >= 0 "
            "AND dwell_events >= 0 AND completions >= 0 AND unique_users >= 0", name="counts_not_negative"),
        sa.CheckConstraint("total_dwell_seconds >= 0", name="dwell_not_negative"),
        sa.Index("ix_daily_engagement_capsule_day", "capsule_id", "day"),
    )


@catalogued(owner=_ANALYTICS, classification=_INTERNAL, retention="analytics",
            description="The most frequent search queries per capsule and day, each issued by at least k subjects.",
            groups={"keys": _keys("day", "capsule_id"),
                    "query": ColumnGroup("The normalised query text and how often it was issued.", _INTERNAL,
                                         ("query_norm", "count", "subjects", "rank"))})
class DailyTopQuery(Base):
    """The most frequent normalised search queries per capsule and day, each issued by at least k subjects.

    Rarer strings are never stored: a query typed by one person can name that person.
    """

    __tablename__ = "daily_top_queries"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    capsule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("capsules.id", ondelete="CASCADE"), primary_key=True,
                                                  info=NOT_OWNED)
    query_norm: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer)
    subjects: Mapped[int] = mapped_column(sa.Integer)
    rank: Mapped[int] = mapped_column(sa.Integer)

    __table_args__ = (
        sa.CheckConstraint("count >= subjects AND subjects > 0", name="count_covers_subjects"),
        sa.CheckConstraint("rank > 0", name="rank_positive"),
    )


@catalogued(owner=_ANALYTICS, classification=_INTERNAL, retention="operational",
            description="What each materialization of an engagement day read, aggregated, quarantined and excluded.",
            groups={"keys": _keys("day"),
                    "ledger": ColumnGroup("Counts that reconcile the day's raw events with the aggregates.", _INTERNAL,
                                          ("events_read", "events_aggregated", "events_quarantined",
                                           "events_excluded", "subjects_excluded", "top_query_k", "details")),
                    "timestamps": _times("materialized_at", "raw_purged_at")})
class DailyEngagementRun(Base):
    """What the last materialization of a day read and did with it: the ledger aggregates reconcile against."""

    __tablename__ = "daily_engagement_runs"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    materialized_at: Mapped[datetime] = _created()
    events_read: Mapped[int] = mapped_column(sa.Integer)
    events_aggregated: Mapped[int] = mapped_column(sa.Integer)
    events_quarantined: Mapped[int] = mapped_column(sa.Integer)
    events_excluded: Mapped[int] = mapped_column(sa.Integer)
    subjects_excluded: Mapped[int] = mapped_column(sa.Integer)
    top_query_k: Mapped[int] = mapped_column(sa.Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Set once retention deleted the day's raw events: the aggregates are final from then on.
    raw_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("events_read = events_aggregated + events_quarantined + events_excluded",
                           name="events_reconcile"),
    )


@catalogued(owner=_ANALYTICS, classification=_INTERNAL, retention="operational",
            description="Events analytics could not use, by event id and reason; no payload, no user id.",
            groups={"keys": _keys("id", "event_id", "capsule_id"),
                    "rejection": ColumnGroup("The event's day and type, and why it was rejected.", _INTERNAL,
                                             ("day", "event_type", "reason", "detail")),
                    "timestamps": _times("occurred_at", "quarantined_at")})
class AnalyticsQuarantine(Base):
    """Events analytics could not use, one row per event with the reason.

    Holds no payload and no user id (only the event's id), so quarantining copies no personal data.
    """

    __tablename__ = "analytics_quarantine"

    id: Mapped[uuid.UUID] = _id()
    # No foreign key: events arrive from outside the database too (Arrow batches), and the
    # record of a rejected event must outlive the raw event's retention.
    # Not unique: a duplicate delivery of an event is quarantined under the same id as the original.
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, index=True)
    day: Mapped[date] = mapped_column(sa.Date, index=True)
    capsule_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    event_type: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[str] = mapped_column(sa.String(32), index=True)
    detail: Mapped[str] = mapped_column(sa.String(300), default="")
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    quarantined_at: Mapped[datetime] = _created()


@catalogued(owner=_ANALYTICS, classification=_INTERNAL, retention="compliance_record",
            description="The differential-privacy ledger: one row per release with the epsilon it spent.",
            groups={"keys": _keys("id"),
                    "release": ColumnGroup("Dataset, period, epsilon spent and left, mechanism and where it went.",
                                           _INTERNAL, ("dataset", "period", "epsilon", "epsilon_budget",
                                                       "epsilon_remaining", "mechanism", "parameters", "object_key")),
                    "timestamps": _times("released_at")})
class PrivacyBudget(Base):
    """The differential-privacy ledger: one row per release, with the epsilon it spent.

    The budget is per dataset and period; a release that would take the period's total
    past its budget is refused, and rows are never updated or deleted.
    """

    __tablename__ = "privacy_budget"

    id: Mapped[uuid.UUID] = _id()
    dataset: Mapped[str] = mapped_column(sa.String(64))
    period: Mapped[str] = mapped_column(sa.String(32))
    epsilon: Mapped[float] = mapped_column(sa.Float)
    epsilon_budget: Mapped[float] = mapped_column(sa.Float)
    epsilon_remaining: Mapped[float] = mapped_column(sa.Float)
    mechanism: Mapped[str] = mapped_column(sa.String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    object_key: Mapped[str] = mapped_column(sa.String(1024), default="")
    released_at: Mapped[datetime] = _created()

    __table_args__ = (
        sa.Index("ix_privacy_budget_dataset_period", "dataset", "period"),
        sa.CheckConstraint("epsilon > 0", name="epsilon_positive"),
        sa.CheckConstraint("epsilon_remaining >= 0 AND epsilon_remaining <= epsilon_budget", name="within_budget"),
    )


@catalogued(owner=_PRIVACY, classification=_INTERNAL, retention="derived",
            description="Where PII was detected: place, kind, score and a keyed hash, never the matched text.",
            groups={"keys": _keys("id", "content_id", "event_id"),
                    "finding": ColumnGroup("Source, field, entity kind, span, score and the value's keyed hash.",
                                           _INTERNAL, ("source", "field", "entity_type", "start_char", "end_char",
                                                       "score", "value_hash")),
                    "timestamps": _times("detected_at")})
class PiiFinding(Base):
    """Where PII was detected: the place, the kind and a keyed hash, never the matched text."""

    __tablename__ = "pii_findings"

    id: Mapped[uuid.UUID] = _id()
    source: Mapped[str] = mapped_column(sa.String(16))
    content_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("content.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("interaction_events.id", ondelete="CASCADE"),
                                                       index=True)
    field: Mapped[str] = mapped_column(sa.String(64))
    entity_type: Mapped[str] = mapped_column(sa.String(64), index=True)
    start_char: Mapped[int] = mapped_column(sa.Integer)
    end_char: Mapped[int] = mapped_column(sa.Integer)
    score: Mapped[float] = mapped_column(sa.Float)
    # "<key id>:<HMAC-SHA256>": equal values can be matched up, the value cannot be guessed back.
    value_hash: Mapped[str] = mapped_column(sa.String(80))
    detected_at: Mapped[datetime] = _created()

    __table_args__ = (
        sa.CheckConstraint("source IN ('content', 'event')", name="source_known"),
        sa.CheckConstraint("(content_id IS NULL) != (event_id IS NULL)", name="one_target"),
        sa.CheckConstraint("end_char > start_char AND start_char >= 0", name="offsets_ordered"),
    )


@catalogued(owner=_PRIVACY, classification=_INTERNAL, retention="operational",
            description="What the PII scan last looked at per source item, so each run scans only what changed.",
            groups={"keys": _keys("source", "source_key"),
                    "state": ColumnGroup("Fingerprint of what was scanned and how many findings it had.", _INTERNAL,
                                         ("fingerprint", "findings")),
                    "timestamps": _times("scanned_at")})
class PiiScanState(Base):
    """What the PII scan last looked at per source item, so each run scans only what changed."""

    __tablename__ = "pii_scan_state"

    source: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    source_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(128))
    findings: Mapped[int] = mapped_column(sa.Integer, default=0)
    scanned_at: Mapped[datetime] = _created()


# Analytics reads, recounts and retires raw events one UTC day at a time, across capsules:
# the (capsule_id, occurred_at) index cannot serve a time range alone.
sa.Index("ix_interaction_events_occurred_at", InteractionEvent.occurred_at)
