"""Export one organization, whole, as a verifiable ZIP (see archive.py for the layout).

Streaming: rows are read in batches with server-side cursors, files are copied from the
object store in 1 MiB pieces, and the ZIP is written straight to disk, so memory does not
grow with the organization.

Interrupted exports: the archive is written to ``<name>.partial`` under an exclusive lock
and renamed into place only when complete, so a reader never sees half an archive. Every
request has an export id (the caller's, e.g. the Dagster run's root run id; otherwise a new
one). Re-running the same export id after a crash rewrites it from the start; re-running it
after it finished returns the finished archive without writing anything; any export of the
same organization starts by removing partials that no live process holds. Either way the
directory ends up with one complete archive per export id and no debris.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import sqlalchemy as sa
from lancedb.expr import col, lit

from encaptio_data import audit, authz
from encaptio_data.accounts import get_organization, parse_uuid
from encaptio_data.content.files import open_content, user_metadata
from encaptio_data.db.migrate import head_revision
from encaptio_data.db.models import Content, ContentExtraction, utcnow
from encaptio_data.errors import InvalidInputError
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform
from encaptio_data.portability import links
from encaptio_data.portability.archive import COPY_BYTES, FORMAT, MANIFEST, ArchiveRefusedError, verify_archive
from encaptio_data.portability.formats import BATCH_ROWS, EXTENSIONS, RowWriter, check_format, table_columns
from encaptio_data.portability.scope import owned_tables, platform_tables, rows_of
from encaptio_data.search.index import CHUNKS_TABLE, SCHEMA as CHUNKS_SCHEMA
from encaptio_data.stores.objects import fsync_dir
from encaptio_data.stores.vectors import VectorStore

EXPORTER = f"encaptio-data {importlib.metadata.version('encaptio-data')} ({FORMAT})"
TEXT_COLUMN = (ContentExtraction.__tablename__, "text")
SEARCH_COLUMNS = [("id", "str"), ("content_id", "str"), ("capsule_id", "str"), ("organization_id", "str"),
                  ("content_type", "str"), ("created_at", "datetime"), ("chunk_index", "int"), ("page", "int"),
                  ("heading", "str"), ("title", "str"), ("text", "str")]
VECTOR_FIELD = CHUNKS_SCHEMA.field("vector")
Progress = Callable[[str], None] | None


@dataclass
class ExportResult:
    export_id: str
    organization_id: str
    format: str
    embeddings: bool
    bytes: int
    sha256: str
    counts: dict[str, int]
    reused: bool
    seconds: float
    path: str | None = None
    key: str | None = None
    token: str | None = None
    expires_at: datetime | None = None
    presigned_url: str | None = None
    notification: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        return data


def archive_name(organization_id: uuid.UUID, export_id: uuid.UUID) -> str:
    return f"encaptio-org-{organization_id}-{export_id}.zip"


class _HashingSink:
    """A write-only stream that hashes what passes through it (a member's sha256 for the manifest)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.bytes += len(view)
        return self._stream.write(view)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self.closed = True


class _Writer:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.files: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def member(self, name: str, *, compress: bool = True) -> Iterator[_HashingSink]:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o600 << 16
        with self.archive.open(info, "w", force_zip64=True) as stream:
            sink = _HashingSink(stream)
            yield sink
        self.files[name] = {"sha256": sink.digest.hexdigest(), "bytes": sink.bytes}


def _write_table(writer: _Writer, platform: Platform, table: sa.Table, organization_id: uuid.UUID,
                 table_format: str) -> int:
    columns = [c for c in table_columns(table) if (table.name, c[0]) != TEXT_COLUMN]
    query = rows_of(table, organization_id).with_only_columns(*(table.c[name] for name, _ in columns))
    with writer.member(f"tables/{table.name}.{EXTENSIONS[table_format]}",
                       compress=table_format != "parquet") as sink:
        rows = RowWriter(sink, columns, table_format)
        with platform.db.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(query)
            for batch in result.mappings().partitions(BATCH_ROWS):
                rows.write([dict(row) for row in batch])
        rows.close()
    return rows.rows


def _content_in_scope(organization_id: uuid.UUID) -> sa.Select:
    return rows_of(Content.__table__, organization_id)


def _write_texts(writer: _Writer, platform: Platform, organization_id: uuid.UUID) -> int:
    scope = _content_in_scope(organization_id).with_only_columns(Content.id).order_by(None)
    query = (sa.select(ContentExtraction.content_id, ContentExtraction.text)
             .where(ContentExtraction.content_id.in_(scope)).order_by(ContentExtraction.content_id))
    count = 0
    with platform.db.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=100).execute(query)
        for content_id, text in result:
            with writer.member(f"text/{content_id}.txt") as sink:
                sink.write((text or "").encode("utf-8"))
            count += 1
    return count


