"""Load an organization export into another instance: all of it, or nothing.

Order of work, so a failure at any step leaves the instance as it was:
1. verify the whole archive (every member's sha256 and size, no missing or extra member,
   schema version equal to this instance's Alembic head); refuse naming the member at fault;
2. refuse if the organization (its id or its slug) already exists here: importing the same
   archive twice is refused, never merged, and the ids of the source are kept;
3. put the content files into the object store (keys under the organization's own upload
   prefix only, each checked against its sha256 as it is written);
4. in ONE database transaction: insert every row, with content.object_version pointing at
   the versions just written; then load the search rows into LanceDB (the archive's vectors
   when it has them and this instance embeds queries with the model that made them,
   otherwise the chunks re-embedded with this instance's model); then
   append the audit entry and commit;
5. on any failure: the transaction rolls back, the LanceDB rows of the organization (new
   here, so only ours) and the object versions this import wrote are deleted, and the error
   is raised. Afterwards the search indexes are rebuilt over the whole table.

Only the object version ids change (they belong to the target store). With vectors in the
archive the search results are the source's, score for score. Re-embedded ones (JSON and
CSV archives, or vectors of another model) are as close as the encoder is to itself: the
int8 encoder quantizes activations per batch, so near-ties can swap (tests/portability
measures the overlap).
"""

from __future__ import annotations

import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from lancedb.expr import col, lit

from encaptio_data import audit, authz
from encaptio_data.content.files import put_file
from encaptio_data.db import sealing
from encaptio_data.db.migrate import head_revision
from encaptio_data.db.models import Base, Content, ContentExtraction, Organization, utcnow
from encaptio_data.errors import InvalidInputError
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform
from encaptio_data.portability.archive import ArchiveRefusedError, verify_archive
from encaptio_data.portability.export import SEARCH_COLUMNS, TEXT_COLUMN, VECTOR_FIELD
from encaptio_data.portability.formats import EXTENSIONS, read_rows, table_columns
from encaptio_data.portability.scope import owned_tables, self_references
from encaptio_data.search.index import chunk_table
from encaptio_data.search.index import build_indexes, open_chunks_table
from encaptio_data.search.service import capsule_tag, organization_tag
from encaptio_data.stores.objects import ObjectVersion, validate_key

Progress = Callable[[str], None] | None


class OrganizationExistsError(InvalidInputError):
    """The organization of an archive is already in this instance (imported before, or its source)."""


@dataclass
class ImportResult:
    organization_id: str
    export_id: str
    counts: dict[str, int]
    embeddings: str
    seconds: float
    stages: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _refuse_existing(platform: Platform, organization_id: uuid.UUID, archive: zipfile.ZipFile, manifest: dict[str, Any],
                     name: str) -> None:
    member = f"tables/{Organization.__tablename__}.{EXTENSIONS[manifest['table_format']]}"
    slugs = [row["slug"] for rows, _ in _rows(archive, member, Organization.__table__, manifest) for row in rows]
    with platform.db.session() as session:
        if session.get(Organization, organization_id) is not None:
            raise OrganizationExistsError(f"{name}: organization {organization_id} already exists in this instance "
                                          "(imported before, or this is its source): refused, nothing imported")
        taken = session.scalar(sa.select(Organization.slug).where(Organization.slug.in_(slugs)))
        if taken:
            raise OrganizationExistsError(f"{name}: another organization here already uses the slug {taken!r}: "
                                          "refused, nothing imported")


def _rows(archive: zipfile.ZipFile, member: str, table: sa.Table, manifest: dict[str, Any]
          ) -> Iterator[tuple[list[dict[str, Any]], dict[str, list[Any]]]]:
    columns = [c for c in table_columns(table) if (table.name, c[0]) != TEXT_COLUMN]
    with archive.open(member) as stream:
        yield from read_rows(stream, columns, manifest["table_format"], name=member)


