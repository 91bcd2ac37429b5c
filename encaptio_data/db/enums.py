"""The closed vocabularies of the data model, shared by the ORM, the CLI and the demo corpus."""

from __future__ import annotations

from enum import StrEnum


class OrganizationTier(StrEnum):
    STANDARD = "standard"
    ENTERPRISE = "enterprise"


class UserRole(StrEnum):
    ADMIN = "admin"
    PRIVACY_OFFICER = "privacy_officer"
    ANALYST = "analyst"
    CREATOR = "creator"
    VIEWER = "viewer"


class CapsuleStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class ContentType(StrEnum):
    PDF = "pdf"
    DOCUMENT = "document"
    MARKDOWN = "markdown"
    HTML = "html"
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"


class ExtractionStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    METADATA_ONLY = "metadata_only"


class EventType(StrEnum):
    VIEW = "view"
    SEARCH = "search"
    CHAT_TURN = "chat_turn"
    DWELL = "dwell"
    COMPLETION = "completion"


class ConsentPurpose(StrEnum):
    ANALYTICS = "analytics"
    PERSONALIZATION = "personalization"
    MARKETING = "marketing"
    MODEL_IMPROVEMENT = "model_improvement"


class RequestType(StrEnum):
    ACCESS = "access"
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"


class RequestStatus(StrEnum):
    RECEIVED = "received"
    IDENTITY_VERIFIED = "identity_verified"
    APPROVED = "approved"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"


class Jurisdiction(StrEnum):
    GDPR = "gdpr"
    CCPA = "ccpa"


class RestrictionKind(StrEnum):
    RESTRICTION = "restriction"
    OBJECTION = "objection"


class HoldScope(StrEnum):
    ORGANIZATION = "organization"
    USER = "user"
    CAPSULE = "capsule"
    CONTENT = "content"


class RetentionAction(StrEnum):
    DELETE = "delete"
    ANONYMIZE = "anonymize"
    ARCHIVE = "archive"
    AGGREGATE = "aggregate"


class BackupKind(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"
    SNAPSHOT = "snapshot"


class BackupStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    VERIFIED = "verified"
    EXPIRED = "expired"


class DataClassification(StrEnum):
    PERSONAL = "personal"
    SENSITIVE = "sensitive"
    INTERNAL = "internal"
    PUBLIC = "public"
