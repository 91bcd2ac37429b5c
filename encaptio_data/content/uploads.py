"""Uploaded objects become content rows.

Uploads land in the object store under ``uploads/<organization id>/<capsule id>/<file name>``
(the product's upload service or ``encaptio ingest`` writes them there, sealed with the
uploader's data key: ``content.files``). Registration reads the latest version of each upload
and records it as a content row pointing at that exact object version. The bytes are never
changed here: a rejected upload stays in the store with its reason reported, so nothing
uploaded is ever lost. Only their form at rest may change: given the key store, registration
seals an upload of a known user that arrived plain (an upload service that does not seal, or
files stored before sealing existed) and deletes the plain version.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data.content.files import SEALING_FIELDS, is_sealed, plain_digest, seal_version
from encaptio_data.db.enums import ContentType
from encaptio_data.db.models import Capsule, Content, User
from encaptio_data.db.session import Database
from encaptio_data.errors import NotFoundError, ObjectNotFoundError
from encaptio_data.keys import KeyStore
from encaptio_data.stores.objects import ObjectStore, ObjectVersion

if TYPE_CHECKING:
    from encaptio_data.authz import Principal
    from encaptio_data.platform import Platform

UPLOADS_PREFIX = "uploads/"

_DOCUMENT_MIME_TYPES = {
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.oasis.opendocument.text",
    "application/rtf",
}
_EXACT_MIME_TYPES = {
    "application/pdf": ContentType.PDF,
    "text/markdown": ContentType.MARKDOWN,
    "text/x-markdown": ContentType.MARKDOWN,
    "text/html": ContentType.HTML,
    "application/xhtml+xml": ContentType.HTML,
    "text/plain": ContentType.TEXT,
} | {mime: ContentType.DOCUMENT for mime in _DOCUMENT_MIME_TYPES}

mimetypes.add_type("text/markdown", ".md")
mimetypes.add_type("text/markdown", ".markdown")


def capsule_upload_prefix(db: Database, capsule_id: uuid.UUID | str) -> str:
    """The uploads prefix of one capsule; NotFoundError for an unknown capsule id."""
    with db.session() as session:
        capsule = session.get(Capsule, uuid.UUID(str(capsule_id)))
        if capsule is None:
            raise NotFoundError(f"capsule {capsule_id} does not exist")
        return f"{UPLOADS_PREFIX}{capsule.organization_id}/{capsule.id}/"


def capsule_ids(db: Database) -> list[str]:
    with db.session() as session:
        return [str(c) for c in session.scalars(sa.select(Capsule.id).where(Capsule.deleted_at.is_(None)))]


def upload_fingerprints(objects: ObjectStore, known_capsules: set[str]) -> dict[str, str]:
    """Capsule id → a digest of its uploads' (key, plaintext sha256) pairs: changes when any upload's
    bytes do, and not when registration merely seals an upload that arrived plain.

    Uploads for capsules that do not exist are left out: there is no partition to run them
    in, and registration would only reject them.
    """
    digests: dict[str, hashlib._Hash] = {}
    for version in objects.list(UPLOADS_PREFIX):
        parsed = _parse_upload_key(version.key)
        if isinstance(parsed, str) or str(parsed[1]) not in known_capsules:
            continue
        digest = digests.setdefault(str(parsed[1]), hashlib.sha256())
        digest.update(f"{version.key}\0{plain_digest(version)[0]}\n".encode())
    return {capsule: digest.hexdigest()[:32] for capsule, digest in digests.items()}


def upload_key(organization_id: uuid.UUID, capsule_id: uuid.UUID, filename: str) -> str:
    name = PurePosixPath(filename.replace("\\", "/")).name
    return f"{UPLOADS_PREFIX}{organization_id}/{capsule_id}/{name}"


def encode_metadata(values: Mapping[str, object]) -> dict[str, str]:
    """Object metadata must survive S3 headers (printable ASCII): percent-encode, JSON for non-text."""
    encoded = {}
    for name, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        encoded[name.lower().replace(" ", "-")] = quote(text.strip(), safe=" !#$&'()*+,/:;=?@[]{}\"<>^`|~")
    return encoded


def decode_metadata(values: Mapping[str, str]) -> dict[str, str]:
    return {name: unquote(value) for name, value in values.items()}


def classify(mime_type: str, filename: str) -> tuple[ContentType | None, str]:
    """The content type and the MIME type we believe, from the declared type or else the name."""
    declared = (mime_type or "").split(";")[0].strip().lower()
    if declared in ("", "application/octet-stream", "binary/octet-stream"):
        declared = mimetypes.guess_type(filename)[0] or declared
    if declared in _EXACT_MIME_TYPES:
        return _EXACT_MIME_TYPES[declared], declared
    if declared.startswith("image/"):
        return ContentType.IMAGE, declared
    if declared.startswith("video/"):
        return ContentType.VIDEO, declared
    return None, declared or "application/octet-stream"


@dataclass
class RegistrationReport:
    registered: list[uuid.UUID] = field(default_factory=list)
    updated: list[uuid.UUID] = field(default_factory=list)
    unchanged: int = 0
    sealed: int = 0
    duplicates: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)

    @property
    def changed_content_ids(self) -> list[uuid.UUID]:
        return self.registered + self.updated

    def as_dict(self) -> dict[str, object]:
        return {
            "registered": len(self.registered),
            "updated": len(self.updated),
            "unchanged": self.unchanged,
            "sealed": self.sealed,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "by_type": dict(self.by_type),
        }


def _parse_upload_key(key: str) -> tuple[uuid.UUID, uuid.UUID, str] | str:
    parts = key.removeprefix(UPLOADS_PREFIX).split("/")
    if len(parts) != 3 or not parts[2]:
        return f"key must be {UPLOADS_PREFIX}<organization id>/<capsule id>/<file name>"
    try:
        return uuid.UUID(parts[0]), uuid.UUID(parts[1]), parts[2]
    except ValueError:
        return "organization or capsule id in the key is not a UUID"


def register_uploads(
    db: Database,
    objects: ObjectStore,
    *,
    prefix: str = UPLOADS_PREFIX,
    progress: Callable[[int], None] | None = None,
    keys: KeyStore | None = None,
) -> RegistrationReport:
    """Record every new or changed upload as content; safe to re-run at any point.

    One transaction: a crash part-way leaves no rows, and the re-run sees the same objects.
    With keys, plain uploads of known users are sealed first (the pipeline's assets and
    commands pass them; callers without a key store register uploads as they are).
    """
    report = RegistrationReport()
    with db.session() as session:
        registrar = _Registrar(session, report, objects, keys)
        for version in objects.list(prefix):
            registrar.register(version)
            if progress:
                progress(1)
    return report


class _Registrar:
    """The state of one registration pass, loaded once so each object costs no query."""

    def __init__(self, session: Session, report: RegistrationReport, objects: ObjectStore,
                 keys: KeyStore | None) -> None:
        self.session = session
        self.report = report
        self.objects = objects
        self.keys = keys
        self.capsules = {capsule_id: org_id for capsule_id, org_id in session.execute(sa.select(Capsule.id, Capsule.organization_id))}
        self.users = set(session.scalars(sa.select(User.id)))
        self.by_key = {row.object_key: row for row in session.scalars(sa.select(Content))}
        self.by_hash = {(row.capsule_id, row.sha256): row for row in self.by_key.values()}

    def register(self, version: ObjectVersion) -> None:
        report = self.report
        parsed = _parse_upload_key(version.key)
        if isinstance(parsed, str):
            report.rejected.append({"key": version.key, "reason": parsed})
            return
        organization_id, capsule_id, filename = parsed
        if self.capsules.get(capsule_id) != organization_id:
            reason = f"capsule {capsule_id} does not exist in organization {organization_id}"
            report.rejected.append({"key": version.key, "reason": reason})
            return
        content_type, mime_type = classify(version.content_type, filename)
        if content_type is None:
            report.rejected.append({"key": version.key, "reason": f"unsupported MIME type {mime_type}"})
            return

        existing = self.by_key.get(version.key)
        if existing is not None and existing.deleted_at is not None:
            report.unchanged += 1
            return
        metadata = decode_metadata(version.metadata)
        uploader = _as_uuid(metadata.get("uploaded-by"))
        uploader = uploader if uploader in self.users else None
        if self.keys is not None and uploader is not None and not is_sealed(version):
            # Sealed before the row commits: a crash in between leaves a row on the deleted plain
            # version, which the branch below moves onto the sealed one on the re-run.
            version = seal_version(self.objects, self.keys, version, uploader)
            report.sealed += 1
        sha256, size = plain_digest(version)
        if existing is not None and existing.object_version != version.version_id and existing.sha256 == sha256 \
                and is_sealed(version) and self._plain_or_gone(existing):
            existing.object_version = version.version_id
        if existing is not None and existing.object_version == version.version_id:
            report.unchanged += 1
            return
        twin = self.by_hash.get((capsule_id, sha256))
        if twin is not None:
            report.duplicates.append({"key": version.key, "duplicate_of": str(twin.id)})
            return

        if existing is not None:
            del self.by_hash[(existing.capsule_id, existing.sha256)]
            row = existing
            report.updated.append(row.id)
        else:
            row = Content(id=uuid.uuid4(), capsule_id=capsule_id, organization_id=organization_id, object_key=version.key)
            self.session.add(row)
            report.registered.append(row.id)
        row.uploaded_by = uploader
        row.type = content_type
        row.mime_type = mime_type
        row.filename = filename
        row.title = metadata.get("title", filename)[:300]
        row.object_version = version.version_id
        row.sha256 = sha256
        row.size_bytes = size
        row.metadata_ = {k: v for k, v in metadata.items() if k not in {"uploaded-by", "title", *SEALING_FIELDS}}
        self.session.flush()
        self.by_key[version.key] = row
        self.by_hash[(capsule_id, sha256)] = row
        report.by_type[content_type.value] += 1

    def _plain_or_gone(self, row: Content) -> bool:
        """Whether the version a row points at was plain (deleting it if it is still there) or is gone."""
        try:
            pointed = self.objects.head(row.object_key, row.object_version)
        except ObjectNotFoundError:
            return True
        if is_sealed(pointed):
            return False
        self.objects.delete(row.object_key, row.object_version)
        return True


def seal_files(platform: Platform, *, operator: Principal | str | None) -> dict[str, object]:
    """`encaptio keys seal-files`: seal every plain upload of a known user now, for deployments
    whose uploads predate sealing (each pipeline run's registration does the same for its capsule).
    It is a registration pass, so it also records uploads not registered yet; idempotent."""
    from encaptio_data import audit, authz

    actor = authz.authorize(platform, operator, authz.Permission.ROTATE_KEYS).actor
    report = register_uploads(platform.db, platform.objects, keys=KeyStore(platform.settings.keys_dir))
    result = {"sealed": report.sealed, "registered": len(report.registered), "updated": len(report.updated),
              "unchanged": report.unchanged}
    audit.append(platform.db, actor=actor, action="files.sealed", details=result)
    return result


def _as_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def content_counts(session: Session, capsule_id: uuid.UUID | None = None) -> dict[str, int]:
    query = sa.select(Content.type, sa.func.count()).where(Content.deleted_at.is_(None)).group_by(Content.type)
    rows = session.execute(query.where(Content.capsule_id == capsule_id) if capsule_id else query)
    return {kind.value: count for kind, count in rows}