def _put_objects(platform: Platform, archive: zipfile.ZipFile, manifest: dict[str, Any], organization_id: uuid.UUID,
                 written: list[ObjectVersion], progress: Progress) -> dict[str, str]:
    prefix = f"uploads/{organization_id}/"
    versions: dict[str, str] = {}
    keys = KeyStore(platform.settings.keys_dir)  # files are sealed again under this instance's keys
    for entry in manifest.get("objects", []):
        key = validate_key(str(entry["key"]))
        if not key.startswith(prefix):
            raise ArchiveRefusedError(f"{entry['path']}: object key {key!r} is outside the organization's uploads "
                                      f"({prefix}): refused")
        if progress:
            progress(f"file {entry['path']}")
        with archive.open(entry["path"]) as stream:
            version = put_file(platform.objects, keys, key, stream, uploaded_by=entry.get("uploaded_by"),
                               content_type=entry["content_type"], metadata=entry.get("metadata") or {},
                               expected_sha256=entry["sha256"])
        written.append(version)
        versions[entry["content_id"]] = version.version_id
    return versions


def _insert_tables(session: Any, archive: zipfile.ZipFile, manifest: dict[str, Any], versions: dict[str, str],
                   progress: Progress) -> dict[str, int]:
    counts: dict[str, int] = {}
    ext = EXTENSIONS[manifest["table_format"]]
    for table in owned_tables():
        member = f"tables/{table.name}.{ext}"
        if progress:
            progress(f"table {table.name}")
        deferred = self_references(table)
        later: list[dict[str, Any]] = []
        counts[table.name] = 0
        for rows, _ in _rows(archive, member, table, manifest):
            if table.name == Content.__tablename__:
                for row in rows:
                    if str(row["id"]) not in versions:
                        raise ArchiveRefusedError(f"{member}: content {row['id']} has no file in the archive: refused")
                    row["object_version"] = versions[str(row["id"])]
            if table.name == TEXT_COLUMN[0]:
                for row in rows:
                    row[TEXT_COLUMN[1]] = _text(archive, row["content_id"])
            for column in deferred:
                later += [{"pk": row[table.primary_key.columns[0].name], "value": row[column.name], "column": column}
                          for row in rows if row[column.name] is not None]
                for row in rows:
                    row[column.name] = None
            # Personal values are sealed again under this instance's keys (db/sealing.py).
            sealing.insert_rows(session, table, rows)
            counts[table.name] += len(rows)
        pk = table.primary_key.columns[0]
        for item in later:  # references within the table, now that every row exists
            session.execute(sa.update(table).where(pk == item["pk"]).values({item["column"].name: item["value"]}))
        expected = manifest["counts"].get(table.name)
        if counts[table.name] != expected:
            raise ArchiveRefusedError(f"{member}: holds {counts[table.name]} rows, the manifest says {expected}: refused")
    return counts


def _text(archive: zipfile.ZipFile, content_id: uuid.UUID) -> str:
    member = f"text/{content_id}.txt"
    try:
        return archive.read(member).decode("utf-8")
    except KeyError:
        raise ArchiveRefusedError(f"{member} is missing: refused") from None
    except UnicodeDecodeError:
        raise ArchiveRefusedError(f"{member} is not UTF-8 text: refused") from None


def _search_batches(archive: zipfile.ZipFile, manifest: dict[str, Any], use_vectors: bool
                    ) -> Iterator[tuple[list[dict[str, Any]], list[Any] | None]]:
    member = f"search/chunks.{EXTENSIONS[manifest['table_format']]}"
    extra = [VECTOR_FIELD] if manifest["embeddings"] else []
    with archive.open(member) as stream:
        for rows, extras in read_rows(stream, SEARCH_COLUMNS, manifest["table_format"], name=member, extra=extra):
            yield rows, extras.get("vector") if use_vectors else None


