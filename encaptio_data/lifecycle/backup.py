"""Backups of the relational store, their verification, and restore to a point in time.

Two engines, one set of functions (``run_backup``, ``list_backups``, ``verify_backup``,
``restore``), chosen by the database the platform uses:

* **SQLite (embedded default).** A consistent snapshot taken online (writers keep going): the
  live file itself, pinned by a read transaction that no checkpoint can write under
  (``pinned_snapshot``), or where that cannot be had a copy through SQLite's backup API inside
  one read transaction. It is encrypted with AES-256-GCM on two threads under a
  fresh per-backup data key wrapped by the master key and stored in the object store as
  ``backups/sqlite/<snapshot time>-<id>.db.enc``; then the manifest of the same copy (its
  sha256; integrity check; row count, schema digest and a digest over the rows in primary-key
  order, per table) is stored beside it as ``.manifest.json``. The master
  key never travels with the backup; the key id does.
* **PostgreSQL (production).** pgBackRest (see ``pgbackrest.py``): full and incremental
  backups to repo1, replicated into repo2 (the cross-region copy; or a second full backup there
  with ``repo2_mode="backup"``), WAL continuously to both, a named restore point with the
  manifest of exactly what it holds, and ``pgbackrest verify`` of both repositories after each
  backup (reported as its own phase).

Restore semantics. SQLite has no WAL archive, so a restore to time T is the **nearest backup
whose snapshot was taken at or before T**: it holds every transaction committed before that
snapshot and nothing after it (transactions committed between the snapshot and T are lost;
that gap is the RPO). PostgreSQL replays archived WAL up to T exactly: it holds every
transaction committed at or before T and none after.

The erasure ledger. A backup predates erasures made after it. So before restoring, the ledger
(and the backup catalog, which the restore would otherwise roll back too) is read from the
*current* database; after restoring it is merged into the restored one and
``privacy.erasure.replay_ledger`` erases again every subject it names. A restore into a scratch
database replays against throwaway stores, so re-erasing there never touches live objects,
vectors or cache, but the same key store (subject references are keyed hashes).

Restoring the live PostgreSQL cluster (``restore(platform, at, "live")``) needs the app stopped
(no other client sessions): it reads the ledger, writes a marker commit and waits for WAL
archiving, stops the cluster with pg_ctl, runs ``pgbackrest restore --delta`` to the target,
starts it, waits for promotion onto a new timeline (archiving continues from there), runs the
migrations, merges the ledger and replays it. For a scratch copy give an empty directory: it is
restored, started on a spare port with archiving off, checked, re-erased and stopped again.

Retention is not decided here: the retention purge (``lifecycle.purge``, data class
``backups``, a 30-day rolling window that legal holds suspend) deletes old backup rows and the
objects their ``location`` and ``manifest_key`` name; pgBackRest expires its repositories by
``repo*-retention-full``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import sqlite3
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from adbc_driver_sqlite import dbapi as adbc_sqlite
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encaptio_data import audit, authz
from encaptio_data import keys as envelope
from encaptio_data.authz import Permission, Principal
from encaptio_data.db.enums import BackupKind, BackupStatus
from encaptio_data.db.models import AuditEntry, Backup, ErasureLedger, User, utcnow
from encaptio_data.db.session import Database
from encaptio_data.errors import EncaptioError, IntegrityError, InvalidInputError, NotFoundError, PermissionDeniedError
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle import pgbackrest as pgb
from encaptio_data.platform import Platform
from encaptio_data.settings import Settings
from encaptio_data.stores.objects import fsync_dir

log = logging.getLogger(__name__)

BACKUP_PREFIX = "backups/"
SQLITE_PREFIX = "backups/sqlite/"
POSTGRES_PREFIX = "backups/postgresql/"
LIVE = "live"
FORMAT = "encaptio-backup/1"
CHUNK_BYTES = 8 * 1024 * 1024
# Decrypted chunks are written a megabyte at a time. A write of 2 MiB or more gets the page cache
# in large folios, and on a VM whose balloon hands freed memory back to the host those come from
# memory that must be faulted in again: 219 MB in 8 MiB writes took 0.33-0.57 s a few seconds
# after memory was freed, in 1 MiB writes 0.04 s either way (session 11, Linux 6.18, Firecracker);
# the object store writes in 1 MiB pieces already, and SQLite in pages. Any sink may be a file.
_WRITE_PIECE = 1024 * 1024
_MAGIC = b"ENCBAK1\n"
_FRAME = struct.Struct(">BI")  # keys.seal_frames' frame header: final flag, sealed length
# Where a frame's ciphertext starts (after its header, the envelope's magic and nonce), and the tag after it.
_SEALED_AT = _FRAME.size + len(envelope.ENVELOPE_MAGIC) + envelope.NONCE_BYTES
_TAG_BYTES = 16
_MAX_HEADER = 64 * 1024
_STAMP = "%Y%m%dT%H%M%S.%fZ"
# How a SQLite manifest digests each table's rows (recorded per table; absent means QUOTED_ROWS).
COLUMNS = "columns/1"
QUOTED_ROWS = "quote-rows/1"
# How a SQLite backup took its snapshot (recorded in its manifest).
PINNED_FILE = "pinned-file"
BACKUP_API = "backup-api"


class BackupError(EncaptioError):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


class BackupIntegrityError(IntegrityError):
    """A backup file failed a check (checksum, authentication, structure, manifest): it is refused."""


# -- the encrypted file format ---------------------------------------------------------------------
#
# MAGIC | u32 header length | header JSON | frames...
# frame = u8 final | u32 length | keys.encrypt(data key, chunk, AAD = sha256(header) | u64 index | final)
#
# Each chunk is sealed with the platform's AES-256-GCM envelope helper. The associated data
# binds every chunk to this file's header, to its position and to whether it is the last one, so
# chunks cannot be reordered, dropped, spliced from another backup or cut off at the end.

def _sealing_header(keys: KeyStore, label: str, context: dict[str, Any] | None,
                    chunk_bytes: int) -> tuple[bytes, bytes, bytes]:
    """A fresh data key, the file's opening bytes (magic, length, header) and the header's digest."""
    data_key = secrets.token_bytes(envelope.KEY_BYTES)
    wrapped = envelope.encrypt(keys.master_key(), data_key, f"encaptio-backup-key:{label}".encode())
    header = json.dumps({"format": FORMAT, "label": label, "key_id": keys.master_key_id(),
                         "wrapped_key": wrapped.hex(), "cipher": "AES-256-GCM", "chunk_bytes": chunk_bytes,
                         "context": context or {}}, sort_keys=True).encode()
    return data_key, _MAGIC + len(header).to_bytes(4, "big") + header, hashlib.sha256(header).digest()


def seal(keys: KeyStore, source: BinaryIO, *, label: str, context: dict[str, Any] | None = None,
         chunk_bytes: int = CHUNK_BYTES, plaintext_digest: Any = None) -> BinaryIO:
    """A stream of source encrypted under a fresh data key wrapped by the master key.

    label names what is sealed (a backup id, a snapshot file); the wrapped key is bound to it.
    plaintext_digest (a hashlib object) is fed the plaintext as it is read: its checksum without
    a second pass over the file.
    """
    data_key, opening, digest = _sealing_header(keys, label, context, chunk_bytes)

    def pieces() -> Iterator[bytes]:
        yield opening
        yield from envelope.seal_frames(data_key, digest, source, chunk_bytes, plaintext_digest=plaintext_digest)

    return envelope.buffered(pieces())


def seal_file(keys: KeyStore, path: Path, *, label: str, context: dict[str, Any] | None = None,
              chunk_bytes: int = CHUNK_BYTES, workers: int = 2, length: int | None = None,
              patches: dict[int, bytes] | None = None) -> BinaryIO:
    """``seal`` of a file, its chunks encrypted on `workers` threads: the same layout out.

    The chunks are read by position (the length sealed, by default the file's size, fixes which
    one is final), encrypted out of order straight into their frames (the envelope of
    ``keys.encrypt``: magic, nonce, ciphertext and tag) and handed on in order, a few ahead of
    the reader. The buffers are reused: a frame's buffer goes back to the workers once the reader
    has copied it out (the stream hands out copies only), and each worker reads its chunks into
    one buffer of its own; fresh 8 MiB buffers cost page faults that were measured to cost more
    than the encryption. AES-GCM, preadv and pwrite release the GIL, so the object store's own
    hashing and writing of the output overlap them on 2 cores.

    length seals only the file's first bytes; patches ({offset: bytes}) replaces bytes of the
    first chunk in what is sealed (the file is not touched).
    """
    data_key, opening, digest = _sealing_header(keys, label, context, chunk_bytes)
    cipher = AESGCM(data_key)
    size = path.stat().st_size if length is None else length
    count = max(1, math.ceil(size / chunk_bytes))
    if patches and any(offset < 0 or offset + len(data) > min(size, chunk_bytes) for offset, data in patches.items()):
        raise BackupError(f"cannot seal {path}: a patch lies outside its first chunk")
    frame_bytes = _SEALED_AT + chunk_bytes + _TAG_BYTES
    spare_frames: list[bytearray] = []  # list.append and list.pop are atomic
    buffers = threading.local()

    def sealed(fd: int, index: int) -> tuple[bytearray, int]:
        length = min(chunk_bytes, size - index * chunk_bytes)
        if getattr(buffers, "plain", None) is None:
            buffers.plain = bytearray(chunk_bytes)
        plain = memoryview(buffers.plain)[:length]
        if os.preadv(fd, [plain], index * chunk_bytes) != length:
            raise BackupError(f"{path} changed size while it was being sealed")
        if index == 0:
            for offset, data in (patches or {}).items():
                plain[offset:offset + len(data)] = data
        final = index == count - 1
        nonce = secrets.token_bytes(envelope.NONCE_BYTES)
        try:
            frame = spare_frames.pop()
        except IndexError:
            frame = bytearray(frame_bytes)
        used = _SEALED_AT + length + _TAG_BYTES
        _FRAME.pack_into(frame, 0, 1 if final else 0, used - _FRAME.size)
        frame[_FRAME.size:_SEALED_AT] = envelope.ENVELOPE_MAGIC + nonce
        cipher.encrypt_into(nonce, plain, envelope.frame_aad(digest, index, final),
                            memoryview(frame)[_SEALED_AT:used])
        return frame, used

    def pieces() -> Iterator[bytes]:
        fd = os.open(path, os.O_RDONLY)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                ahead = [pool.submit(sealed, fd, index) for index in range(min(count, workers * 2))]
                yield opening
                for index in range(count):
                    frame, used = ahead.pop(0).result()
                    if index + len(ahead) + 1 < count:
                        ahead.append(pool.submit(sealed, fd, index + len(ahead) + 1))
                    yield memoryview(frame)[:used]  # type: ignore[misc]
                    # Resumed: the reader has copied the whole frame out.
                    spare_frames.append(frame)
        finally:
            os.close(fd)

    return envelope.buffered(pieces())


def read_header(stream: BinaryIO, *, name: str) -> tuple[dict[str, Any], bytes]:
    magic = envelope.read_exact(stream, len(_MAGIC))
    if magic != _MAGIC:
        raise BackupIntegrityError(f"{name} is not an encaptio backup file (bad magic): refused")
    size = int.from_bytes(envelope.read_exact(stream, 4), "big")
    if not 0 < size <= _MAX_HEADER:
        raise BackupIntegrityError(f"{name} has a damaged header (length {size}): refused")
    raw = envelope.read_exact(stream, size)
    try:
        header = json.loads(raw)
    except ValueError:
        raise BackupIntegrityError(f"{name} has a damaged header (not JSON): refused") from None
    if header.get("format") != FORMAT:
        raise BackupIntegrityError(f"{name} has format {header.get('format')!r}, not {FORMAT}: refused")
    return header, raw


def master_key_for(keys: KeyStore, key_id: str) -> bytes | None:
    """The master key with this id: the current one, the next one mid-rotation, or one a rotation
    retired. Backups are never re-wrapped (they are immutable and expire within 30 days), so the
    master that wrapped a backup must stay readable as long as the backup exists.
    """
    if keys.master_key_id() == key_id:
        return keys.master_key()
    # keys.py keeps these files but offers no lookup by id that includes retired masters.
    for path in (keys.root / "master.next.key", keys.root / "retired" / f"master-{key_id}.key"):
        if path.exists():
            key = path.read_bytes()
            if envelope._key_id(key) == key_id:
                return key
    return None


def _data_key(keys: KeyStore, header: dict[str, Any], name: str) -> tuple[bytes, int]:
    """The data key a sealed file's header wraps, and its chunk size; refuses a wrong key by name."""
    master = master_key_for(keys, str(header.get("key_id")))
    if master is None:
        raise BackupIntegrityError(f"{name} was encrypted under master key {header.get('key_id')}, but the key store "
                                   f"holds key {keys.master_key_id()} (and no retired key of that id): wrong key, "
                                   "refused")
    try:
        wrapped = bytes.fromhex(header["wrapped_key"])
        label, chunk_bytes = str(header["label"]), int(header["chunk_bytes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupIntegrityError(f"{name} has a damaged header ({exc}): refused") from None
    try:
        data_key = envelope.decrypt(master, wrapped, f"encaptio-backup-key:{label}".encode(),
                                    what=f"the data key of {name}")
    except IntegrityError as exc:
        raise BackupIntegrityError(f"{exc}: refused") from None
    return data_key, chunk_bytes


def unseal(keys: KeyStore, stream: BinaryIO, sink: BinaryIO, *, name: str) -> dict[str, Any]:
    """Decrypt a sealed stream into sink; every failure names the file and refuses it.

    Returns the header plus the plaintext's size and sha256.
    """
    header, raw = read_header(stream, name=name)
    data_key, chunk_bytes = _data_key(keys, header, name)
    digest = hashlib.sha256(raw).digest()
    plain = hashlib.sha256()
    size = 0
    try:
        for chunk in envelope.open_frames(data_key, digest, stream, chunk_bytes, what=name):
            view = memoryview(chunk)
            for start in range(0, len(view), _WRITE_PIECE):
                sink.write(view[start:start + _WRITE_PIECE])
            plain.update(chunk)
            size += len(chunk)
    except IntegrityError as exc:
        raise BackupIntegrityError(f"{exc}: refused") from None
    return {**header, "plaintext_bytes": size, "plaintext_sha256": plain.hexdigest()}


def unseal_into(keys: KeyStore, stream: BinaryIO, fd: int, *, name: str, workers: int = 2) -> dict[str, Any]:
    """``unseal`` into a file descriptor, the frames decrypted on `workers` threads.

    This thread reads the frames (the object store's stream checks its sha256 as they pass, if
    the caller opened it so) and
    hands each to a worker, which authenticates and decrypts it and writes it at its place in
    the file, a few frames ahead of the reader. The checks are the ones ``keys.open_frames``
    makes, with the same messages: damaged or truncated frames, bytes after the last one, and a
    chunk that fails authentication (never written). Buffers are reused, as in ``seal_file``.
    Returns the header plus the plaintext's size (not its sha256: the caller hashes the file).
    """
    header, raw = read_header(stream, name=name)
    data_key, chunk_bytes = _data_key(keys, header, name)
    digest = hashlib.sha256(raw).digest()
    cipher = AESGCM(data_key)
    overhead = _SEALED_AT - _FRAME.size + _TAG_BYTES
    nonce_at = len(envelope.ENVELOPE_MAGIC)
    sealed_at = _SEALED_AT - _FRAME.size
    spare_sealed: list[bytearray] = []  # list.append and list.pop are atomic
    spare_plain: list[bytearray] = []

    def spare(spares: list[bytearray], size: int) -> bytearray:
        try:
            return spares.pop()
        except IndexError:
            return bytearray(size)

    def opened(index: int, final: bool, sealed: bytearray, length: int, offset: int) -> None:
        what = f"{name} chunk {index}"
        view = memoryview(sealed)[:length]
        try:
            if view[:nonce_at] != envelope.ENVELOPE_MAGIC or length < overhead:
                raise IntegrityError(f"{what} is not an encrypted envelope")
            plain = spare(spare_plain, chunk_bytes)
            out = memoryview(plain)[:length - overhead]
            try:
                cipher.decrypt_into(view[nonce_at:sealed_at], view[sealed_at:],
                                    envelope.frame_aad(digest, index, final), out)
            except InvalidTag:
                # plain may hold unauthenticated bytes: it is dropped, not reused.
                raise IntegrityError(f"{what} failed authentication: tampered, or encrypted under another key"
                                     ) from None
        finally:
            spare_sealed.append(sealed)
        written = 0
        while written < len(out):
            written += os.pwrite(fd, out[written:written + _WRITE_PIECE], offset + written)
        spare_plain.append(plain)

    size = 0
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            ahead: list[Any] = []
            try:
                index = 0
                while True:
                    frame = envelope.read_exact(stream, _FRAME.size)
                    if len(frame) < _FRAME.size:
                        raise IntegrityError(f"{name} is truncated after chunk {index}")
                    final, length = _FRAME.unpack(frame)
                    if length > chunk_bytes + overhead or final not in (0, 1):
                        raise IntegrityError(f"{name} chunk {index} has a damaged frame")
                    sealed = spare(spare_sealed, chunk_bytes + overhead)
                    if _read_into(stream, memoryview(sealed)[:length]) < length:
                        raise IntegrityError(f"{name} is truncated in chunk {index}")
                    ahead.append(pool.submit(opened, index, bool(final), sealed, length, size))
                    size += max(0, length - overhead)
                    del sealed
                    while len(ahead) > workers * 2:  # in order: the first failure is the earliest chunk's
                        ahead.pop(0).result()
                    if final:
                        break
                    index += 1
                if stream.read(1):
                    raise IntegrityError(f"{name} has bytes after its last chunk")
                while ahead:
                    ahead.pop(0).result()
            except BaseException:
                for pending in ahead:
                    pending.cancel()
                raise
    except IntegrityError as exc:
        raise BackupIntegrityError(f"{exc}: refused") from None
    return {**header, "plaintext_bytes": size}


def _read_into(stream: BinaryIO, view: memoryview) -> int:
    """Fill view from stream; fewer bytes only at the end of the stream."""
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled


# -- SQLite: copy and manifest ---------------------------------------------------------------------

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_database_path(database: Database) -> Path:
    path = sa.make_url(database.url).database
    if not path or path == ":memory:":
        raise BackupError(f"cannot back up database {database.url!r}: not a SQLite file")
    return Path(path)


def online_copy(live: Path, destination: Path) -> dict[str, str]:
    """Copy a live SQLite database through the backup API inside one read transaction.

    The read transaction pins a snapshot: the copy holds every transaction committed before
    ``snapshot_at`` and none committed after ``snapshot_confirmed_at`` (the two are
    microseconds apart), while writers go on committing to the WAL meanwhile.
    """
    if not live.exists():
        raise BackupError(f"SQLite database {live} does not exist")
    source = sqlite3.connect(live, timeout=30, isolation_level=None)
    target = sqlite3.connect(destination, isolation_level=None)
    try:
        # The plaintext copy lives only until it is sealed (the object store makes that durable):
        # no journal and no fsync for it.
        target.execute("PRAGMA journal_mode=OFF")
        target.execute("PRAGMA synchronous=OFF")
        source.execute("PRAGMA busy_timeout=30000")
        snapshot_at = utcnow()
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()
        confirmed_at = utcnow()
        source.backup(target)
        source.execute("COMMIT")
        # The copy is a plain rollback-journal file (no -wal/-shm beside it) that opens read-only
        # anywhere; the application switches it back to WAL when it connects.
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()
    os.chmod(destination, 0o600)
    return {"snapshot_at": snapshot_at.isoformat(), "snapshot_confirmed_at": confirmed_at.isoformat()}


# Bytes 18 and 19 of a SQLite file, its write and read format versions: 2 in WAL mode, 1 for a
# rollback journal. A WAL file with nothing left in its log is a rollback-journal file once they
# read 1 (what PRAGMA journal_mode=DELETE writes), which opens read-only anywhere.
_ROLLBACK_JOURNAL_VERSIONS = {18: b"\x01\x01"}


@dataclass(frozen=True)
class PinnedSnapshot:
    """A live WAL database whose file holds a consistent snapshot until the context exits."""

    path: Path
    length: int  # the snapshot's pages: its page count times its page size
    snapshot_at: datetime  # every transaction committed before this is in it
    confirmed_at: datetime  # none committed after this is


@contextmanager
def pinned_snapshot(live: Path, *, attempts: int = 3,
                    writer_wait_seconds: float = 1.0) -> Iterator[PinnedSnapshot | None]:
    """Pin the live database file itself as a snapshot, or yield None where that cannot be done.

    Why by hand: SQLite's backup API writes its copy page by page into a second database, and
    only then can it be encrypted and hashed; the sealing workers read the file directly instead
    (sqlite_dbpage would be the supported way, but neither Python's sqlite3 nor Debian's SQLite
    is built with it). It rests on one rule of SQLite's WAL locking (wal.c, walCheckpoint and
    walTryBeginRead): a reader that starts while the log is completely checkpointed takes read
    lock 0, reads the database file only, and no checkpoint can write the file while it holds
    that lock (a checkpoint needs read lock 0 exclusively). Writers go on committing to the log.

    So: hold the write lock for a moment (no commit can land in between), checkpoint the log
    completely from another connection, start the pinning read transaction, let writers go.
    The checkpoint falls short while some reader still needs an older snapshot, and the write
    lock is not had while a writer keeps its transaction open past writer_wait_seconds; after
    `attempts` tries, or when the database is not in WAL mode, this yields None and the caller
    copies through the backup API instead (which waits for neither).
    """
    if not live.exists():
        raise BackupError(f"SQLite database {live} does not exist")
    holder = sqlite3.connect(live, timeout=30, isolation_level=None)
    try:
        if holder.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            yield None
            return
        pinned = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.05 * attempt)
            pinned = _pin(live, holder, writer_wait_seconds)
            if pinned is not None:
                break
        if pinned is None:
            log.info("%s could not be pinned (a long reader or writer): copying it through the backup API", live)
        yield pinned
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


def _pin(live: Path, holder: sqlite3.Connection, writer_wait_seconds: float) -> PinnedSnapshot | None:
    """One try: the snapshot pinned in holder's read transaction, or None (nothing is held)."""
    writer = sqlite3.connect(live, timeout=writer_wait_seconds, isolation_level=None)
    checkpointer = sqlite3.connect(live, timeout=30, isolation_level=None)
    try:
        # Most of the log is checkpointed before writers are held, so that holding them waits
        # only for what was committed in between (a large log takes a while to copy back).
        checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        try:
            writer.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            return None
        snapshot_at = utcnow()
        _busy, frames, checkpointed = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames != checkpointed:
            return None
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts here
        page_count = holder.execute("PRAGMA page_count").fetchone()[0]
        page_size = holder.execute("PRAGMA page_size").fetchone()[0]
        confirmed_at = utcnow()
    finally:
        if writer.in_transaction:
            writer.execute("ROLLBACK")
        writer.close()
        checkpointer.close()
    return PinnedSnapshot(live, page_count * page_size, snapshot_at, confirmed_at)


def readonly_uri(path: Path, *, pinned: bool = False) -> str:
    """The URI that opens a SQLite file read-only (for sqlite3 and ADBC alike).

    pinned: path is a live WAL database pinned by ``pinned_snapshot``, whose file alone holds the
    snapshot: it is opened immutable, which reads the file and ignores the log (and the locks),
    so the newer commits in the log stay out. Only while the pin is held.
    """
    return f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if pinned else "")