def write_file_member(writer: _Writer, platform: Platform, content: dict[str, Any]) -> dict[str, Any]:
    """Copy one content item's exact object version into the archive, in pieces: the plaintext
    (a file sealed here is sealed again under the importing instance's keys, content.files)."""
    head = platform.objects.head(content["object_key"], content["object_version"])
    with writer.member(f"files/{content['id']}", compress=False) as sink, \
            open_content(platform.objects, KeyStore(platform.settings.keys_dir), content) as stream:
        while chunk := stream.read(COPY_BYTES):
            sink.write(chunk)
    return {"content_id": str(content["id"]), "path": f"files/{content['id']}", "key": content["object_key"],
            "sha256": content["sha256"], "content_type": head.content_type, "metadata": user_metadata(head),
            "uploaded_by": str(content["uploaded_by"]) if content["uploaded_by"] else None}


def _write_files(writer: _Writer, platform: Platform, organization_id: uuid.UUID) -> list[dict[str, Any]]:
    query = _content_in_scope(organization_id).with_only_columns(Content.id, Content.object_key,
                                                                  Content.object_version, Content.sha256,
                                                                  Content.uploaded_by)
    with platform.db.session() as session:
        contents = [dict(row) for row in session.execute(query).mappings()]
    return [write_file_member(writer, platform, content) for content in contents]


def _search_rows(vectors: VectorStore, organization_id: uuid.UUID, with_vectors: bool) -> Iterator[pa.RecordBatch]:
    if CHUNKS_TABLE not in vectors.table_names():
        return
    table = vectors.open_table(CHUNKS_TABLE)
    names = [name for name, _ in SEARCH_COLUMNS] + (["vector"] if with_vectors else [])
    query = table.search().where(col("organization_id") == lit(str(organization_id))).select(names).limit(None)
    yield from query.to_batches(BATCH_ROWS)


def _write_search(writer: _Writer, platform: Platform, organization_id: uuid.UUID, table_format: str,
                  with_vectors: bool) -> int:
    extra = [VECTOR_FIELD] if with_vectors else []
    with writer.member(f"search/chunks.{EXTENSIONS[table_format]}", compress=table_format != "parquet") as sink:
        rows = RowWriter(sink, SEARCH_COLUMNS, table_format, extra)
        for batch in _search_rows(platform.vectors, organization_id, with_vectors):
            data = batch.to_pydict()
            records = [{name: data[name][i] for name, _ in SEARCH_COLUMNS} for i in range(batch.num_rows)]
            rows.write(records, {"vector": batch.column("vector")} if with_vectors else None)
        rows.close()
    return rows.rows


def _embedding_model(platform: Platform, organization_id: uuid.UUID) -> str | None:
    with platform.db.session() as session:
        return session.scalar(sa.select(ContentExtraction.embedding_model)
                              .join(Content, Content.id == ContentExtraction.content_id)
                              .where(Content.organization_id == organization_id,
                                     ContentExtraction.embedding_model.is_not(None)).limit(1))