def _load_vectors(platform: Platform, archive: zipfile.ZipFile, manifest: dict[str, Any],
                  embedder_factory: Callable[[], Any], progress: Progress) -> tuple[int, str]:
    table = open_chunks_table(platform.vectors)
    use_vectors = _archive_vectors_fit(platform, manifest)
    embedder = None
    loaded = 0
    for rows, vectors in _search_batches(archive, manifest, use_vectors):
        if vectors is None:
            embedder = embedder or embedder_factory()
            matrix = np.asarray(embedder.encode([row["text"] for row in rows]), dtype=np.float32)
        else:
            matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.shape != (len(rows), VECTOR_FIELD.type.list_size):
            raise ArchiveRefusedError(f"search/chunks: vectors of shape {matrix.shape} do not fit the chunk table: "
                                      "refused")
        columns = {name: [row[name] for row in rows] for name, _ in SEARCH_COLUMNS}
        flat = pa.array(matrix.reshape(-1), type=pa.float32())
        columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, VECTOR_FIELD.type.list_size)
        batch = chunk_table(columns)
        table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(batch)
        loaded += len(rows)
        if progress:
            progress(f"search rows {loaded}")
    if loaded != manifest["counts"].get("search_chunks"):
        raise ArchiveRefusedError(f"search/chunks holds {loaded} rows, the manifest says "
                                  f"{manifest['counts'].get('search_chunks')}: refused")
    return loaded, "archive" if use_vectors else (embedder.model_name if embedder else "none needed")


def _archive_vectors_fit(platform: Platform, manifest: dict[str, Any]) -> bool:
    """Use the archive's vectors only if this instance embeds queries with the model that made them."""
    from encaptio_data.content.embedding import embedder_model_name

    return bool(manifest["embeddings"]) and manifest.get("embedding_model") == embedder_model_name(platform.settings)


def import_organization(platform: Platform, archive_path: Path | str, *,
                        operator: authz.Principal | str | None = None,
                        embedder_factory: Callable[[], Any] | None = None, progress: Progress = None) -> ImportResult:
    """Load an archive here, all or nothing; the operator needs import_org platform-wide (an admin),
    since the organization does not exist here yet."""
    started = time.monotonic()
    principal = authz.authorize(platform, operator, authz.Permission.IMPORT_ORG)
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = round(time.monotonic() - started - sum(stages.values()), 3)

    path = Path(archive_path).expanduser()
    manifest = verify_archive(path, schema_version=head_revision())
    lap("verify")
    organization_id = uuid.UUID(manifest["organization_id"])
    if embedder_factory is None:
        from encaptio_data.content.embedding import load_embedder

        def embedder_factory() -> Any:
            return load_embedder(platform.settings)
    written: list[ObjectVersion] = []
    vectors_touched = False
    try:
        with zipfile.ZipFile(path) as archive:
            _refuse_existing(platform, organization_id, archive, manifest, path.name)
            versions = _put_objects(platform, archive, manifest, organization_id, written, progress)
            lap("objects")
            with platform.db.session() as session:
                counts = _insert_tables(session, archive, manifest, versions, progress)
                session.flush()
                lap("rows")
                vectors_touched = True
                counts["search_chunks"], source = _load_vectors(platform, archive, manifest, embedder_factory,
                                                                progress)
                lap("vectors")
                if source not in {"archive", "none needed"}:
                    # The vectors are this instance's: say so where the pipeline looks.
                    content_ids = sa.select(Content.id).where(Content.organization_id == organization_id)
                    session.execute(sa.update(ContentExtraction)
                                    .where(ContentExtraction.content_id.in_(content_ids),
                                           ContentExtraction.embedded_sha256.is_not(None))
                                    .values(embedding_model=source, embedded_at=utcnow()))
                counts["files"] = len(written)
                audit.append_in(session, actor=principal.actor, action="organization.imported", organization_id=organization_id,
                                target=manifest["export_id"],
                                details={"schema_version": manifest["schema_version"], "counts": counts,
                                         "embeddings": source, "exporter": manifest["exporter"]})
    except BaseException:
        if vectors_touched:
            open_chunks_table(platform.vectors).delete(col("organization_id") == lit(str(organization_id)))
        for version in written:
            platform.objects.delete(version.key, version.version_id)
        raise
    lap("commit")
    build_indexes(open_chunks_table(platform.vectors))
    lap("indexes")
    with platform.db.session() as session:
        capsules = session.scalars(sa.select(Base.metadata.tables["capsules"].c.id)
                                   .where(Base.metadata.tables["capsules"].c.organization_id == organization_id)).all()
    platform.cache.invalidate_tag(organization_tag(organization_id))
    for capsule_id in capsules:
        platform.cache.invalidate_tag(capsule_tag(capsule_id))
    return ImportResult(organization_id=str(organization_id), export_id=manifest["export_id"], counts=counts,
                        embeddings=source, seconds=round(time.monotonic() - started, 3), stages=stages)