def _open_readonly(database: str) -> sqlite3.Connection:
    conn = sqlite3.connect(database, uri=True)
    conn.text_factory = bytes
    return conn


def _table_shape(conn: sqlite3.Connection, table: str) -> tuple[list[str], str]:
    """The table's columns and the ORDER BY that makes its row order canonical (primary key, else rowid)."""
    info = conn.execute(f"PRAGMA table_info({_q(table)})").fetchall()
    columns = [row[1].decode() for row in info]
    keys = [row[1].decode() for row in sorted(info, key=lambda r: r[5]) if row[5]]
    return columns, ", ".join(_q(k) for k in keys) if keys else "rowid"


def _schema_sha256(conn: sqlite3.Connection, table: str) -> str:
    schema = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return hashlib.sha256(schema[0] if schema and schema[0] else b"").hexdigest()


def _quoted_rows_digest(database: str, table: str) -> dict[str, Any]:
    """Digest ``quote-rows/1``: sha256 over every row rendered as SQL literals, in key order.

    Kept so manifests written before ``columns/1`` still verify, and for tables whose columns
    mix storage classes (which the columnar reader would convert).
    """
    conn = _open_readonly(database)
    try:
        columns, order = _table_shape(conn, table)
        # quote() renders every value as an SQL literal (blobs as X'..', reals with 15 digits),
        # inside SQLite: the per-row work stays out of Python.
        expression = " || char(31) || ".join(f"quote({_q(c)})" for c in columns) or "''"
        digest = hashlib.sha256()
        rows = 0
        cursor = conn.execute(f"SELECT {expression} FROM {_q(table)} ORDER BY {order}")
        while batch := cursor.fetchmany(5000):
            digest.update(b"\n".join(row[0] for row in batch))
            digest.update(b"\n")
            rows += len(batch)
        return {"rows": rows, "sha256": digest.hexdigest(), "schema_sha256": _schema_sha256(conn, table),
                "digest": QUOTED_ROWS}
    finally:
        conn.close()