def write_archive(platform: Platform, organization_id: uuid.UUID, export_id: uuid.UUID, sink: IO[bytes], *,
                  table_format: str, embeddings: bool, clock: Callable[[], datetime] = utcnow,
                  progress: Progress = None) -> dict[str, Any]:
    """Stream the whole archive into sink; returns its manifest."""
    counts: dict[str, int] = {}
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        writer = _Writer(archive)
        for table in owned_tables():
            if progress:
                progress(f"table {table.name}")
            counts[table.name] = _write_table(writer, platform, table, organization_id, table_format)
        if progress:
            progress("extracted text")
        counts["text"] = _write_texts(writer, platform, organization_id)
        if progress:
            progress("content files")
        objects = _write_files(writer, platform, organization_id)
        counts["files"] = len(objects)
        if progress:
            progress("search chunks")
        counts["search_chunks"] = _write_search(writer, platform, organization_id, table_format, embeddings)
        manifest = {
            "format": FORMAT, "export_id": str(export_id), "organization_id": str(organization_id),
            "schema_version": head_revision(), "exporter": EXPORTER, "created_at": clock().isoformat(),
            "table_format": table_format, "embeddings": embeddings,
            "embedding_model": _embedding_model(platform, organization_id),
            "tables": [t.name for t in owned_tables()], "not_exported": platform_tables(),
            "counts": counts, "objects": objects, "files": writer.files,
        }
        info = zipfile.ZipInfo(MANIFEST, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(COPY_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_abandoned_partials(directory: Path, organization_id: uuid.UUID) -> None:
    for partial in directory.glob(f"encaptio-org-{organization_id}-*.zip.partial"):
        with contextlib.suppress(FileNotFoundError), partial.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another process is writing it right now
            partial.unlink(missing_ok=True)



def _build(platform: Platform, organization_id: uuid.UUID, export_id: uuid.UUID, target: Path, *,
           table_format: str, embeddings: bool, clock: Callable[[], datetime], progress: Progress
           ) -> tuple[dict[str, Any], bool]:
    """The archive at target: the finished one if this export id already completed, else written now."""
    head = head_revision()
    if target.exists():
        try:
            return verify_archive(target, schema_version=head), True
        except ArchiveRefusedError:
            target.unlink()  # an archive that no longer verifies is rebuilt, never handed out
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_partials(target.parent, organization_id)
    partial = target.with_name(target.name + ".partial")
    # Truncated only once locked: a live writer of the same export id keeps its file intact.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as sink:
        try:
            fcntl.flock(sink, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInputError(f"export {export_id} is being written by another process") from None
        sink.truncate(0)
        try:
            manifest = write_archive(platform, organization_id, export_id, sink, table_format=table_format,
                                     embeddings=embeddings, clock=clock, progress=progress)
            sink.flush()
            os.fsync(sink.fileno())
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)
    fsync_dir(target.parent)
    return manifest, False


def export_organization(platform: Platform, organization_id: str | uuid.UUID, *, table_format: str = "json",
                        out_dir: Path | str | None = None, link: bool = False, embeddings: bool | None = None,
                        export_id: str | uuid.UUID | None = None, webhook_url: str | None = None,
                        operator: authz.Principal | str | None = None, clock: Callable[[], datetime] = utcnow,
                        progress: Progress = None) -> ExportResult:
    """Export every row, file, text, search chunk and aggregate of one organization.

    out_dir: write the ZIP there. link: store it (sealed) in the object store and return a
    token valid for 7 days (and on S3 a presigned URL), for `download`. Embeddings are
    included by default in Parquet and cannot be in JSON or CSV (an importer re-embeds).
    The operator needs the export_org permission in the organization (authz.py).
    """
    started = time.monotonic()
    check_format(table_format)
    if (out_dir is None) == (not link):
        raise InvalidInputError("give either an output directory (--out DIR) or --link, not both or neither")
    embeddings = table_format == "parquet" if embeddings is None else embeddings
    if embeddings and table_format != "parquet":
        raise InvalidInputError("embeddings can only be exported in the parquet format")
    org_uuid = parse_uuid(organization_id, "organization")
    principal = authz.authorize(platform, operator, authz.Permission.EXPORT_ORG, org_uuid)
    with platform.db.session() as session:
        get_organization(session, org_uuid)
    export_uuid = parse_uuid(export_id, "export") if export_id else uuid.uuid4()
    directory = Path(out_dir) if out_dir is not None else platform.settings.root / "exports" / "organizations"
    target = directory.expanduser().resolve() / archive_name(org_uuid, export_uuid)

    manifest, reused = _build(platform, org_uuid, export_uuid, target, table_format=table_format,
                              embeddings=embeddings, clock=clock, progress=progress)
    if manifest["table_format"] != table_format or manifest["organization_id"] != str(org_uuid):
        raise InvalidInputError(f"export {export_uuid} already exists as a {manifest['table_format']} export of "
                                f"organization {manifest['organization_id']}: use another export id")
    result = ExportResult(export_id=str(export_uuid), organization_id=str(org_uuid), format=table_format,
                          embeddings=bool(manifest["embeddings"]), bytes=target.stat().st_size,
                          sha256=_file_sha256(target), counts=manifest["counts"], reused=reused, seconds=0.0)
    if link:
        stored = links.store_archive(platform, target, org_uuid, export_uuid, clock=clock)
        issued = links.issue_link(platform, org_uuid, export_uuid, clock=clock)
        result.key, result.token, result.expires_at = stored["key"], issued["token"], issued["expires_at"]
        result.presigned_url = issued["presigned_url"]
        target.unlink()  # the stored copy is the delivery; the working copy would be a second one
    else:
        result.path = str(target)
    if not reused:
        audit.append(platform.db, actor=principal.actor, action="organization.exported", organization_id=org_uuid,
                     target=str(export_uuid), details={"format": table_format, "bytes": result.bytes,
                                                       "sha256": result.sha256, "counts": result.counts,
                                                       "link": link})
    result.seconds = round(time.monotonic() - started, 3)
    payload = {"event": "organization.export.completed", "export_id": result.export_id,
               "organization_id": result.organization_id, "format": table_format, "bytes": result.bytes,
               "sha256": result.sha256, "path": result.path, "key": result.key, "token": result.token,
               "expires_at": result.expires_at.isoformat() if result.expires_at else None,
               "presigned_url": result.presigned_url}
    result.notification = links.notify(links.webhook_url(platform, webhook_url), payload)
    return result


