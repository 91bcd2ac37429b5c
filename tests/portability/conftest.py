"""A second instance to import into, and organizations to export.

The target is built like the `platform` fixture but on its own data dir and, in the
production profile, its own fresh PostgreSQL database, bucket and cache namespace: another
instance, sharing nothing with the source but the servers.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import throwaway_postgres_database

from encaptio_data.accounts import add_user, ensure_organization
from encaptio_data.bootstrap import initialize
from encaptio_data.content.pipeline import extract_content
from encaptio_data.content.uploads import register_uploads, upload_key
from encaptio_data.db.enums import UserRole
from encaptio_data.db.models import Capsule, Organization, utcnow
from encaptio_data.platform import Platform
from encaptio_data.portability.scope import owned_tables, rows_of
from encaptio_data.settings import get_settings


def make_admin(platform: Platform, slug: str = "operations") -> str:
    """An admin (import_org and export_org everywhere) in a housekeeping organization of its own."""
    email = f"admin@{slug}.example"
    with platform.db.session() as session:
        org = ensure_organization(session, name=slug.title(), slug=slug)
        add_user(session, email=email, name="Admin", organization_id=org.id, role=UserRole.ADMIN)
    return email


def small_organization(platform: Platform, slug: str = "tiny", files: int = 3) -> uuid.UUID:
    """An organization with a creator, a capsule and a few uploads, registered and extracted (not embedded)."""
    with platform.db.session() as session:
        org = ensure_organization(session, name=f"Org {slug}", slug=slug)
        user = add_user(session, email=f"creator@{slug}.example", name="Creator", organization_id=org.id,
                        role=UserRole.CREATOR)
        capsule = Capsule(organization_id=org.id, owner_id=user.id, title=f"Notes of {slug}")
        session.add(capsule)
        session.flush()
        org_id, capsule_id, user_id = org.id, capsule.id, user.id
    for index in range(files):
        text = f"# Note {index}\n\nSourdough note {index} of {slug}: " + "starter, flour, water. " * (20 + index)
        platform.objects.put(upload_key(org_id, capsule_id, f"note-{index}.md"), text.encode(),
                             content_type="text/markdown", metadata={"uploaded-by": str(user_id)})
    register_uploads(platform.db, platform.objects)
    extract_content(platform.db, platform.objects)
    return org_id


def org_rows(platform: Platform, organization_id: uuid.UUID, *, ignore: dict[str, set[str]] | None = None
             ) -> dict[str, list[dict[str, Any]]]:
    """Every owned table's rows of the organization, in primary-key order, minus the ignored columns.

    The email's blind index is always left out: a keyed hash under each instance's own key.
    """
    ignore = {**(ignore or {}), "users": {"email_index", *(ignore or {}).get("users", ())}}
    snapshot = {}
    with platform.db.engine.connect() as conn:
        for table in owned_tables():
            rows = [dict(row) for row in conn.execute(rows_of(table, organization_id)).mappings()]
            skip = ignore.get(table.name, set())
            snapshot[table.name] = [{k: v for k, v in row.items() if k not in skip} for row in rows]
    return snapshot


def file_hashes(platform: Platform, organization_id: uuid.UUID) -> dict[str, str]:
    """content id → sha256 of the bytes the content row points at, read from the object store
    (as plaintext: an import seals files again under the target's keys)."""
    from encaptio_data.content.files import read_content
    from encaptio_data.keys import KeyStore

    with platform.db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, object_key, object_version, sha256 FROM content "
                                    "WHERE organization_id = :o"),
                            {"o": organization_id.hex if platform.db.dialect == "sqlite" else organization_id}
                            ).mappings().all()
    keys = KeyStore(platform.settings.keys_dir)
    return {str(row["id"]): hashlib.sha256(read_content(platform.objects, keys, row)).hexdigest() for row in rows}


def emptiness(platform: Platform, organization_id: uuid.UUID) -> dict[str, int]:
    """What an import of this organization left behind: rows, upload objects and vector rows."""
    from encaptio_data.search.index import CHUNKS_TABLE

    with platform.db.session() as session:
        rows = session.scalar(sa.select(sa.func.count()).select_from(Organization)
                              .where(Organization.id == organization_id)) or 0
    versions = sum(1 for v in platform.objects.list_versions(f"uploads/{organization_id}/") if not v.is_delete_marker)
    vectors = 0
    if CHUNKS_TABLE in platform.vectors.table_names():
        # count_rows takes SQL text only; the id is a UUID, so nothing can be injected here.
        vectors = platform.vectors.open_table(CHUNKS_TABLE).count_rows(f"organization_id = '{organization_id}'")
    return {"organization_rows": rows, "object_versions": versions, "vector_rows": vectors}


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    with throwaway_postgres_database() as url:
        yield url


@pytest.fixture
def target(request: pytest.FixtureRequest, platform: Platform, tmp_path: Path) -> Iterator[Platform]:
    """Another instance of the same profile as `platform`, with an admin who may import."""
    overrides: dict[str, object] = {"data_dir": tmp_path / "target"}
    if platform.settings.profile == "production":
        import boto3

        bucket = f"encaptio-target-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3", endpoint_url=platform.settings.s3_endpoint_url, region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        overrides |= {"database_url": request.getfixturevalue("second_postgres_url"),
                      "object_store": f"s3://{bucket}/objects", "s3_endpoint_url": platform.settings.s3_endpoint_url,
                      "redis_url": platform.settings.redis_url, "cache_namespace": f"target-{uuid.uuid4().hex[:12]}"}
    instance = Platform(get_settings(**overrides))
    initialize(instance)
    make_admin(instance)
    yield instance
    if platform.settings.profile == "production":
        instance.cache.clear()
    instance.close()


class Clock:
    """An injectable clock for link expiry."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> Any:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()