# The storage class whose values ADBC's SQLite driver reads exactly into each Arrow type. It
# converts silently between some classes (an integer read into a double or text column, a first
# batch of mixed values into text), which is why the digest also takes a census of the classes.
_STORAGE = {pa.int64(): "integer", pa.float64(): "real", pa.string(): "text", pa.large_string(): "text",
            pa.binary(): "blob", pa.large_binary(): "blob"}
_ADBC_DIGEST_ROWS = 65536


class _ColumnHash:
    """One column's three streams (row numbers of its NULLs, value lengths, value bytes), each
    hashed on its own so the result does not depend on where the reader cut its batches."""

    def __init__(self, name: str) -> None:
        self.name, self.type = name, None
        self.nulls, self.lengths, self.data = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()

    def update(self, array: pa.Array, first_row: int) -> bool:
        """Hash one batch of the column; False when the reader changed its type between batches."""
        if self.type is None:
            self.type = array.type
        if array.type != self.type or array.type not in _STORAGE:
            return False
        if array.null_count:
            valid = pc.is_valid(array).to_numpy(zero_copy_only=False)
            self.nulls.update((np.flatnonzero(~valid) + first_row).astype("<i8"))
            array = pc.drop_null(array)
        if _STORAGE[array.type] in ("integer", "real"):
            self.data.update(array.to_numpy(zero_copy_only=True))
            return True
        width = 8 if array.type in (pa.large_string(), pa.large_binary()) else 4
        offsets = np.frombuffer(array.buffers()[1], dtype=np.dtype(f"<i{width}"), count=len(array) + 1,
                                offset=array.offset * width)
        self.lengths.update(np.diff(offsets).astype("<i8"))
        if len(array) and array.buffers()[2] is not None:
            self.data.update(memoryview(array.buffers()[2])[int(offsets[0]):int(offsets[-1])])
        return True

    def exact(self, classes: set[str]) -> bool:
        """True when every non-NULL value the census found has the class this column was read as."""
        return not (classes - {"null"}) or (self.type in _STORAGE and classes - {"null"} == {_STORAGE[self.type]})

    def summary(self) -> list[str]:
        return [self.name, _STORAGE.get(self.type, "null"), self.nulls.hexdigest(), self.lengths.hexdigest(),
                self.data.hexdigest()]


def _storage_census(database: str, table: str, columns: list[str]) -> tuple[int, list[set[str]]]:
    conn = _open_readonly(database)
    try:
        found = conn.execute("SELECT count(*), " + ", ".join(
            f"group_concat(DISTINCT typeof({_q(c)}))" for c in columns) + f" FROM {_q(table)}").fetchone()
    finally:
        conn.close()
    return found[0], [set(text.decode().split(",")) if text else set() for text in found[1:]]


def _columnar_digest(database: str, table: str) -> dict[str, Any] | None:
    """Digest ``columns/1``: each column's values as Arrow reads them, in key order; None when a
    column mixes storage classes or the driver cannot read the table (the caller falls back).

    The census of storage classes per column (run beside the read) is what makes the values
    exact (an integer, a double's bits, the bytes of a text or blob) and keeps 5 and '5' apart.
    """
    conn = _open_readonly(database)
    try:
        columns, order = _table_shape(conn, table)
        schema_sha256 = _schema_sha256(conn, table)
    finally:
        conn.close()
    if not columns:
        return None
    hashes = [_ColumnHash(name) for name in columns]
    rows = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        census = pool.submit(_storage_census, database, table, columns)
        try:
            with adbc_sqlite.connect(database) as adbc, adbc.cursor() as cursor:
                cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(_ADBC_DIGEST_ROWS)})
                cursor.execute(f"SELECT {', '.join(_q(c) for c in columns)} FROM {_q(table)} ORDER BY {order}")
                for batch in cursor.fetch_record_batch():
                    if not all(h.update(batch.column(i), rows) for i, h in enumerate(hashes)):
                        return None
                    rows += batch.num_rows
        except (adbc_sqlite.Error, pa.ArrowException, OSError) as exc:
            log.info("table %s of %s: no columnar digest (%s); using %s", table, database, exc, QUOTED_ROWS)
            return None
        counted, classes = census.result()
    if rows != counted or not all(h.exact(c) for h, c in zip(hashes, classes, strict=True)):
        return None
    summary = json.dumps({"rows": rows, "columns": [h.summary() for h in hashes]}, separators=(",", ":"))
    return {"rows": rows, "sha256": hashlib.sha256(summary.encode()).hexdigest(), "schema_sha256": schema_sha256,
            "digest": COLUMNS}


def _table_digest(database: str, table: str, method: str | None = COLUMNS) -> dict[str, Any]:
    """A table's row count and digest by `method` (a manifest entry's ``digest``; None is the
    original ``quote-rows/1``). COLUMNS falls back to QUOTED_ROWS where it cannot be exact, and
    says so in the result, so verification recomputes the same one."""
    if method == COLUMNS:
        return _columnar_digest(database, table) or _quoted_rows_digest(database, table)
    if method in (None, QUOTED_ROWS):
        return _quoted_rows_digest(database, table)
    raise BackupIntegrityError(f"the manifest digests table {table} with {method!r}, which this version of encaptio "
                               f"does not know ({COLUMNS} or {QUOTED_ROWS}): verify it with the version that "
                               "wrote it, or upgrade")


