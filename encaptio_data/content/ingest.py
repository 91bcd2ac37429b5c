"""`encaptio ingest`: put local files into a capsule's uploads, ready for the pipeline.

The operator needs ingest_content in the capsule's organization (authz.py); it is checked
before anything is written, a new capsule included. Creators may add files to any capsule of
their organization: capsules have co-authors (the corpus models uploads by non-owners).
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from encaptio_data import audit, authz
from encaptio_data.accounts import default_organization, email_is, get_organization, normalize_email, parse_uuid
from encaptio_data.content.files import put_file_if_changed
from encaptio_data.content.uploads import encode_metadata, upload_key
from encaptio_data.db.enums import CapsuleStatus
from encaptio_data.db.models import Capsule, User
from encaptio_data.errors import InvalidInputError, NotFoundError
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform


@dataclass
class IngestReport:
    capsule_id: str
    organization_id: str
    created_capsule: bool
    files: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"capsule_id": self.capsule_id, "organization_id": self.organization_id,
                "created_capsule": self.created_capsule, "files": self.files,
                "uploaded": sum(1 for f in self.files if f["status"] == "uploaded"),
                "unchanged": sum(1 for f in self.files if f["status"] == "unchanged")}


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Every regular file named or under a named directory; refuses the whole batch on a bad path."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidInputError(f"{raw}: no such file or directory")
    for path in files:
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot be read ({exc.strerror})") from None
    if not files:
        raise InvalidInputError("no files to ingest")
    names = [p.name for p in files]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InvalidInputError(f"two files are named {duplicate!r}; a capsule holds one file per name")
    return files


def resolve_capsule(platform: Platform, *, capsule_id: str | None, new_capsule_title: str | None,
                    owner_email: str | None, organization_id: str | None, principal: authz.Principal
                    ) -> tuple[Capsule, uuid.UUID, bool]:
    """The capsule to ingest into (created for --new-capsule), once ``principal`` may ingest there."""
    if bool(capsule_id) == bool(new_capsule_title):
        raise InvalidInputError("give either --capsule ID or --new-capsule TITLE --owner EMAIL")
    with platform.db.session() as session:
        if capsule_id:
            capsule = session.get(Capsule, parse_uuid(capsule_id, "capsule"))
            if capsule is None or capsule.deleted_at is not None:
                raise NotFoundError(f"capsule {capsule_id} does not exist")
            authz.check(platform.db, principal, authz.Permission.INGEST_CONTENT, capsule.organization_id)
            return capsule, capsule.owner_id, False
        if not owner_email:
            raise InvalidInputError("--new-capsule needs --owner EMAIL")
        org = get_organization(session, organization_id) if organization_id else default_organization(session)
        authz.check(platform.db, principal, authz.Permission.INGEST_CONTENT, org.id)
        email = normalize_email(owner_email)
        owner = session.scalar(sa.select(User).where(User.organization_id == org.id, email_is(session, email)))
        if owner is None:
            raise NotFoundError(f"no user {email} in organization {org.id}: add one with `encaptio users add`")
        capsule = Capsule(organization_id=org.id, owner_id=owner.id, title=new_capsule_title.strip()[:300],
                          status=CapsuleStatus.DRAFT)
        session.add(capsule)
        session.flush()
        return capsule, owner.id, True


def ingest_files(platform: Platform, paths: Iterable[str | Path], *, capsule_id: str | None = None,
                 new_capsule_title: str | None = None, owner_email: str | None = None,
                 organization_id: str | None = None, operator: authz.Principal | str | None) -> IngestReport:
    """Store files as uploads of a capsule as ``operator`` (ingest_content in its organization)."""
    principal = authz.resolve(platform, operator)
    files = expand_paths(paths)
    capsule, uploader, created = resolve_capsule(platform, capsule_id=capsule_id, new_capsule_title=new_capsule_title,
                                                 owner_email=owner_email, organization_id=organization_id,
                                                 principal=principal)
    report = IngestReport(str(capsule.id), str(capsule.organization_id), created)
    keys = KeyStore(platform.settings.keys_dir)
    for path in files:
        key = upload_key(capsule.organization_id, capsule.id, path.name)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        version, new = put_file_if_changed(platform.objects, keys, key, path.read_bytes(), uploaded_by=uploader,
                                           content_type=mime, metadata=encode_metadata({"title": path.stem}))
        report.files.append({"file": str(path), "key": key, "status": "uploaded" if new else "unchanged",
                             "version_id": version.version_id})
    if created or report.as_dict()["uploaded"]:
        audit.append(platform.db, actor=principal.actor, action="content.ingested",
                     organization_id=capsule.organization_id, target=str(capsule.id),
                     details={"uploaded": report.as_dict()["uploaded"], "created_capsule": created})
    return report


def run_content_pipeline(platform: Platform, embedder: Any = None, *, capsule_id: uuid.UUID | None = None) -> None:
    """Every stage in process, for all capsules (or one): register uploads, extract, chunk, embed,
    build the search indexes. The Dagster assets run the same stages one partition at a time;
    this is for the demo, benchmarks and tests that need a searchable corpus without Dagster."""
    from encaptio_data.content.embedding import load_embedder
    from encaptio_data.content.pipeline import chunk_content, embed_content, extract_content
    from encaptio_data.content.uploads import register_uploads
    from encaptio_data.search.index import build_indexes, open_chunks_table

    keys = KeyStore(platform.settings.keys_dir)
    register_uploads(platform.db, platform.objects, keys=keys)
    extract_content(platform.db, platform.objects, capsule_id=capsule_id, keys=keys)
    chunk_content(platform.db, capsule_id=capsule_id)
    embed_content(platform.db, platform.vectors, embedder or load_embedder(), capsule_id=capsule_id,
                  cache=platform.cache)
    build_indexes(open_chunks_table(platform.vectors))
