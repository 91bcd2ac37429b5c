"""Erasure (GDPR Art. 17): the subject's data leaves every store, then a verification proves it.

Order matters for crash safety. Everything outside the database is derived from rows we
still hold (object keys, content ids), so the external stores are cleaned first and the
rows last: a crash at any point leaves the rows in place, and the re-run finds the same
objects, vectors and cache keys (all deletions are idempotent) before removing the rows
in one transaction. The erasure ledger (keyed hashes only) is written in that same
transaction and re-applied after any restore, so a backup cannot bring the subject back.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data import audit
from encaptio_data.db.enums import HoldScope
from encaptio_data.db.sealing import ERASED, sealed_columns
from encaptio_data.db.models import Base, DataSubjectRequest, ErasureLedger, LegalHold, User, utcnow
from encaptio_data.content.files import open_file
from encaptio_data.content.uploads import UPLOADS_PREFIX
from encaptio_data.errors import EncaptioError
from encaptio_data.keys import STREAM_CHUNK_BYTES, KeyDestroyedError, KeyStore
from encaptio_data.lifecycle.archive import erase_from_archive
from encaptio_data.platform import Platform
from encaptio_data.privacy.access import EXPORTS_PREFIX
from encaptio_data.privacy.subjects import SubjectGraph, collect, is_erased, user_ref
from encaptio_data.search.index import open_chunks_table, optimize

SUBJECT_CACHE_TAG = "subject:{}"


class LegalHoldError(EncaptioError):
    """Art. 17(3): data under a legal hold cannot be erased until the hold is released."""


def subject_cache_tag(user_id: uuid.UUID | str) -> str:
    return SUBJECT_CACHE_TAG.format(user_id)


@dataclass
class ErasureReport:
    subject_ref: str
    rows_deleted: dict[str, int] = field(default_factory=dict)
    rows_anonymized: dict[str, int] = field(default_factory=dict)
    object_versions_deleted: int = 0
    vector_rows_deleted: int = 0
    cache_keys_deleted: int = 0
    archived_rows_deleted: int = 0
    data_key_destroyed: bool = False
    affected_capsules: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _holds(session: Session, graph: SubjectGraph) -> list[LegalHold]:
    scopes = [(HoldScope.USER, [graph.user_id]), (HoldScope.ORGANIZATION, [graph.organization_id]),
              (HoldScope.CAPSULE, graph.ids("capsules")), (HoldScope.CONTENT, graph.ids("content"))]
    found = []
    for scope, ids in scopes:
        if ids:
            found += session.scalars(sa.select(LegalHold).where(LegalHold.scope == scope, LegalHold.scope_id.in_(ids),
                                                                LegalHold.released_at.is_(None))).all()
    return found


def _blank(column: sa.Column[Any]) -> Any:
    if column.nullable:
        return None
    return {} if isinstance(column.type, sa.JSON) or getattr(column.type, "json_value", False) else ERASED


def erase_subject(platform: Platform, user_id: uuid.UUID, *, actor: str, request_id: uuid.UUID | None = None
                  ) -> ErasureReport:
    keys = KeyStore(platform.settings.keys_dir)
    with platform.db.session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise EncaptioError(f"subject {user_id} does not exist (already erased?)")
        graph = collect(session, user)
        holds = _holds(session, graph)
        if holds:
            reasons = "; ".join(f"{h.scope.value} {h.scope_id}: {h.reason}" for h in holds)
            raise LegalHoldError(f"erasure blocked by legal hold ({reasons})")
        # None: the key is already destroyed (a shredded row back from a backup); the ledger has it.
        ref = user_ref(keys, user)
    report = ErasureReport(subject_ref=ref or "")
    report.affected_capsules = sorted({str(c) for c in graph.ids("capsules")} |
                                      {str(row["capsule_id"]) for row in graph.rows.get("content", [])})

    content_ids = graph.ids("content")
    keys_to_erase = {row["object_key"] for row in graph.rows.get("content", [])}
    # Uploads into the subject's own capsules that were never registered as content (the
    # pipeline had not run yet, or rejected them) belong to the subject all the same.
    for capsule in graph.rows.get("capsules", []):
        prefix = f"{UPLOADS_PREFIX}{capsule['organization_id']}/{capsule['id']}/"
        keys_to_erase |= {version.key for version in platform.objects.list_versions(prefix)}
    for key in sorted(keys_to_erase):
        report.object_versions_deleted += platform.objects.delete_all_versions(key)
    # Cold archives (Parquet) hold raw events too; compression would hide them from a byte scan.
    report.archived_rows_deleted = erase_from_archive(platform.objects, user_ids=[user_id],
                                                      capsule_ids=graph.ids("capsules"))
    for request in graph.rows.get("data_subject_requests", []):
        for suffix in (".zip.enc", ".zip"):
            key = f"{EXPORTS_PREFIX}{request['organization_id']}/{request['id']}{suffix}"
            report.object_versions_deleted += platform.objects.delete_all_versions(key)
    report.vector_rows_deleted = purge_vectors(platform, content_ids)
    report.cache_keys_deleted = platform.cache.invalidate_tag(subject_cache_tag(user_id))
    from encaptio_data.content.pipeline import invalidate_search_cache

    report.cache_keys_deleted += invalidate_search_cache(
        platform.cache, {(graph.organization_id, uuid.UUID(c)) for c in report.affected_capsules})

    with platform.db.session() as session:
        _delete_rows(session, graph, report)
        if ref and session.scalar(sa.select(ErasureLedger.id).where(ErasureLedger.subject_hash == ref)) is None:
            session.add(ErasureLedger(subject_hash=ref, organization_id=graph.organization_id, request_id=request_id))
        audit.append_in(session, actor=actor, action="subject.erased", organization_id=graph.organization_id,
                        subject_ref=ref, target=str(request_id) if request_id else None,
                        details={k: v for k, v in report.as_dict().items() if k != "affected_capsules"})
    platform.db.compact_deleted()
    report.data_key_destroyed = keys.destroy_data_key(str(user_id))
    return report


def _delete_rows(session: Session, graph: SubjectGraph, report: ErasureReport) -> None:
    # Children before parents, so no foreign key is ever left pointing at a deleted row.
    for table in reversed(Base.metadata.sorted_tables):
        ids = graph.ids(table.name)
        if not ids:
            continue
        pk_columns = list(table.primary_key.columns)
        pk = pk_columns[0] if len(pk_columns) == 1 else sa.tuple_(*pk_columns)
        if table.info.get("erasure") == "anonymize":
            personal = [c for c in table.columns if c.info.get("classification")]
            values = {c.name: _blank(c) for c in personal}
            if table.name == DataSubjectRequest.__tablename__:
                values["user_id"] = None
            result = session.execute(sa.update(table).where(pk.in_(ids)).values(**values))
            report.rows_anonymized[table.name] = result.rowcount
        else:
            result = session.execute(sa.delete(table).where(pk.in_(ids)))
            report.rows_deleted[table.name] = result.rowcount


def purge_vectors(platform: Platform, content_ids: list[uuid.UUID]) -> int:
    """Delete the rows, then make the deletion physical.

    A LanceDB delete only writes a deletion file: the text stays in the data files and in
    every older version. Compaction with a materialize threshold of 0 rewrites the affected
    fragments without the rows, the full-text index is rebuilt (its postings still hold the
    deleted text), and versions older than now are cleaned up. That cleanup also ends the
    table's own 30-day history: the vectors are derived data, rebuildable from the database,
    and an erasure outranks a convenience.
    """
    from lancedb.expr import col

    from encaptio_data.errors import NotFoundError

    try:
        table = open_chunks_table(platform.vectors, create=False)
    except NotFoundError:
        return 0
    ids = [str(c) for c in content_ids]
    before = table.count_rows()
    if ids:
        table.delete(col("content_id").isin(ids))
    deleted = before - table.count_rows()
    with warnings.catch_warnings():
        # optimize() cannot set the materialize threshold; compact_files still can, deprecated or not.
        warnings.simplefilter("ignore", DeprecationWarning)
        table.compact_files(materialize_deletions=True, materialize_deletions_threshold=0.0)
    if any(index.name == "text_idx" for index in table.list_indices()):
        from lancedb.index import FTS

        table.create_index("text", config=FTS(with_position=False), replace=True, name="text_idx")
    with warnings.catch_warnings():
        # LanceDB warns that readers of older versions may fail; searches re-read the latest
        # version on every query (read_consistency_interval=0), and the erasure must not wait.
        warnings.simplefilter("ignore", UserWarning)
        # Not table.optimize(): its index merge re-partitions the vector index (search/index.py).
        optimize(table, keep_versions_for=timedelta(0), delete_unverified=True)
    platform.vectors.purge_history()
    return deleted


def replay_ledger(platform: Platform, *, actor: str = "restore") -> list[str]:
    """After a restore: erase again every subject the ledger (or a destroyed key) says was erased.

    Returns their refs (a shredded subject's as ``shredded:<user id>``: its email is unreadable).
    """
    keys = KeyStore(platform.settings.keys_dir)
    with platform.db.session() as session:
        erased = set(session.scalars(sa.select(ErasureLedger.subject_hash)))
        returning = [(u.id, user_ref(keys, u) or f"shredded:{u.id}") for u in session.scalars(sa.select(User))
                     if is_erased(keys, u, erased)]
    for user_id, _ in returning:
        erase_subject(platform, user_id, actor=actor)
    return [ref for _, ref in returning]


@dataclass
class Verification:
    passed: bool
    remaining_rows: dict[str, int]
    scanned: dict[str, int]
    findings: list[str]
    # Places that hold one of the subject's names and none of their identifiers: for review.
    mentions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def mention_counts(self) -> dict[str, int]:
        """The mentions by kind of store (a place's name can itself hold the name: not kept)."""
        return dict(Counter(mention.split(" ", 1)[0] for mention in self.mentions))


def verify_erased(platform: Platform, user_id: uuid.UUID | None, identifiers: list[str],
                  names: list[str] | None = None) -> Verification:
    """Re-run the access collection and scan every store for the subject's identifiers.

    identifiers (an email, ids) belong to the subject alone: any left fails the verification.
    names are shared: other people have the same one, and other creators' documents mention the
    subject by it, which an erasure of the subject must not delete (nor could ever remove, so
    failing on them would fail the request on every run). A place that holds a name and no
    identifier is reported in ``mentions`` for a privacy officer to review (Art. 17(3) weighs
    such content against the subject's rights) and does not fail the verification.
    """
    from encaptio_data.privacy.access import AccessExports

    graph = AccessExports(platform).collect(user_id)[0] if user_id else SubjectGraph(uuid.UUID(int=0), uuid.UUID(int=0), "")
    unique = _needles(identifiers)
    shared = sorted(set(_needles(names or [])) - set(unique))
    scanned: dict[str, int] = {}
    found = _scan_stores(platform, unique + shared, scanned)
    findings, mentions = found, []
    if found and shared:
        # Only when something was found (the common case reads every store once): read again
        # for the identifiers alone, to tell what holds the subject from what names them.
        findings = _scan_stores(platform, unique, {}) if unique else []
        mentions = sorted(set(found) - set(findings))
    return Verification(passed=not graph.rows and not findings, remaining_rows=graph.counts, scanned=scanned,
                        findings=findings, mentions=mentions)


def _needles(texts: list[str]) -> list[str]:
    # Shorter strings turn up by chance in any large store.
    return sorted({text for text in texts if text and len(text) >= 6})


def _scan_stores(platform: Platform, needles: list[str], scanned: dict[str, int]) -> list[str]:
    findings: list[str] = []
    findings += _scan_database(platform, needles, scanned)
    findings += _scan_objects(platform, needles, scanned)
    findings += _scan_vectors(platform, needles, scanned)
    findings += _scan_cache(platform, needles, scanned)
    if platform.settings.profile == "embedded":
        findings += scan_directory(platform.settings.root, needles, scanned,
                                   skip={platform.settings.keys_dir.resolve()})
    return findings


def _scan_database(platform: Platform, needles: list[str], scanned: dict[str, int]) -> list[str]:
    findings = []
    with platform.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            # Sealed columns hold ciphertext, which a SQL LIKE cannot see into: they are read
            # (and opened by their column type) and searched here instead.
            sealed = sealed_columns(table)
            text_columns = [c for c in table.columns if c not in sealed
                            and (isinstance(c.type, (sa.String, sa.Text, sa.JSON)) or c.name == "id")]
            if text_columns and needles:
                # One pass over the table for every needle and column: on a large table each
                # LIKE '%...%' is a full scan, and an erasure has several identifiers.
                conditions = [sa.cast(c, sa.Text).contains(needle, autoescape=True)
                              for needle in needles for c in text_columns]
                held = sa.select(sa.literal(1)).select_from(table).where(sa.or_(*conditions)).limit(1)
                if conn.execute(held).first() is not None:
                    findings.append(f"database table {table.name} still holds an identifier")
            if sealed:
                for row in conn.execute(sa.select(*sealed)):
                    opened = json.dumps(list(row), default=str, ensure_ascii=False)
                    if any(needle in opened for needle in needles):
                        findings.append(f"database table {table.name} still holds an identifier (sealed column)")
            scanned["tables"] = scanned.get("tables", 0) + 1
    return sorted(set(findings))


def _scan_objects(platform: Platform, needles: list[str], scanned: dict[str, int]) -> list[str]:
    """Every version's plaintext where it can be read: a file sealed for a living subject is scanned
    decrypted (sealing must not blind the proof); one whose key was destroyed is unreadable by
    design, which is what crypto-shredding promises: its bytes are counted, not reported."""
    findings = []
    keys = KeyStore(platform.settings.keys_dir)
    for version in platform.objects.list_versions():
        scanned["object_versions"] = scanned.get("object_versions", 0) + 1
        if version.is_delete_marker:
            continue
        encoded = [needle.encode() for needle in needles]
        held = any(n in version.key.encode() or n in repr(version.metadata).encode() for n in encoded)
        try:
            with open_file(platform.objects, keys, version.key, version.version_id) as stream:
                held = held or stream_holds(stream, encoded)
        except KeyDestroyedError:  # its name and metadata are scanned above
            scanned["shredded_object_versions"] = scanned.get("shredded_object_versions", 0) + 1
        if held:
            findings.append(f"object {version.key} (version {version.version_id}) still holds an identifier")
    return findings


def stream_holds(stream: BinaryIO, needles: list[bytes], chunk_bytes: int = STREAM_CHUNK_BYTES) -> bool:
    """Whether any needle occurs in the stream, read chunk_bytes at a time.

    Object versions and files can be far larger than memory, and a verification scans every
    one of them: each chunk is searched with the last bytes of the one before it, so a needle
    split across two reads is still found, and memory stays at one chunk whatever the size.
    """
    if not needles:
        return False
    overlap = max(map(len, needles)) - 1
    carried = b""
    while piece := stream.read(chunk_bytes):
        window = carried + piece
        if any(needle in window for needle in needles):
            return True
        carried = window[len(window) - overlap:] if overlap else b""
    return False


def _scan_vectors(platform: Platform, needles: list[str], scanned: dict[str, int]) -> list[str]:
    findings = []
    for name in platform.vectors.table_names():
        table = platform.vectors.open_table(name)
        for batch in table.to_lance().to_batches(columns=[f.name for f in table.schema if str(f.type) == "string"]):
            scanned["vector_rows"] = scanned.get("vector_rows", 0) + batch.num_rows
            for column in batch.columns:
                text = "\n".join(v for v in column.to_pylist() if v)
                if any(needle in text for needle in needles):
                    findings.append(f"vector table {name} still holds an identifier")
    return sorted(set(findings))


def _scan_cache(platform: Platform, needles: list[str], scanned: dict[str, int]) -> list[str]:
    findings = []
    for key in platform.cache.keys():
        scanned["cache_keys"] = scanned.get("cache_keys", 0) + 1
        value = platform.cache.get(key) or b""
        if any(needle in key or needle.encode() in value for needle in needles):
            findings.append(f"cache key {key} still holds an identifier")
    return findings


def scan_directory(root: Path, needles: list[str], scanned: dict[str, int], *, skip: set[Path]) -> list[str]:
    """The raw bytes of every file under the data dir: what a disk image or a copy would show."""
    findings = []
    encoded = [n.encode() for n in needles] + [n.encode("utf-16-le") for n in needles]
    for directory, _, files in os.walk(root):
        if any(Path(directory).resolve().is_relative_to(s) for s in skip):
            continue
        for name in files:
            path = Path(directory) / name
            try:
                with open(path, "rb") as file:
                    held = stream_holds(file, encoded)
            except OSError:
                continue
            scanned["files"] = scanned.get("files", 0) + 1
            if held:
                findings.append(f"file {path.relative_to(root)} still holds an identifier")
    return findings