def sqlite_manifest(path: Path, methods: dict[str, Any] | None = None, *, pinned: bool = False) -> dict[str, Any]:
    """Integrity check and per-table row counts and digests of a SQLite file (tables in parallel).

    methods: the manifest tables to verify against; each table is digested the way its entry
    says (entries without ``digest`` predate it and use ``quote-rows/1``). Without it, new
    digests (``columns/1``). pinned: see ``readonly_uri``.
    """
    database = readonly_uri(path, pinned=pinned)

    def integrity_check() -> list[str]:
        checker = _open_readonly(database)
        try:
            return [row[0].decode() for row in checker.execute("PRAGMA integrity_check").fetchall()]
        finally:
            checker.close()

    conn = _open_readonly(database)
    try:
        tables = [row[0].decode() for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name")]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        page_count = conn.execute("PRAGMA page_count").fetchone()[0]
        revision = None
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0].decode() if row else None
    finally:
        conn.close()

    def digest(table: str) -> dict[str, Any]:
        if methods is None or table not in methods:
            return _table_digest(database, table)
        return _table_digest(database, table, methods[table].get("digest"))

    # The integrity check beside the digests (SQLite releases the GIL): on 2 cores the manifest
    # takes about as long as its largest table's digest rather than the two one after the other.
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        checking = pool.submit(integrity_check)
        digests = dict(zip(tables, pool.map(digest, tables)))
        integrity = checking.result()
    return {"integrity_check": integrity, "tables": digests, "page_size": page_size, "page_count": page_count,
            "schema_revision": revision, "sqlite_version": sqlite3.sqlite_version}


def compare_sqlite_tables(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    problems = pgb.compare_tables(expected, actual)
    for table in sorted(set(expected) & set(actual)):
        if expected[table].get("schema_sha256") != actual[table].get("schema_sha256"):
            problems.append(f"table {table} schema differs from the manifest")
    return problems


# -- catalog ------------------------------------------------------------------------------------------

def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_STAMP)


def _from_stamp(text: str) -> datetime:
    return datetime.strptime(text, _STAMP).replace(tzinfo=UTC)


def sqlite_backups(platform: Platform) -> list[dict[str, Any]]:
    """The SQLite backups in the object store (the catalog of record: it survives losing the
    database), oldest first. The snapshot time is in each key, so choosing a backup needs no reads."""
    found = []
    for version in platform.objects.list(SQLITE_PREFIX):
        name = version.key[len(SQLITE_PREFIX):]
        if not name.endswith(".manifest.json"):
            continue
        stamp, _, rest = name.partition("-")
        try:
            snapshot_at = _from_stamp(stamp)
        except ValueError:
            continue
        found.append({"key": version.key, "backup_id": rest[: -len(".manifest.json")], "snapshot_at": snapshot_at})
    return sorted(found, key=lambda entry: entry["snapshot_at"])


def _load_manifest(platform: Platform, key: str) -> dict[str, Any]:
    try:
        return json.loads(platform.objects.get(key))
    except (ValueError, UnicodeDecodeError):
        raise BackupIntegrityError(f"backup manifest {key} is not valid JSON: refused") from None


def _row_dict(row: Backup) -> dict[str, Any]:
    return {"id": str(row.id), "store": row.store, "kind": row.kind.value, "status": row.status.value,
            "started_at": row.started_at, "finished_at": row.finished_at, "location": row.location,
            "size_bytes": row.size_bytes, "sha256": row.sha256, "key_id": row.key_id, "manifest": row.manifest}


def list_backups(platform: Platform, *, store: str | None = None, detail: bool = False) -> list[dict[str, Any]]:
    """Every backup, newest first: the `backups` table, plus SQLite backups the object store holds
    that the table does not (after losing the database, or restoring an older one)."""
    with platform.db.session() as session:
        query = sa.select(Backup).order_by(Backup.started_at.desc())
        if store:
            query = query.where(Backup.store == store)
        rows = [_row_dict(row) for row in session.scalars(query)]
    known = {row["id"] for row in rows}
    if store in (None, "sqlite") and platform.db.dialect == "sqlite":
        for entry in sqlite_backups(platform):
            if entry["backup_id"] not in known:
                rows.append({"id": entry["backup_id"], "store": "sqlite", "kind": "full", "status": "succeeded",
                             "started_at": entry["snapshot_at"], "finished_at": None, "location": entry["key"],
                             "size_bytes": None, "sha256": None, "key_id": None,
                             "manifest": {"catalog": "object store only"}})
    for row in rows:
        manifest = row.get("manifest") or {}
        row["snapshot_at"] = manifest.get("snapshot_at") or manifest.get("restore_point", {}).get("created_at")
        # The per-table digests are for verification, not for listing (hundreds of backups).
        if not detail and isinstance(manifest.get("tables"), dict):
            row["manifest"] = {**{k: v for k, v in manifest.items() if k not in ("tables", "verify")},
                               "tables": len(manifest["tables"])}
    return sorted(rows, key=lambda r: r["started_at"], reverse=True)


def set_backup_row(db: Database, backup_id: uuid.UUID, **values: Any) -> None:
    with db.session() as session:
        row = session.get(Backup, backup_id)
        if row is None:  # the row went with a restore of an older copy: recreate it
            row = Backup(id=backup_id, store=values.get("store", "unknown"), kind=values.get("kind", BackupKind.FULL))
            session.add(row)
        for name, value in values.items():
            setattr(row, name, value)


def _actor(platform: Platform, actor: str | None) -> str:
    return actor or platform.settings.operator or "system:backup"


# -- backups --------------------------------------------------------------------------------------------

def run_backup(platform: Platform, kind: str = "full", *, operator: Principal | str | None) -> dict[str, Any]:
    """Back up the platform's database (SQLite or PostgreSQL); returns what was stored and checked."""
    if kind not in ("full", "incremental"):
        raise InvalidInputError(f"backup kind must be full or incremental, not {kind!r}")
    actor = authz.authorize(platform, operator, Permission.RUN_BACKUP).actor
    if platform.db.dialect == "sqlite":
        return _sqlite_backup(platform, kind, actor)
    return _postgres_backup(platform, kind, actor)


def _sqlite_backup(platform: Platform, kind: str, actor: str) -> dict[str, Any]:
    keys = KeyStore(platform.settings.keys_dir)
    live = sqlite_database_path(platform.db)
    backup_id = uuid.uuid4()
    started = time.monotonic()
    # SQLite's backup API always copies every page: there is no incremental copy to take, so an
    # hourly "incremental" is a complete (small) copy, recorded as full with what was asked.
    with platform.db.session() as session:
        session.add(Backup(id=backup_id, store="sqlite", kind=BackupKind.FULL, status=BackupStatus.RUNNING))
    try:
        with private_workdir("encaptio-backup-") as work, \
                _sealed_snapshot(platform, keys, live, work / "copy.sqlite3", backup_id) as sealed_snapshot:
            snapshot, key, stored, copied, plain = sealed_snapshot
            manifest_key = key.removesuffix(".db.enc") + ".manifest.json"
            # Then the manifest of the same bytes, with both cores: their sha256 (which restores
            # compare with what they decrypt) beside their integrity check and table digests.
            # The object is useless without its manifest, which is written last; a snapshot that
            # fails its checks has its object deleted again.
            sealed = time.monotonic()
            try:
                with ThreadPoolExecutor(max_workers=1) as hasher:
                    hashing = hasher.submit(file_sha256, plain.path, length=plain.length, patches=plain.patches)
                    contents = sqlite_manifest(plain.path, pinned=plain.pinned)
                    plaintext_sha256 = hashing.result()
                manifest_seconds = round(time.monotonic() - sealed, 3)
                if contents["integrity_check"] != ["ok"]:
                    raise BackupIntegrityError(f"the snapshot of {live} fails PRAGMA integrity_check: "
                                               f"{contents['integrity_check'][:3]}")
            except BaseException:
                platform.objects.delete(key, stored.version_id)
                raise
            manifest = {"format": FORMAT, "backup_id": str(backup_id), "store": "sqlite", "kind": "full",
                        "requested_kind": kind, **snapshot, "created_at": snapshot["snapshot_at"],
                        "manifest_key": manifest_key,
                        "source": {"path": str(live), "bytes": plain.length,
                                   "sqlite_version": contents["sqlite_version"],
                                   "page_size": contents["page_size"], "page_count": contents["page_count"],
                                   "schema_revision": contents["schema_revision"]},
                        "tables": contents["tables"], "plaintext_sha256": plaintext_sha256,
                        "key_id": keys.master_key_id(),
                        "encryption": {"cipher": "AES-256-GCM", "chunk_bytes": CHUNK_BYTES,
                                       "data_key": "random per backup, wrapped by the master key"}}
        manifest["object"] = {"key": key, "version_id": stored.version_id, "sha256": stored.sha256,
                              "size": stored.size}
        manifest["finished_at"] = utcnow().isoformat()
        # backup: until the encrypted copy is durable in the object store (what the benchmark
        # compares with sqlite3's backup API); manifest: its sha256, integrity check and digests after.
        manifest["seconds"] = {"copy": round(copied - started, 3), "encrypt_and_store": round(sealed - copied, 3),
                               "backup": round(sealed - started, 3), "manifest": manifest_seconds,
                               "manifest_and_store": round(time.monotonic() - copied, 3)}
        platform.objects.put(manifest_key, json.dumps(manifest, indent=1, sort_keys=True).encode(),
                             content_type="application/json", metadata={"backup-id": str(backup_id)})
    except Exception as exc:
        set_backup_row(platform.db, backup_id, status=BackupStatus.FAILED, finished_at=utcnow(),
                       manifest={"error": str(exc)[:500]})
        audit.append(platform.db, actor=actor, action="backup.failed", target=str(backup_id),
                     details={"store": "sqlite", "error": str(exc)[:300]})
        raise
    set_backup_row(platform.db, backup_id, status=BackupStatus.SUCCEEDED, finished_at=utcnow(), location=key,
             size_bytes=stored.size, sha256=stored.sha256, key_id=keys.master_key_id(), manifest=manifest)
    audit.append(platform.db, actor=actor, action="backup.completed", target=str(backup_id),
                 details={"store": "sqlite", "location": key, "size_bytes": stored.size})
    return {"backup_id": str(backup_id), "store": "sqlite", "kind": "full", "requested_kind": kind,
            "status": "succeeded", "location": key, "manifest_key": manifest_key, "size_bytes": stored.size,
            "sha256": stored.sha256, "key_id": keys.master_key_id(), "snapshot_at": snapshot["snapshot_at"],
            "snapshot_method": snapshot["snapshot_method"], "tables": len(manifest["tables"]),
            "rows": sum(t["rows"] for t in manifest["tables"].values()),
            "seconds": round(time.monotonic() - started, 3), "phases": manifest["seconds"]}


@dataclass(frozen=True)
class _Plaintext:
    """Where the bytes a backup sealed can be read again, for its manifest: the file's first
    `length` bytes with `patches` applied; pinned, the live file, readable only while pinned."""

    path: Path
    length: int
    patches: dict[int, bytes] | None
    pinned: bool


class _SealedSnapshot(NamedTuple):
    snapshot: dict[str, str]  # its times and method
    key: str  # the object's
    stored: Any  # what the object store recorded
    copied: float  # the monotonic time the snapshot was taken (pinned, for a pinned one)
    plain: _Plaintext


@contextmanager
def _sealed_snapshot(platform: Platform, keys: KeyStore, live: Path, copy: Path,
                     backup_id: uuid.UUID) -> Iterator[_SealedSnapshot]:
    """A snapshot of live sealed into the object store, readable again until the context exits.

    Pinned, the live file is sealed as it stands, and the manifest is then read from it while
    it is still pinned: nothing is copied, which on a VM whose fresh memory is slow to fault in
    saves as much again as writing the object. Otherwise the backup API copies it to copy first.
    """
    def stored_as(snapshot: dict[str, str], source: Path, **sealing: Any) -> tuple[str, Any]:
        key = f"{SQLITE_PREFIX}{_stamp(datetime.fromisoformat(snapshot['snapshot_at']))}-{backup_id}.db.enc"
        sealed = seal_file(keys, source, label=str(backup_id), **sealing,
                           context={"backup_id": str(backup_id), "snapshot_at": snapshot["snapshot_at"]})
        return key, platform.objects.put(key, sealed, metadata={"backup-id": str(backup_id),
                                                                "key-id": keys.master_key_id()})

    with pinned_snapshot(live) as pinned:
        if pinned is not None:
            copied = time.monotonic()
            snapshot = {"snapshot_at": pinned.snapshot_at.isoformat(),
                        "snapshot_confirmed_at": pinned.confirmed_at.isoformat(), "snapshot_method": PINNED_FILE}
            key, stored = stored_as(snapshot, live, length=pinned.length, patches=_ROLLBACK_JOURNAL_VERSIONS)
            yield _SealedSnapshot(snapshot, key, stored, copied,
                                  _Plaintext(live, pinned.length, _ROLLBACK_JOURNAL_VERSIONS, pinned=True))
            return
    snapshot = {**online_copy(live, copy), "snapshot_method": BACKUP_API}
    copied = time.monotonic()
    key, stored = stored_as(snapshot, copy)
    yield _SealedSnapshot(snapshot, key, stored, copied, _Plaintext(copy, copy.stat().st_size, None, pinned=False))


def file_sha256(path: Path, block: int = CHUNK_BYTES, *, length: int | None = None,
                patches: dict[int, bytes] | None = None) -> str:
    """The sha256 of a file, read in blocks into one reused buffer (hashlib releases the GIL).

    length and patches: of the file's first `length` bytes, with patches ({offset: bytes}, in the
    first block) in place of what the file holds there; what ``seal_file`` seals given the same.
    """
    digest = hashlib.sha256()
    buffer = bytearray(block)
    view = memoryview(buffer)
    remaining = path.stat().st_size if length is None else length
    with open(path, "rb", buffering=0) as file:
        first = True
        while remaining and (size := file.readinto(view[:min(block, remaining)])):
            if first:
                for offset, data in (patches or {}).items():
                    view[offset:offset + len(data)] = data
                first = False
            digest.update(view[:size])
            remaining -= size
    if remaining:
        raise BackupError(f"{path} is shorter than the {length} bytes to hash")
    return digest.hexdigest()


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    result = call()
    return round(time.monotonic() - started, 3), result


@contextmanager
def private_workdir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A 0700 directory for plaintext copies, outside the data dir (whose files an erasure
    verification scans) and removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def parse_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        return None


def _postgres_backup(platform: Platform, kind: str, actor: str) -> dict[str, Any]:
    """pgBackRest to repo1, the restore point with its manifest, the cross-region copy in repo2,
    then ``pgbackrest verify`` of both repositories (of the new set only, for an incremental).

    Phases (in the manifest's ``seconds``), each ending where the next begins:

    * ``backup``: until the backup can be restored to its restore point from either repository
      (pgBackRest into repo1, the restore point, the WAL through it archived to both, repo1's
      new set replicated into repo2);
    * ``manifest``: the rest of the per-table digests of the restore point's snapshot, which
      start with the restore point and run on the server beside the archiving and replication
      (``digests`` is their whole duration);
    * ``verify``: ``pgbackrest verify`` re-reads both repositories; after an incremental, only
      its set (its files, the earlier sets' files it refers to, its WAL).
    """
    stanza = pgb.PgBackRest.from_environment()
    backup_id = uuid.uuid4()
    started = time.monotonic()
    with platform.db.session() as session:
        session.add(Backup(id=backup_id, store="postgresql", kind=BackupKind(kind), status=BackupStatus.RUNNING))
    phases: dict[str, float] = {}
    try:
        seconds, repo1 = _timed(lambda: stanza.backup("full" if kind == "full" else "incr", repo=1))
        phases["backup_repo1"] = seconds
        copies = [repo1]
        replicate = stanza.repo2_mode == "replicate"
        if not replicate and kind == "full":
            # No replication: the cross-region copy takes every full backup from the database;
            # between fulls it is current through the WAL archive, pushed to both repositories.
            seconds, repo2 = _timed(lambda: stanza.backup("full", repo=2))
            phases["backup_repo2"] = seconds
            copies.append(repo2)
        backed_up = time.monotonic()
        # repo2's copy of repo1's sets (already compressed and encrypted, full or incremental),
        # the way bucket replication copies objects, needs only repo1's finished set: it runs on
        # a thread of its own beside the restore point, the digests and the WAL wait rather than
        # after them (measured: ~0.24 s less per backup of a 1 GB cluster).
        replicating = ThreadPoolExecutor(max_workers=1) if replicate else None
        replication = replicating.submit(_timed, stanza.replicate_backups) if replicating else None

        def beside_the_digests() -> dict[str, Any]:
            # While the server digests the tables: wait until the WAL through the restore point
            # is in both repositories, and until repo2 holds the new set.
            done: dict[str, Any] = {}
            seconds, done["archived"] = _timed(lambda: pgb.switch_and_wait_archived(platform.db.engine))
            phases["wal_archived"] = seconds
            if replication is not None:
                seconds, replicated = replication.result()
                phases["replicate_repo2"] = seconds
                replica = [b for b in stanza.backups(repo=2) if b["label"] == repo1["label"]]
                if not replica:
                    raise BackupIntegrityError(f"backup {repo1['label']} is missing from repo2 after replication")
                copies[1:] = [{**replica[-1], "replicated": replicated}]  # once, should the point be retried
            done["restorable_at"] = time.monotonic()
            return done

        try:
            point = pgb.capture_restore_point(platform.db.engine, f"encaptio-{backup_id}",
                                              alongside=beside_the_digests)
        finally:
            if replicating is not None:
                replicating.shutdown(wait=True)  # never leave the copy running past a failure
        archived = point["alongside"]["archived"]
        restorable = point["alongside"]["restorable_at"]
        phases["digests"] = point["digest_seconds"]
        pointed = time.monotonic()
        # One after the other: verifying one repository beside the other's backup was measured
        # slower on 2 cores (both are CPU-bound; the backup's copy stretched from 11 to 28 s).
        # A full (daily) re-reads the whole repository: every set and every WAL segment kept.
        # An incremental (hourly) reads only its own set, the earlier sets' files it refers to
        # and its WAL: the whole repository is 30 days of backups and WAL, which re-read every
        # hour would outgrow the hour; what lies between is re-read by the next full.
        checks = []
        for copy in copies:
            scope = None if kind == "full" else copy["label"]
            seconds, check = _timed(lambda repo=copy["database"]["repo-key"], scope=scope:
                                    stanza.verify(repo=repo, set_label=scope))
            phases[f"verify_repo{check['repo']}"] = seconds
            checks.append(check)
        failed = [c for c in checks if not c["passed"]]
        if failed:
            files = "; ".join(f for c in failed for f in c["invalid_files"][:5]) or failed[0]["status"]
            raise BackupIntegrityError(f"pgbackrest verify found damage in repo{failed[0]['repo']} of stanza "
                                       f"{stanza.stanza}: {files}")
        manifest = {"format": FORMAT, "backup_id": str(backup_id), "store": "postgresql", "kind": kind,
                    "stanza": stanza.stanza, "label": repo1["label"], "type": repo1["type"],
                    "repo2_mode": stanza.repo2_mode,
                    "copies": [{"repo": c["database"]["repo-key"], "label": c["label"], "type": c["type"],
                                "size": c["info"]["size"], "repository_size": c["info"]["repository"]["delta"],
                                "started_at": _epoch(c["timestamp"]["start"]),
                                "stopped_at": _epoch(c["timestamp"]["stop"]),
                                **({"replicated": c["replicated"]} if "replicated" in c else {}),
                                "wal": c["archive"]} for c in copies],
                    "restore_point": {k: point[k] for k in ("restore_point", "lsn", "created_at")},
                    "snapshot_at": point["created_at"], "created_at": point["created_at"],
                    "tables": point["tables"], "server_version_num": pgb.server_version(platform.db.engine),
                    "archived": archived, "verify": checks,
                    "key_id": stanza.passphrase_id(),
                    "seconds": {"backup": round(restorable - started, 3),
                                "manifest": round(pointed - restorable, 3),
                                "pgbackrest": round(backed_up - started, 3),
                                "restore_point_and_manifest": round(pointed - backed_up, 3),
                                "verify": round(time.monotonic() - pointed, 3), **phases}}
        manifest_key = f"{POSTGRES_PREFIX}{repo1['label']}-{backup_id}.manifest.json"
        platform.objects.put(manifest_key, json.dumps(manifest, indent=1, sort_keys=True, default=str).encode(),
                             content_type="application/json", metadata={"backup-id": str(backup_id)})
    except Exception as exc:
        set_backup_row(platform.db, backup_id, status=BackupStatus.FAILED, finished_at=utcnow(),
                       manifest={"error": str(exc)[:500]})
        audit.append(platform.db, actor=actor, action="backup.failed", target=str(backup_id),
                     details={"store": "postgresql", "error": str(exc)[:300]})
        raise
    location = f"pgbackrest:{stanza.stanza}/{repo1['label']}"
    set_backup_row(platform.db, backup_id, status=BackupStatus.SUCCEEDED, finished_at=utcnow(), location=location,
             size_bytes=repo1["info"]["repository"]["delta"], key_id=stanza.passphrase_id(), manifest=manifest)
    audit.append(platform.db, actor=actor, action="backup.completed", target=str(backup_id),
                 details={"store": "postgresql", "location": location, "repos": len(copies)})
    return {"backup_id": str(backup_id), "store": "postgresql", "kind": kind, "status": "succeeded",
            "location": location, "label": repo1["label"], "type": repo1["type"],
            "repos": [c["database"]["repo-key"] for c in copies], "restore_point": point["restore_point"],
            "snapshot_at": point["created_at"], "size_bytes": repo1["info"]["repository"]["delta"],
            "tables": len(point["tables"]), "rows": sum(t["rows"] for t in point["tables"].values()),
            "verify": [{"repo": c["repo"], "scope": c["scope"], "passed": c["passed"]} for c in checks],
            "manifest_key": manifest_key,
            "seconds": round(time.monotonic() - started, 3), "phases": manifest["seconds"]}


def setup_postgres_backups(platform: Platform) -> dict[str, Any]:
    """One-time (and repeatable) setup of the stanza from ENCAPTIO_PGBACKREST_*: write its config
    and wrapper, switch WAL archiving on, then create the stanza and check it end to end.

    Turning archive_mode on needs a restart of the cluster, which is the operator's call: the
    first run reports ``restart_required`` and stops there; run it again after the restart.
    """
    stanza = pgb.PgBackRest.from_environment()
    config = stanza.write_config(KeyStore(platform.settings.keys_dir))
    archiving = stanza.configure_archiving(platform.db.engine)
    if archiving["restart_required"]:
        return {"stanza": stanza.stanza, "config": str(config), "status": "restart_required",
                "restart_required": archiving["restart_required"],
                "next": "restart PostgreSQL, then run this again to create and check the stanza"}
    stanza.stanza_create()
    stanza.check()
    return {"stanza": stanza.stanza, "config": str(config), "status": "ready",
            "repositories": [str(stanza.repo1_path), str(stanza.repo2_path)], "key_id": stanza.passphrase_id()}


def _epoch(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


# -- what a restore carries over from the current database -------------------------------------------

def read_carry_over(platform: Platform) -> dict[str, list[dict[str, Any]]]:
    """The erasure ledger and the backup catalog of the current database, read before a restore
    replaces (or rolls back) it."""
    with platform.db.session() as session:
        ledger = [{"id": row.id, "subject_hash": row.subject_hash, "organization_id": row.organization_id,
                   "request_id": row.request_id, "erased_at": row.erased_at}
                  for row in session.scalars(sa.select(ErasureLedger))]
        backups = [{column.key: getattr(row, column.key) for column in sa.inspect(Backup).column_attrs}
                   for row in session.scalars(sa.select(Backup))]
        tail = session.execute(sa.select(AuditEntry.seq, AuditEntry.hash)
                               .order_by(AuditEntry.seq.desc()).limit(1)).first()
    return {"ledger": ledger, "backups": backups,
            "audit_tail": [{"seq": tail[0], "hash": tail[1]}] if tail else []}


def export_ledger(platform: Platform) -> list[dict[str, Any]]:
    """The erasure ledger as JSON-able rows (keyed hashes only), for a restore when the current
    database cannot be read: keep a copy somewhere that outlives it."""
    return [{k: str(v) if v is not None else None for k, v in row.items()}
            for row in read_carry_over(platform)["ledger"]]


def _ledger_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def as_uuid(value: Any) -> uuid.UUID | None:
        return value if isinstance(value, uuid.UUID) or value is None else uuid.UUID(str(value))

    def as_time(value: Any) -> datetime:
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

    return [{"id": as_uuid(r.get("id")) or uuid.uuid4(), "subject_hash": r["subject_hash"],
             "organization_id": as_uuid(r.get("organization_id")), "request_id": as_uuid(r.get("request_id")),
             "erased_at": as_time(r.get("erased_at") or utcnow())} for r in rows]


def merge_carry_over(db: Database, carried: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Put the carried ledger and catalog into a restored database: ledger rows it lacks are added
    (matched by subject hash), catalog rows take their newer, pre-restore state."""
    added = 0
    with db.session() as session:
        present = set(session.scalars(sa.select(ErasureLedger.subject_hash)))
        for row in _ledger_rows(carried.get("ledger", [])):
            if row["subject_hash"] not in present:
                session.add(ErasureLedger(**row))
                present.add(row["subject_hash"])
                added += 1
        catalog = 0
        for values in carried.get("backups", []):
            existing = session.get(Backup, values["id"])
            if existing is None:
                session.add(Backup(**values))
            else:
                for name, value in values.items():
                    setattr(existing, name, value)
            catalog += 1
    return {"ledger_rows_added": added, "catalog_rows": catalog}


def erased_subjects_present(db: Database, keys: KeyStore) -> int:
    """Users in db whose keyed reference the ledger lists: must be 0 after a replay."""
    from encaptio_data.privacy.subjects import is_erased

    with db.session() as session:
        erased = set(session.scalars(sa.select(ErasureLedger.subject_hash)))
        return sum(1 for user in session.scalars(sa.select(User)) if is_erased(keys, user, erased))


class _RestoreSettings(Settings):
    """Settings of a restored copy: its own database and throwaway stores, the live key store."""

    live_keys_dir: Path

    @property
    def keys_dir(self) -> Path:
        return self.live_keys_dir


@contextmanager
def scratch_platform(platform: Platform, database_url: str) -> Iterator[Platform]:
    """A Platform over a restored database whose other stores are empty temporary ones.

    Replaying the ledger erases the returning subjects from the restored rows; against the live
    stores it would also compact and clean up the live vector table (ending its recovery window)
    for rows that are already gone.
    """
    with private_workdir("encaptio-restore-stores-") as stores:
        settings = _RestoreSettings(data_dir=stores, database_url=database_url, object_store=str(stores / "objects"),
                                    lancedb_uri=str(stores / "lancedb"), redis_url="",
                                    live_keys_dir=platform.settings.keys_dir)
        scratch = Platform(settings)
        try:
            yield scratch
        finally:
            scratch.close()


def _replay(target: Platform, carried: dict[str, list[dict[str, Any]]], actor: str) -> dict[str, Any]:
    from encaptio_data.db.migrate import upgrade
    from encaptio_data.privacy.erasure import replay_ledger

    started = time.monotonic()
    upgrade(target.db)  # a backup may predate the current schema
    merged = merge_carry_over(target.db, carried)
    replayed = replay_ledger(target, actor=actor)
    present = erased_subjects_present(target.db, KeyStore(target.settings.keys_dir))
    return {"ledger_rows_added": merged["ledger_rows_added"], "catalog_rows": merged["catalog_rows"],
            "subjects_erased_again": len(replayed), "erased_subjects_present": present,
            "seconds": round(time.monotonic() - started, 3)}


def make_check(name: str, passed: bool, detail: Any = None) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


# -- SQLite restore -------------------------------------------------------------------------------------

def nearest_sqlite_backup(platform: Platform, at: datetime) -> dict[str, Any]:
    """The backup whose snapshot is the latest at or before `at`."""
    entries = [e for e in sqlite_backups(platform) if e["snapshot_at"] <= at]
    if not entries:
        raise BackupError(f"no SQLite backup was taken at or before {at.isoformat()}")
    return entries[-1]


def _find_sqlite(platform: Platform, backup_id: str) -> dict[str, Any]:
    for entry in sqlite_backups(platform):
        if entry["backup_id"] == str(backup_id):
            return entry
    raise NotFoundError(f"no SQLite backup {backup_id} in {platform.objects.uri}/{SQLITE_PREFIX}")


def materialize_sqlite(platform: Platform, entry: dict[str, Any], directory: Path, *,
                       hash_object: bool = True) -> tuple[Path, dict[str, Any]]:
    """Download, authenticate, decrypt and check one backup into a new file in directory.

    Refuses (BackupIntegrityError naming the file) on any failed check; the partial file is removed.
    """
    keys = KeyStore(platform.settings.keys_dir)
    manifest = _load_manifest(platform, entry["key"])
    obj = manifest["object"]
    name = obj["key"]
    started = time.monotonic()
    checks: list[dict[str, Any]] = []
    directory.mkdir(parents=True, exist_ok=True)
    fd, partial_name = tempfile.mkstemp(prefix=f".restore-{entry['backup_id'][:8]}-", suffix=".partial", dir=directory)
    partial = Path(partial_name)
    try:
        head = platform.objects.head(name, obj["version_id"])
        if head.sha256 != obj["sha256"]:
            raise BackupIntegrityError(f"{name}: the stored sha256 {head.sha256} is not the recorded "
                                       f"{obj['sha256']}: refused")
        try:
            with platform.objects.open(name, obj["version_id"], verify=hash_object) as stream:
                opened = unseal_into(keys, stream, fd, name=name)
            # A restore to the live path renames this file into place: its bytes must be on disk
            # before the rename is (the directory is fsynced after it).
            os.fsync(fd)
        except IntegrityError as exc:
            raise BackupIntegrityError(str(exc) if name in str(exc) else f"{name}: {exc}") from None
        finally:
            os.close(fd)
            fd = -1
        if hash_object:
            checks.append(make_check("sha256", True, obj["sha256"]))
        checks.append(make_check("decrypt", True, {"key_id": opened["key_id"], "cipher": opened["cipher"]}))
        expected = manifest["plaintext_sha256"]
        # Backups before the single-pass upload also carry the checksum in their sealed header.
        if opened["context"].get("plaintext_sha256", expected) != expected:
            raise BackupIntegrityError(f"{name}: the decrypted database does not match its manifest's sha256: refused")
        # Another backup's object (sealed under the same key) authenticates too: its header names it.
        if opened["context"].get("backup_id", manifest["backup_id"]) != manifest["backup_id"]:
            raise BackupIntegrityError(f"{name} holds backup {opened['context'].get('backup_id')}, not "
                                       f"{manifest['backup_id']}: refused")
        fetched = time.monotonic()
        # The checks, before the file is placed: the decrypted file's sha256 against the
        # manifest's (every chunk was already authenticated by its GCM tag, and on verify the
        # object by its sha256), beside the integrity check and table digests, as the backup
        # computed them.
        mismatch = BackupIntegrityError(f"{name}: the decrypted database does not match its manifest's sha256: "
                                        "refused")
        with ThreadPoolExecutor(max_workers=1) as hasher:
            hashing = hasher.submit(file_sha256, partial)
            try:
                contents = sqlite_manifest(partial, manifest["tables"])
            except Exception:
                if hashing.result() != expected:  # the first thing wrong, as when it was checked first
                    raise mismatch from None
                raise
            if hashing.result() != expected:
                raise mismatch
        if contents["integrity_check"] != ["ok"]:
            raise BackupIntegrityError(f"{name}: PRAGMA integrity_check failed: "
                                       f"{contents['integrity_check'][:3]}: refused")
        checks.append(make_check("integrity_check", True, "ok"))
        problems = compare_sqlite_tables(manifest["tables"], contents["tables"])
        if problems:
            raise BackupIntegrityError(f"{name}: {'; '.join(problems[:5])}: refused")
        checks.append(make_check("manifest", True, {"tables": len(contents["tables"]),
                                                    "rows": sum(t["rows"] for t in contents["tables"].values())}))
    except BaseException:
        if fd >= 0:
            os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    return partial, {"manifest": manifest, "checks": checks,
                     "seconds": {"fetch_and_decrypt": round(fetched - started, 3),
                                 "checks": round(time.monotonic() - fetched, 3)}}


def verify_backup(platform: Platform, backup_id: str, *, actor: str | None = None) -> dict[str, Any]:
    """Prove a backup restores: every check, in a private scratch copy. Raises
    BackupIntegrityError naming the file if one fails (and marks the backup failed)."""
    actor = _actor(platform, actor)
    if platform.db.dialect != "sqlite":
        return _verify_postgres(platform, backup_id, actor)
    entry = _find_sqlite(platform, backup_id)
    try:
        with private_workdir("encaptio-verify-") as work:
            path, result = materialize_sqlite(platform, entry, work)
            path.unlink()
    except IntegrityError as exc:
        _mark(platform, entry["backup_id"], BackupStatus.FAILED, {"verify_error": str(exc)[:500]})
        audit.append(platform.db, actor=actor, action="backup.verify_failed", target=entry["backup_id"],
                     details={"error": str(exc)[:300]})
        raise
    _mark(platform, entry["backup_id"], BackupStatus.VERIFIED, {"verified_at": utcnow().isoformat()})
    audit.append(platform.db, actor=actor, action="backup.verified", target=entry["backup_id"],
                 details={"checks": [c["name"] for c in result["checks"]]})
    return {"backup_id": entry["backup_id"], "passed": True, "file": result["manifest"]["object"]["key"],
            "checks": result["checks"], "seconds": result["seconds"]}


def _mark(platform: Platform, backup_id: str, status: BackupStatus, extra: dict[str, Any]) -> None:
    key = parse_uuid(backup_id)
    if key is None:
        return
    with platform.db.session() as session:
        row = session.get(Backup, key)
        if row is not None:
            row.status = status
            row.manifest = {**(row.manifest or {}), **extra}


def require_aware(at: datetime) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidInputError(f"restore time {at!r} must be a timezone-aware datetime (e.g. 2026-05-01T12:00:00Z)")
    return at.astimezone(UTC)


def _restore_actor(platform: Platform, operator: Principal | str | None, ledger: list[dict[str, Any]] | None) -> str:
    """The operator allowed to restore, checked against the current database's users.

    When that database cannot be read at all (the disaster a restore exists for), roles cannot
    be looked up: the restore then goes ahead only on the documented disaster path, an operator
    named and the erasure ledger exported beforehand, and is recorded as break-glass (whoever can
    run it also holds the keys directory that decrypts the backups).
    """
    try:
        return authz.authorize(platform, operator, Permission.RESTORE_BACKUP).actor
    except sa.exc.SQLAlchemyError as exc:
        if isinstance(operator, Principal):
            if not operator.allows(Permission.RESTORE_BACKUP):
                raise PermissionDeniedError(f"permission denied: {operator.label or operator.actor} may not "
                                            "restore_backup (the denial could not be audited: database unreadable)"
                                            ) from None
            return operator.actor
        if ledger is None or not operator or not str(operator).strip():
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
            raise BackupError(f"cannot check the operator's role: the current database cannot be read ({reason}); "
                              "a break-glass restore needs --as EMAIL and the erasure ledger exported with "
                              "export_ledger()") from None
        return authz.actor_ref(KeyStore(platform.settings.keys_dir), str(operator)) + ":break-glass"


def restore(platform: Platform, at: datetime, target: Path | str, *, operator: Principal | str | None,
            ledger: list[dict[str, Any]] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Restore the database as of `at` into `target`, then replay the erasure ledger.

    target is ``"live"`` (the platform's own database; stop the app first) or a path: a SQLite
    file, or on PostgreSQL an empty data directory that is started on a spare port, checked and
    stopped again. The ledger is read from the current database first; if that cannot be read,
    pass `ledger` (rows from ``export_ledger``) rather than restore without it.
    """
    at = require_aware(at)
    actor = _restore_actor(platform, operator, ledger)
    live = str(target) == LIVE
    try:
        carried = read_carry_over(platform)
    except sa.exc.SQLAlchemyError as exc:
        if ledger is None:
            reason = str(getattr(exc, "orig", exc)).strip()[:200]
            raise BackupError(
                f"cannot read the erasure ledger from the current database ({reason}); "
                "a restore without it could bring erased subjects back: pass the ledger exported with export_ledger()"
            ) from None
        carried = {"ledger": [], "backups": [], "audit_tail": []}
    if ledger is not None:
        carried["ledger"] = carried["ledger"] + list(ledger)
    if platform.db.dialect == "sqlite":
        result = _restore_sqlite(platform, at, None if live else Path(target), carried, actor, overwrite)
    else:
        result = _restore_postgres(platform, at, None if live else Path(target), carried, actor)
    details = {k: result[k] for k in ("backup_id", "target", "at", "rto_seconds") if k in result}
    details["ledger"] = {k: v for k, v in result["ledger"].items() if k != "seconds"}
    details["previous_audit_tail"] = carried["audit_tail"]
    audit.append(platform.db, actor=actor, action="backup.restored", target=result.get("backup_id"), details=details)
    return result


def _restore_sqlite(platform: Platform, at: datetime, target: Path | None, carried: dict[str, Any], actor: str,
                    overwrite: bool) -> dict[str, Any]:
    started = time.monotonic()
    entry = nearest_sqlite_backup(platform, at)
    if target is None:
        destination = sqlite_database_path(platform.db)
    else:
        destination = target.expanduser().resolve()
        if destination == sqlite_database_path(platform.db).resolve():
            raise BackupError(f"{destination} is the live database: restore to it with target 'live'")
        if destination.exists() and not overwrite:
            raise BackupError(f"restore target {destination} already exists")
    # A restore skips the sealed object's own sha256, the slowest step on one core: every chunk is
    # authenticated by its GCM tag (bound to the backup's header, its index and the last-chunk
    # flag, so a changed, missing, reordered or appended byte fails, naming the file and chunk),
    # and the decrypted database is compared with the manifest's plaintext sha256 before it is
    # placed. `verify` still hashes the object, which also proves the stored bytes unchanged.
    partial, materialized = materialize_sqlite(platform, entry, destination.parent, hash_object=False)
    placing = time.monotonic()
    try:
        if target is None:
            platform.db.dispose()
            _quiesce(destination)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{destination}{suffix}").unlink(missing_ok=True)
        os.replace(partial, destination)
        fsync_dir(destination.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    placed = time.monotonic()
    if target is None:
        replay = _replay(platform, carried, actor)
    else:
        with scratch_platform(platform, f"sqlite:///{destination}") as scratch:
            replay = _replay(scratch, carried, actor)
    manifest = materialized["manifest"]
    snapshot_at = datetime.fromisoformat(manifest["snapshot_at"])
    checks = materialized["checks"] + [
        make_check("ledger_replayed", replay["erased_subjects_present"] == 0,
                   {k: v for k, v in replay.items() if k != "seconds"})]
    rto = time.monotonic() - started - materialized["seconds"]["checks"]
    return {"store": "sqlite", "backup_id": entry["backup_id"], "file": manifest["object"]["key"],
            "target": LIVE if target is None else str(destination), "at": at.isoformat(),
            "snapshot_at": snapshot_at.isoformat(), "last_transaction_at": snapshot_at.isoformat(),
            "semantics": "nearest backup at or before the requested time",
            "rpo_seconds": round(max(0.0, (at - snapshot_at).total_seconds()), 3),
            "rto_seconds": round(rto, 3), "checks": checks, "ledger": replay,
            "seconds": {**materialized["seconds"], "place": round(placed - placing, 3),
                        "ledger_replay": replay["seconds"]}}


def _quiesce(live: Path) -> None:
    """Fold the WAL into the file and make sure nobody else is using it: the WAL of the old
    database must not be applied to the restored one, and a running app would keep writing."""
    if not live.exists():
        return
    conn = sqlite3.connect(live, timeout=2, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        raise BackupError(f"the live database {live} is in use ({exc}): stop the app (Dagster, web) first") from None
    except sqlite3.DatabaseError as exc:  # damaged beyond opening: the very case a restore is for
        log.warning("live database %s is unreadable (%s); replacing it", live, exc)
        return
    finally:
        conn.close()
    if busy:
        raise BackupError(f"the live database {live} is in use (a reader holds the WAL): stop the app first")



# -- PostgreSQL restore -----------------------------------------------------------------------------

def _scratch_url(platform: Platform, port: int) -> str:
    return sa.make_url(platform.db.url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def restore_postgres_scratch(platform: Platform, stanza: pgb.PgBackRest, data_dir: Path, carried: dict[str, Any],
                             actor: str, *, target_type: str, target: str | None = None,
                             set_label: str | None = None, repo: int | None = None,
                             expected_tables: dict[str, Any] | None = None,
                             inspect: Callable[[sa.Engine], list[dict[str, Any]]] | None = None,
                             keep_running: bool = False) -> dict[str, Any]:
    """Restore into a scratch data directory, start it, check it, replay the ledger, stop it.

    Checks: pg_amcheck (structure and every page read), data checksums on, the manifest's row
    counts and digests when restoring to a backup's restore point, `inspect`'s own checks, and
    offline pg_checksums after the stop. Timings separate recovery (RTO) from the checks.
    """
    started = time.monotonic()
    checks: list[dict[str, Any]] = []
    cluster = stanza.restore_scratch(data_dir, target_type=target_type, target=target, set_label=set_label, repo=repo)
    engine = sa.create_engine(_scratch_url(platform, cluster.port), poolclass=sa.pool.NullPool)
    try:
        cluster.wait_promoted(engine)
        recovered = time.monotonic()
        last_transaction = pgb.last_replayed_transaction(engine)
        with engine.connect() as conn:
            checksums_on = conn.execute(sa.text("SHOW data_checksums")).scalar_one() == "on"
        checks.append(make_check("data_checksums_enabled", checksums_on))
        if expected_tables is not None:
            with engine.connect() as conn, conn.begin():
                actual = pgb.table_digests(conn, list(expected_tables), methods=expected_tables)
            problems = pgb.compare_tables(expected_tables, actual)
            checks.append(make_check("manifest", not problems, problems or {
                "tables": len(actual), "rows": sum(t["rows"] for t in actual.values())}))
        if inspect is not None:
            checks += inspect(engine)
        amcheck = cluster.amcheck()
        checks.append(make_check("amcheck", amcheck["passed"], amcheck["detail"]))
        checked = time.monotonic()
        with scratch_platform(platform, _scratch_url(platform, cluster.port)) as scratch:
            replay = _replay(scratch, carried, actor)
        checks.append(make_check("ledger_replayed", replay["erased_subjects_present"] == 0,
                                 {k: v for k, v in replay.items() if k != "seconds"}))
    finally:
        engine.dispose()
        if not keep_running:
            cluster.stop()
    if not keep_running:
        sums = cluster.verify_checksums()
        checks.append(make_check("page_checksums", sums["passed"], {k: v for k, v in sums.items() if k != "passed"}))
    rto = (recovered - started) + replay["seconds"]
    return {"cluster": cluster, "data_dir": str(data_dir), "port": cluster.port, "repo": repo or 1,
            "checks": checks, "ledger": replay,
            "last_transaction_at": last_transaction.isoformat() if last_transaction else None,
            "rto_seconds": round(rto, 3),
            "seconds": {"restore_and_recover": round(recovered - started, 3), "checks": round(checked - recovered, 3),
                        "ledger_replay": replay["seconds"], "total": round(time.monotonic() - started, 3)}}


def _restore_postgres(platform: Platform, at: datetime, target: Path | None, carried: dict[str, Any],
                      actor: str) -> dict[str, Any]:
    stanza = pgb.PgBackRest.from_environment()
    engine = platform.db.engine
    now = pgb.server_now(engine)
    backups = stanza.backups(repo=1)
    # pgBackRest restores the newest backup whose stop time (whole seconds) is before the target,
    # and compares it with the target truncated to whole seconds too: checked here, before the
    # live cluster is stopped, so an impossible target leaves the database running.
    if not [b for b in backups if b["timestamp"]["stop"] < math.floor(at.timestamp())]:
        raise BackupError(f"no PostgreSQL backup in stanza {stanza.stanza} finished before {at.isoformat()}")
    latest = at >= now
    if not latest:
        # Recovery stops at the first commit after `at`: make sure there is one, and that it (and
        # everything before it) is archived, or recovery would end short of the target and fail.
        audit.append(platform.db, actor=actor, action="backup.restore_requested",
                     details={"at": at.isoformat(), "target": str(target or LIVE)})
    pgb.switch_and_wait_archived(engine)
    target_type, target_time = ("default", None) if latest else ("time", at.isoformat(sep=" "))
    if target is not None:
        result = restore_postgres_scratch(platform, stanza, target, carried, actor, target_type=target_type,
                                          target=target_time)
        cluster = result.pop("cluster")
        result.update({"store": "postgresql", "target": str(target), "at": at.isoformat(),
                       "semantics": "every transaction committed at or before the requested time",
                       "rpo_seconds": rpo_between(at if not latest else now, result["last_transaction_at"]),
                       "start_command": f"{cluster.pg_bin / 'pg_ctl'} -D {cluster.data_dir} -l {cluster.log_file} "
                                        f"start  # as {cluster.os_user}, port {cluster.port}"})
        return result
    return _restore_postgres_live(platform, stanza, at, target_type, target_time, carried, actor, now)


def rpo_between(target: datetime, last_transaction_at: str | None) -> float | None:
    if last_transaction_at is None:
        return None
    return round(max(0.0, (target - datetime.fromisoformat(last_transaction_at)).total_seconds()), 3)


def _restore_postgres_live(platform: Platform, stanza: pgb.PgBackRest, at: datetime, target_type: str,
                           target_time: str | None, carried: dict[str, Any], actor: str,
                           now: datetime) -> dict[str, Any]:
    engine = platform.db.engine
    engine.dispose()
    with engine.connect() as conn:
        others = conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()")).scalar_one()
    if others:
        raise BackupError(f"{others} other sessions are connected to the cluster: stop the app (Dagster, web, "
                          "workers) before restoring the live database")
    engine.dispose()
    live = pgb.Cluster(data_dir=stanza.pg_path, port=stanza.pg_port,
                       socket_dir=stanza.pg_socket_path or Path("/var/run/postgresql"), os_user=stanza.os_user,
                       pg_bin=stanza.pg_bin, log_file=stanza.config_dir / "log" / "postgresql-restored.log")
    started = time.monotonic()
    live.stop()
    stanza.restore(stanza.pg_path, target_type=target_type, target=target_time, delta=True, scratch=False)
    live.start()
    live.wait_promoted(engine)
    recovered = time.monotonic()
    last_transaction = pgb.last_replayed_transaction(engine)
    replay = _replay(platform, carried, actor)
    last = last_transaction.isoformat() if last_transaction else None
    return {"store": "postgresql", "target": LIVE, "at": at.isoformat(),
            "semantics": "every transaction committed at or before the requested time",
            "last_transaction_at": last, "rpo_seconds": rpo_between(min(at, now), last),
            "rto_seconds": round(recovered - started + replay["seconds"], 3), "ledger": replay,
            "checks": [make_check("ledger_replayed", replay["erased_subjects_present"] == 0,
                                  {k: v for k, v in replay.items() if k != "seconds"})],
            "seconds": {"restore_and_recover": round(recovered - started, 3), "ledger_replay": replay["seconds"]}}


def _find_postgres(platform: Platform, backup_id: str) -> dict[str, Any]:
    key = parse_uuid(backup_id)
    with platform.db.session() as session:
        row = session.get(Backup, key) if key else None
        if row is not None and row.store == "postgresql" and row.manifest.get("restore_point"):
            return dict(row.manifest)
    for version in platform.objects.list(POSTGRES_PREFIX):
        if version.key.endswith(f"-{backup_id}.manifest.json"):
            return _load_manifest(platform, version.key)
    raise NotFoundError(f"no PostgreSQL backup {backup_id} with a restore point")


def latest_postgres_manifest(platform: Platform) -> dict[str, Any]:
    with platform.db.session() as session:
        rows = session.scalars(sa.select(Backup).where(
            Backup.store == "postgresql", Backup.status.in_([BackupStatus.SUCCEEDED, BackupStatus.VERIFIED]))
            .order_by(Backup.started_at.desc())).all()
        for row in rows:
            if row.manifest.get("restore_point"):
                return dict(row.manifest)
    raise BackupError("no successful PostgreSQL backup to restore")


def _verify_postgres(platform: Platform, backup_id: str, actor: str) -> dict[str, Any]:
    stanza = pgb.PgBackRest.from_environment()
    manifest = _find_postgres(platform, backup_id)
    checks = []
    for copy in manifest["copies"]:
        result = stanza.verify(repo=copy["repo"], set_label=copy["label"])
        checks.append(make_check(f"pgbackrest_verify_repo{copy['repo']}", result["passed"],
                             result["invalid_files"] or result["status"]))
        if not result["passed"]:
            _mark(platform, backup_id, BackupStatus.FAILED, {"verify_error": result["invalid_files"][:10]})
            audit.append(platform.db, actor=actor, action="backup.verify_failed", target=backup_id,
                         details={"repo": copy["repo"], "invalid_files": result["invalid_files"][:10]})
            raise BackupIntegrityError(f"pgbackrest verify found damage in repo{copy['repo']} of stanza "
                                       f"{stanza.stanza}: {'; '.join(result['invalid_files'][:5]) or result['status']}")
    carried = read_carry_over(platform)
    with scratch_directory(stanza) as work:
        result = restore_postgres_scratch(platform, stanza, work / "data", carried, actor, target_type="name",
                                          target=manifest["restore_point"]["restore_point"],
                                          set_label=manifest["label"], expected_tables=manifest["tables"])
        result.pop("cluster")
    checks += result["checks"]
    passed = all(c["passed"] for c in checks)
    _mark(platform, backup_id, BackupStatus.VERIFIED if passed else BackupStatus.FAILED,
          {"verified_at": utcnow().isoformat(), "verify_checks": checks})
    audit.append(platform.db, actor=actor, action="backup.verified" if passed else "backup.verify_failed",
                 target=backup_id, details={"failed": [c["name"] for c in checks if not c["passed"]]})
    if not passed:
        failed = [c for c in checks if not c["passed"]]
        raise BackupIntegrityError(f"backup {manifest['label']} of stanza {stanza.stanza} failed "
                                   f"{', '.join(c['name'] for c in failed)}: {failed[0]['detail']}")
    return {"backup_id": backup_id, "passed": True, "file": f"pgbackrest:{stanza.stanza}/{manifest['label']}",
            "checks": checks, "seconds": result["seconds"]}


@contextmanager
def scratch_directory(stanza: pgb.PgBackRest) -> Iterator[Path]:
    """A private directory owned by the cluster's OS user for scratch clusters, removed afterwards.

    It goes under the stanza's config dir when that has a `scratch` directory (the system temp
    otherwise): a production-sized restore wants a disk chosen for it.
    """
    parent = stanza.config_dir / "scratch"
    with private_workdir("encaptio-scratch-", parent=parent if parent.is_dir() else None) as work:
        import pwd

        owner = pwd.getpwnam(stanza.os_user)
        os.chown(work, owner.pw_uid, owner.pw_gid)
        yield work
