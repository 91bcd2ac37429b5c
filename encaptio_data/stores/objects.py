"""Versioned object storage: a local directory or an S3 bucket, with the same semantics.

Both stores behave like a versioned S3 bucket. Every put creates a new version and older
versions stay readable by id; a delete without a version id adds a delete marker that hides
the key while keeping its versions; a delete with a version id removes that one version for
good; ``delete_all_versions`` erases a key completely (GDPR erasure). Every object carries the
sha256 of its bytes, checked on every read.

What both stores accept is the intersection of what round-trips through each: keys are
validated by ``validate_key`` before any I/O, and user metadata is held to what survives S3's
HTTP headers (lowercase names, printable ASCII values, 2 KiB in all).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit
from xml.etree import ElementTree

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from encaptio_data.errors import IntegrityError, InvalidKeyError, ObjectNotFoundError, StoreUnavailableError

if TYPE_CHECKING:
    from encaptio_data.settings import Settings

_CHUNK = 1024 * 1024
# A put writes on a thread of its own once its input has passed this size, a few chunks behind;
# the local store then flushes what it wrote to disk every _FLUSH_BEHIND bytes (fdatasync).
_OVERLAP_AFTER = 4 * _CHUNK
_WRITE_AHEAD = 8
_FLUSH_BEHIND = 16 * _CHUNK
_MULTIPART_THRESHOLD = 8 * 1024 * 1024
_MAX_PARTS = 10_000
_MAX_KEY_BYTES = 1024
_SHA256_FIELD = "sha256"
# S3's limit on user metadata, counted with the sha256 field; the local store applies it too so
# that both accept exactly the same puts.
_MAX_METADATA_BYTES = 2048
_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str
    sha256: str  # hex digest of the bytes; empty for delete markers
    size: int
    content_type: str
    last_modified: datetime  # timezone-aware, UTC
    metadata: dict[str, str]
    is_latest: bool
    is_delete_marker: bool = False


@runtime_checkable
class ObjectStore(Protocol):
    uri: str

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        expected_sha256: str | None = None,
    ) -> ObjectVersion:
        """Store data as a new version of key; with expected_sha256, refuse (writing nothing) on mismatch."""

    def get(self, key: str, version_id: str | None = None) -> bytes:
        """The bytes of the latest (or given) version, verified against their sha256."""

    def open(self, key: str, version_id: str | None = None, *, verify: bool = True) -> BinaryIO:
        """A stream of the bytes, verified when read to the end; a stream closed early is not verified.

        verify=False skips the sha256 for a caller that authenticates every byte itself (an
        AES-GCM envelope, whose tags fail on any changed, missing or reordered byte): hashing
        is the slowest part of reading a large object on one core.
        """

    def head(self, key: str, version_id: str | None = None) -> ObjectVersion: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str, version_id: str | None = None) -> None:
        """Without a version id, hide key behind a delete marker; with one, remove that version for good."""

    def delete_all_versions(self, key: str) -> int:
        """Remove every version and delete marker of key; return how many were removed."""

    def list(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """The latest version of each visible key under prefix, in key order."""

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """Every version and delete marker under prefix, in key order, newest first per key."""

    def check(self) -> None:
        """Raise StoreUnavailableError unless the store can be used."""


def validate_key(key: str) -> str:
    """Return key if it is a safe object key, else raise InvalidKeyError naming it."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"object key must be a string, not {type(key).__name__}: {key!r}")
    problem = _key_problem(key)
    if problem:
        raise InvalidKeyError(f"invalid object key {_shorten(key)}: {problem}")
    return key


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode"
    if size > _MAX_KEY_BYTES:
        return f"it is {size} UTF-8 bytes long, more than {_MAX_KEY_BYTES}"
    if any(unicodedata.category(char) == "Cc" for char in key):
        return "it contains a control character"
    if key.startswith("/"):
        return "it starts with '/'"
    if "\\" in key:
        return "it contains a backslash"
    segments = key.split("/")
    if "" in segments:
        return "it has an empty path segment"
    if "." in segments or ".." in segments:
        return "it has a '.' or '..' path segment"
    return None


def _shorten(key: str) -> str:
    text = repr(key)
    return text if len(text) <= 120 else f"{text[:100]}... ({len(key)} characters)"


def _not_found(key: str, version_id: str | None) -> str:
    if version_id is None:
        return f"no object {key!r}"
    return f"no version {version_id!r} of object {key!r}"


def _checked_metadata(content_type: str, metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The user metadata of a put, held to what survives a round trip through S3's headers."""
    if not content_type or not _is_header_text(content_type):
        raise ValueError(f"content_type must be non-empty printable ASCII, not {content_type!r}")
    items = dict(metadata or {})
    for name, value in items.items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name) or name == _SHA256_FIELD:
            raise ValueError(
                f"metadata name {name!r} must be lowercase letters, digits, '-' or '_', and not {_SHA256_FIELD!r}"
            )
        if not _is_header_text(value):
            raise ValueError(f"metadata value of {name!r} must be printable ASCII without outer spaces, not {value!r}")
    size = sum(len(name) + len(value) for name, value in items.items()) + len(_SHA256_FIELD) + 64
    if size > _MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes with its sha256, more than {_MAX_METADATA_BYTES}")
    return items


def _is_header_text(value: object) -> bool:
    return isinstance(value, str) and value == value.strip() and all(" " <= char <= "~" for char in value)


def _chunks(data: bytes | BinaryIO) -> Iterator[bytes]:
    """The bytes of data in pieces, so a file-like input is never held in memory whole."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return iter((bytes(data),))
    read = getattr(data, "read", None)
    if not callable(read):
        raise TypeError(f"data must be bytes or a binary file object, not {type(data).__name__}")
    return _read_chunks(read)


def _read_chunks(read: Callable[[int], Any]) -> Iterator[bytes]:
    while chunk := read(_CHUNK):
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"data.read() returned {type(chunk).__name__}, not bytes: open the file in binary mode")
        yield bytes(chunk)


def _copy_hashing(chunks: Iterable[bytes], write: Callable[[bytes], object], *,
                  flush: Callable[[], object] | None = None, overlap_after: int = _OVERLAP_AFTER) -> tuple[str, int]:
    """The sha256 and size of chunks, each handed to write() in order.

    Up to overlap_after bytes everything happens in this thread (small puts start no thread).
    Past it (a large stream) a writer thread takes the writes, at most _WRITE_AHEAD chunks
    behind, while this thread hashes and produces the next chunks: sha256 and file writes both
    release the GIL, so on 2 cores they overlap. flush, if given, is called by the writer after
    every _FLUSH_BEHIND bytes it wrote: the local store starts writing them to disk there, so
    that its final fsync waits for the tail only.

    Whatever write() or flush() raises is raised here (the chunks after it are dropped
    unwritten); if the chunks themselves fail, the writer is stopped and joined before the error
    propagates, so the caller can remove its file safely.
    """
    digest = hashlib.sha256()
    size = 0
    remaining = iter(chunks)
    for chunk in remaining:
        digest.update(chunk)
        write(chunk)
        size += len(chunk)
        if size > overlap_after:
            break
    else:
        return digest.hexdigest(), size
    pending: queue.Queue[bytes | None] = queue.Queue(maxsize=_WRITE_AHEAD)
    failed: list[BaseException] = []

    def writer() -> None:
        unflushed = 0
        # After a failure it keeps taking chunks (without writing them) so the producer never blocks.
        while (piece := pending.get()) is not None:
            if failed:
                continue
            try:
                write(piece)
                unflushed += len(piece)
                if flush is not None and unflushed >= _FLUSH_BEHIND:
                    flush()
                    unflushed = 0
            except BaseException as exc:  # re-raised in the calling thread
                failed.append(exc)

    thread = threading.Thread(target=writer, name="object-store-writer", daemon=True)
    thread.start()
    try:
        for chunk in remaining:
            if failed:
                break
            digest.update(chunk)
            pending.put(chunk)
            size += len(chunk)
    finally:
        pending.put(None)
        thread.join()
    if failed:
        raise failed[0]
    return digest.hexdigest(), size


def _check_expected(key: str, sha256: str, expected_sha256: str | None) -> None:
    if expected_sha256 is not None and expected_sha256.lower() != sha256:
        raise IntegrityError(f"refused to store {key!r}: its sha256 is {sha256}, not the expected {expected_sha256}")


class _VerifyingReader(io.RawIOBase):
    """Hashes the bytes as they are read and checks them against the recorded sha256 at end of
    stream; with sha256=None it only reads (the caller authenticates the bytes itself)."""

    def __init__(self, source: Any, key: str, version_id: str, sha256: str | None) -> None:
        self._source = source
        self._key = key
        self._version_id = version_id
        self._sha256 = sha256
        self._digest = None if sha256 is None else hashlib.sha256()
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if isinstance(self._source, (io.RawIOBase, io.BufferedIOBase)):
            # A local file: straight into the caller's buffer, without a copy in between.
            size = self._source.readinto(buffer)
            if size:
                if self._digest is not None:
                    self._digest.update(memoryview(buffer)[:size])
                return size
        else:
            chunk = self._source.read(len(buffer))
            if chunk:
                buffer[: len(chunk)] = chunk
                if self._digest is not None:
                    self._digest.update(chunk)
                return len(chunk)
        if not self._verified and self._digest is not None:
            actual = self._digest.hexdigest()
            if actual != self._sha256:
                raise IntegrityError(
                    f"object {self._key!r} version {self._version_id!r} is corrupt: "
                    f"its sha256 is {actual}, not the recorded {self._sha256}"
                )
            self._verified = True
        return 0

    def readall(self) -> bytes:
        return b"".join(iter(lambda: self.read(_CHUNK), b""))

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()


def _verifying(source: Any, key: str, version_id: str, sha256: str, verify: bool = True) -> BinaryIO:
    reader = _VerifyingReader(source, key, version_id, sha256 if verify else None)
    return io.BufferedReader(reader, buffer_size=_CHUNK)  # type: ignore[return-value]


class _ReadHelpers:
    """get() and exists() in terms of open() and head(), which is all they differ by per store."""

    def get(self, key: str, version_id: str | None = None) -> bytes:
        with self.open(key, version_id) as stream:  # type: ignore[attr-defined]
            return stream.read()

    def exists(self, key: str) -> bool:
        try:
            self.head(key)  # type: ignore[attr-defined]
        except ObjectNotFoundError:
            return False
        return True


# Local store -------------------------------------------------------------------------------

_VERSION_ID = re.compile(r"[0-9a-f]{24}")
_KEY_DIR = re.compile(r"[0-9a-f]{64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Shared by every LocalObjectStore in the process, so two instances on one root still serialize
# their commits and erasures of a key; a stripe is chosen by the key's hash.
_KEY_LOCKS = tuple(threading.Lock() for _ in range(64))


class _VersionClock:
    """Version ids that sort in commit order: nanoseconds since the epoch (never repeating or
    going backwards within the process) in 16 hex digits, then a random suffix so that ids
    minted by different processes in the same nanosecond still differ.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def new_id(self) -> str:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            now = self._last
        return f"{now:016x}{secrets.token_hex(4)}"


_clock = _VersionClock()


def _version_time(version_id: str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(version_id[:16], 16) // 1000)


def _is_meta(name: str) -> bool:
    return name.endswith(".json") and bool(_VERSION_ID.fullmatch(name[:-5]))


def _key_lock(key_dir: Path) -> threading.Lock:
    return _KEY_LOCKS[int(key_dir.name[:8], 16) % len(_KEY_LOCKS)]


def _private(path: str, flags: int) -> int:
    """An opener creating files readable by their owner only: objects may hold personal data."""
    return os.open(path, flags, 0o600)


# Data only, without the metadata's journal commit where the system has it (macOS does not).
_fdatasync = getattr(os, "fdatasync", os.fsync)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable: the directory entry itself is flushed."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    fsync_dir(path.parent)


class LocalObjectStore(_ReadHelpers):
    """A directory with the semantics of a versioned S3 bucket.

    Hand-written because no library offers versioned local object storage with atomic
    commits, delete markers and complete erasure, which the embedded default needs.

    Each key lives in <root>/<sha256(key)[:2]>/<sha256(key)>/, so arbitrary keys never meet
    path semantics; the directory holds the key itself in ``key`` and, per version,
    ``<version id>.blob`` and ``<version id>.json``. The .json file is the commit point: it is
    renamed into place only once the blob is durable, so a crash never exposes a half-written
    object. Files are written in <root>/.incoming, fsynced and renamed into place;
    ``sweep_incomplete`` removes what a crash leaves behind. Safe for concurrent use by threads;
    concurrent processes never see partial objects, but an erasure racing another process's put
    may leave that put's version in place.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()
        self._incoming = self.root / ".incoming"

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        expected_sha256: str | None = None,
    ) -> ObjectVersion:
        validate_key(key)
        user_metadata = _checked_metadata(content_type, metadata)
        chunks = _chunks(data)
        with self._disk():
            self._make_root()
            blob = self._temp_path()
            try:
                with open(blob, "xb", opener=_private) as file:

                    def flush_behind() -> None:
                        # Starts the disk writes early; durability is the fsync below, as before.
                        file.flush()
                        _fdatasync(file.fileno())

                    sha256, size = _copy_hashing(chunks, file.write, flush=flush_behind)
                    file.flush()
                    os.fsync(file.fileno())
                _check_expected(key, sha256, expected_sha256)
                return self._commit(
                    key, blob, sha256=sha256, size=size, content_type=content_type, metadata=user_metadata
                )
            finally:
                blob.unlink(missing_ok=True)

    def open(self, key: str, version_id: str | None = None, *, verify: bool = True) -> BinaryIO:
        version = self._find(validate_key(key), version_id)
        try:
            with self._disk():
                blob = open(self._key_dir(key) / f"{version.version_id}.blob", "rb")
        except FileNotFoundError:  # removed by a concurrent delete
            raise ObjectNotFoundError(_not_found(key, version_id)) from None
        return _verifying(blob, key, version.version_id, version.sha256, verify)

    def head(self, key: str, version_id: str | None = None) -> ObjectVersion:
        return self._find(validate_key(key), version_id)

    def delete(self, key: str, version_id: str | None = None) -> None:
        validate_key(key)
        if version_id is None:
            # Like moto, a key with no history gets no marker (AWS would add a redundant one).
            with self._disk():
                if self._versions(key):
                    self._commit(key, None, sha256="", size=0, content_type="", metadata={})
            return
        if not _VERSION_ID.fullmatch(version_id):
            return
        key_dir = self._key_dir(key)
        with self._disk(), _key_lock(key_dir):
            try:
                (key_dir / f"{version_id}.json").unlink()
            except FileNotFoundError:
                return
            fsync_dir(key_dir)
            (key_dir / f"{version_id}.blob").unlink(missing_ok=True)
            if not any(_is_meta(name) for name in os.listdir(key_dir)):
                self._erase(key_dir)

    def delete_all_versions(self, key: str) -> int:
        key_dir = self._key_dir(validate_key(key))
        with self._disk(), _key_lock(key_dir):
            removed = sum(1 for name in self._listdir(key_dir) if _is_meta(name))
            if key_dir.exists():  # even without versions: it may hold a crashed put's blob
                self._erase(key_dir)
        return removed

    def list(self, prefix: str = "") -> Iterator[ObjectVersion]:
        for versions in self._versions_by_key(prefix):
            if not versions[0].is_delete_marker:
                yield versions[0]

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        for versions in self._versions_by_key(prefix):
            yield from versions

    def check(self) -> None:
        with self._disk():
            self._make_root()
            probe = self._temp_path()
            with open(probe, "xb", opener=_private):
                pass
            probe.unlink()

    def sweep_incomplete(self, older_than: timedelta) -> int:
        """Remove what interrupted writes and erasures left behind, if older than older_than.

        That is temporary files in .incoming and blobs (or whole key directories) that no
        committed version refers to. Returns how many were removed.
        """
        with self._disk():
            return self._sweep(time.time() - older_than.total_seconds())

    def _sweep(self, cutoff: float) -> int:
        removed = 0
        for path in self._children(self._incoming):
            with suppress(FileNotFoundError):  # renamed into place or removed since it was listed
                if path.lstat().st_mtime < cutoff:
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    removed += 1
        for key_dir in self._key_dirs():
            with _key_lock(key_dir):
                if not key_dir.exists():  # erased since it was listed
                    continue
                names = os.listdir(key_dir)
                committed = {name[:-5] for name in names if _is_meta(name)}
                if not committed:
                    if key_dir.lstat().st_mtime < cutoff:
                        self._erase(key_dir)
                        removed += 1
                    continue
                for name in names:
                    orphan = key_dir / name
                    if name.endswith(".blob") and name[:-5] not in committed and orphan.lstat().st_mtime < cutoff:
                        orphan.unlink()
                        removed += 1
        return removed

    def _commit(
        self,
        key: str,
        blob: Path | None,
        *,
        sha256: str,
        size: int,
        content_type: str,
        metadata: dict[str, str],
    ) -> ObjectVersion:
        """Make a new version of key visible: the blob (None for a delete marker), then its meta file."""
        key_dir = self._key_dir(key)
        with _key_lock(key_dir):
            _make_dir(key_dir.parent)
            _make_dir(key_dir)
            if not (key_dir / "key").exists():
                self._write_file(key_dir / "key", key.encode("utf-8"))
            version_id = _clock.new_id()
            if blob is not None:
                os.replace(blob, key_dir / f"{version_id}.blob")
                fsync_dir(key_dir)
            meta = {
                "key": key,
                "version_id": version_id,
                "sha256": sha256,
                "size": size,
                "content_type": content_type,
                "metadata": metadata,
                "is_delete_marker": blob is None,
            }
            self._write_file(key_dir / f"{version_id}.json", json.dumps(meta).encode("utf-8"))
            fsync_dir(key_dir)
        return self._version(meta, is_latest=True)

    def _find(self, key: str, version_id: str | None) -> ObjectVersion:
        with self._disk():
            versions = self._versions(key)
        if version_id is None:
            found = versions[0] if versions else None
        else:
            found = next((version for version in versions if version.version_id == version_id), None)
        if found is None or found.is_delete_marker:
            raise ObjectNotFoundError(_not_found(key, version_id))
        return found

    def _versions(self, key: str) -> Sequence[ObjectVersion]:
        """The committed versions of key, newest first."""
        key_dir = self._key_dir(key)
        version_ids = sorted((name[:-5] for name in self._listdir(key_dir) if _is_meta(name)), reverse=True)
        versions: list[ObjectVersion] = []
        for version_id in version_ids:
            try:
                meta = json.loads((key_dir / f"{version_id}.json").read_bytes())
            except FileNotFoundError:  # removed by a concurrent delete
                continue
            versions.append(self._version(meta, is_latest=not versions))
        return versions

    def _versions_by_key(self, prefix: str) -> Iterator[Sequence[ObjectVersion]]:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, not {type(prefix).__name__}")
        keys = []
        with self._disk():
            for key_dir in self._key_dirs():
                try:
                    key = (key_dir / "key").read_text(encoding="utf-8")
                except FileNotFoundError:  # erased meanwhile, or its first put is not committed yet
                    continue
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):
            with self._disk():
                versions = self._versions(key)
            if versions:
                yield versions

    @contextmanager
    def _disk(self) -> Iterator[None]:
        """Turn file-system failures (permissions, a full disk, a file where a directory belongs) into one line."""
        try:
            yield
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreUnavailableError(
                f"object store directory {self.root} is not usable: {exc.strerror or exc}"
            ) from None

    @staticmethod
    def _version(meta: dict[str, Any], *, is_latest: bool) -> ObjectVersion:
        return ObjectVersion(**meta, last_modified=_version_time(meta["version_id"]), is_latest=is_latest)

    def _key_dir(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.root / digest[:2] / digest

    def _key_dirs(self) -> Iterator[Path]:
        for shard in self._children(self.root):
            if len(shard.name) == 2 and shard.name == shard.name.lower():
                yield from (key_dir for key_dir in self._children(shard) if _KEY_DIR.fullmatch(key_dir.name))

    def _children(self, directory: Path) -> Iterator[Path]:
        return (directory / name for name in self._listdir(directory))

    @staticmethod
    def _listdir(directory: Path) -> Sequence[str]:
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return []

    def _make_root(self) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        _make_dir(self.root)
        _make_dir(self._incoming)

    def _temp_path(self) -> Path:
        return self._incoming / f"{uuid.uuid4().hex}.tmp"

    def _write_file(self, destination: Path, content: bytes) -> None:
        """Write content to destination atomically; the caller fsyncs destination's directory."""
        temp = self._temp_path()
        try:
            with open(temp, "xb", opener=_private) as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, destination)
        finally:
            temp.unlink(missing_ok=True)

    def _erase(self, key_dir: Path) -> None:
        """Remove a key directory, renaming it away first so no reader sees a partial erasure
        (which could expose an older version as the latest)."""
        self._make_root()
        doomed = self._incoming / f"{uuid.uuid4().hex}.erasing"
        os.replace(key_dir, doomed)
        fsync_dir(key_dir.parent)
        shutil.rmtree(doomed)



# S3 store ----------------------------------------------------------------------------------

_T = TypeVar("_T")
_R = TypeVar("_R")
_HEAD_CONCURRENCY = 8
_DELETE_BATCH = 1000  # the most DeleteObjects accepts
_ERASE_ROUNDS = 5
_ENTRY_ORDER = "EncaptioEntryOrder"
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "405", "MethodNotAllowed"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)


def _record_entry_order(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    """Note the order of <Version> and <DeleteMarker> in a ListObjectVersions page.

    S3 interleaves them newest first per key, but botocore parses them into two separate
    lists, which alone cannot tell whether a marker is newer than a version of the same second.
    """
    if response_dict.get("status_code") != 200:
        return
    kinds = []
    with suppress(ElementTree.ParseError):  # botocore's own parser reports a malformed body
        for _event, element in ElementTree.iterparse(io.BytesIO(response_dict["body"])):
            kind = element.tag.rpartition("}")[2]
            if kind in ("Version", "DeleteMarker"):
                kinds.append(kind)
    customized_response_dict[_ENTRY_ORDER] = kinds


def _bounded_map(function: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
    """function over items, a few calls in flight at once, results in input order."""
    with ThreadPoolExecutor(max_workers=_HEAD_CONCURRENCY) as pool:
        pending: deque[Any] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= _HEAD_CONCURRENCY:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class S3ObjectStore(_ReadHelpers):
    """A versioned S3 bucket (AWS or any S3-compatible endpoint), optionally under a key prefix.

    The sha256 of each object is kept in its user metadata and also sent as ChecksumSHA256 (per
    part for multipart uploads) so that S3 itself rejects bytes damaged in transit. S3 listings carry
    neither user metadata nor content type, so list() and list_versions() issue one HEAD per
    version they return (a few at a time).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        sse: str | None = "AES256",
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.sse = sse or None
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"total_max_attempts": 3, "mode": "standard"},
                # S3-compatible servers (moto, MinIO, Ceph) rarely resolve bucket subdomains.
                s3={"addressing_style": "path"} if endpoint_url else None,
            ),
        )
        self._client.meta.events.register(
            "before-parse.s3.ListObjectVersions", _record_entry_order, unique_id="encaptio-entry-order"
        )
        self._where = f"S3 bucket {bucket!r} at {self._client.meta.endpoint_url}"

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        expected_sha256: str | None = None,
    ) -> ObjectVersion:
        full_key = self._full_key(key)
        user_metadata = _checked_metadata(content_type, metadata)
        chunks = _chunks(data)
        # The sha256 goes into the metadata, which S3 takes before the body: spool the input
        # (in memory up to the multipart threshold) to know it first.
        with tempfile.SpooledTemporaryFile(max_size=_MULTIPART_THRESHOLD) as body:
            sha256, size = _copy_hashing(chunks, body.write)
            _check_expected(key, sha256, expected_sha256)
            body.seek(0)
            attributes: dict[str, Any] = {
                "ContentType": content_type,
                "Metadata": {**user_metadata, _SHA256_FIELD: sha256},
            }
            if self.sse:
                attributes["ServerSideEncryption"] = self.sse
            with self._errors(key):
                if size > _MULTIPART_THRESHOLD:
                    response = self._put_multipart(full_key, body, size, attributes)
                else:
                    response = self._client.put_object(
                        Bucket=self.bucket,
                        Key=full_key,
                        Body=body,
                        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
                        **attributes,
                    )
        if "VersionId" not in response:
            raise StoreUnavailableError(f"{self._where} does not have versioning enabled")
        return self._describe(key, self._head_object(key, response["VersionId"]), is_latest=True)

    def open(self, key: str, version_id: str | None = None, *, verify: bool = True) -> BinaryIO:
        full_key = self._full_key(key)
        with self._errors(key, version_id):
            response = self._client.get_object(Bucket=self.bucket, Key=full_key, **self._version_arg(version_id))
        sha256 = response.get("Metadata", {}).get(_SHA256_FIELD)
        if not sha256 and verify:
            response["Body"].close()
            raise IntegrityError(
                f"object {key!r} version {response['VersionId']!r} has no recorded sha256, so it cannot be verified"
            )
        return _verifying(response["Body"], key, response["VersionId"], sha256 or "", verify)

    def presigned_url(self, key: str, *, expires_in: timedelta, version_id: str | None = None) -> str:
        """A time-limited GET link (S3 enforces the expiry; our own code enforces it too, see privacy.access)."""
        params = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if version_id:
            params["VersionId"] = version_id
        return self._client.generate_presigned_url("get_object", Params=params,
                                                   ExpiresIn=int(expires_in.total_seconds()))

    def head(self, key: str, version_id: str | None = None) -> ObjectVersion:
        self._full_key(key)  # refuses an invalid key before any request
        response = self._head_object(key, version_id)
        is_latest = version_id is None or self._latest_version_id(key) == response["VersionId"]
        return self._describe(key, response, is_latest=is_latest)

    def delete(self, key: str, version_id: str | None = None) -> None:
        full_key = self._full_key(key)
        # Deleting a version that does not exist is a no-op, as S3 itself treats most of them.
        with suppress(ObjectNotFoundError), self._errors(key, version_id):
            self._client.delete_object(Bucket=self.bucket, Key=full_key, **self._version_arg(version_id))

    def delete_all_versions(self, key: str) -> int:
        full_key = self._full_key(key)
        removed = 0
        # Listed again after each round, so versions a concurrent put added meanwhile go too.
        for _ in range(_ERASE_ROUNDS):
            doomed = [
                {"Key": full_key, "VersionId": entry["VersionId"]}
                for entry in self._entries(full_key)
                if entry["Key"] == full_key
            ]
            if not doomed:
                return removed
            for start in range(0, len(doomed), _DELETE_BATCH):
                with self._errors(key):
                    response = self._client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": doomed[start : start + _DELETE_BATCH], "Quiet": True}
                    )
                if errors := response.get("Errors"):
                    raise StoreUnavailableError(
                        f"{self._where} refused to erase {key!r}: {errors[0].get('Code')} {errors[0].get('Message')}"
                    )
            removed += len(doomed)
        raise StoreUnavailableError(f"{self._where} still holds versions of {key!r} after {_ERASE_ROUNDS} erasures")

    def list(self, prefix: str = "") -> Iterator[ObjectVersion]:
        def keys() -> Iterator[str]:
            with self._errors():
                paginator = self._client.get_paginator("list_objects_v2")
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full_prefix(prefix)):
                    for entry in page.get("Contents", []):
                        yield self._strip(entry["Key"])

        def latest(key: str) -> ObjectVersion | None:
            try:
                return self._describe(key, self._head_object(key, None), is_latest=True)
            except ObjectNotFoundError:  # deleted since it was listed
                return None

        yield from filter(None, _bounded_map(latest, keys()))

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        def version(entry: dict[str, Any]) -> ObjectVersion | None:
            key = self._strip(entry["Key"])
            if entry["IsDeleteMarker"]:
                return ObjectVersion(
                    key=key,
                    version_id=entry["VersionId"],
                    sha256="",
                    size=0,
                    content_type="",
                    last_modified=entry["LastModified"].astimezone(UTC),
                    metadata={},
                    is_latest=entry["IsLatest"],
                    is_delete_marker=True,
                )
            try:
                return self._describe(key, self._head_object(key, entry["VersionId"]), is_latest=entry["IsLatest"])
            except ObjectNotFoundError:  # removed since it was listed
                return None

        yield from filter(None, _bounded_map(version, self._entries(self._full_prefix(prefix))))

    def check(self) -> None:
        with self._errors():
            status = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        if status != "Enabled":
            raise StoreUnavailableError(f"{self._where} does not have versioning enabled")

    def _put_multipart(self, full_key: str, body: BinaryIO, size: int, attributes: dict[str, Any]) -> dict[str, Any]:
        # Parts by hand rather than upload_fileobj: only CompleteMultipartUpload's response
        # says which version this put created.
        part_size = max(_MULTIPART_THRESHOLD, -(-size // _MAX_PARTS))
        upload_id = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=full_key, ChecksumAlgorithm="SHA256", **attributes
        )["UploadId"]
        try:
            parts = []
            for number, part in enumerate(iter(lambda: body.read(part_size), b""), start=1):
                checksum = _b64_sha256(part)
                response = self._client.upload_part(
                    Bucket=self.bucket,
                    Key=full_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=part,
                    ChecksumSHA256=checksum,
                )
                parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum})
            return self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)
            raise

    def _entries(self, full_prefix: str) -> Iterator[dict[str, Any]]:
        """Every version and delete marker under full_prefix, newest first per key."""

        def pages() -> Iterator[dict[str, Any]]:
            with self._errors():
                paginator = self._client.get_paginator("list_object_versions")
                for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                    versions = iter(page.get("Versions", []))
                    markers = iter(page.get("DeleteMarkers", []))
                    for kind in page[_ENTRY_ORDER]:
                        if kind == "Version":
                            yield {**next(versions), "IsDeleteMarker": False}
                        else:
                            yield {**next(markers), "IsDeleteMarker": True}

        # AWS already lists each key newest first, so this sort changes nothing there; moto lists
        # all versions before all markers, and this restores the order to within a second.
        for _key, entries in groupby(pages(), key=itemgetter("Key")):
            yield from sorted(entries, key=lambda entry: (not entry["IsLatest"], -entry["LastModified"].timestamp()))

    def _head_object(self, key: str, version_id: str | None) -> dict[str, Any]:
        with self._errors(key, version_id):
            return self._client.head_object(
                Bucket=self.bucket, Key=self._join(key), **self._version_arg(version_id)
            )

    def _latest_version_id(self, key: str) -> str | None:
        try:
            return self._head_object(key, None)["VersionId"]
        except ObjectNotFoundError:
            return None

    @staticmethod
    def _describe(key: str, response: dict[str, Any], *, is_latest: bool) -> ObjectVersion:
        metadata = dict(response.get("Metadata", {}))
        sha256 = metadata.pop(_SHA256_FIELD, "")
        return ObjectVersion(
            key=key,
            version_id=response["VersionId"],
            sha256=sha256,
            size=response["ContentLength"],
            content_type=response.get("ContentType", ""),
            last_modified=response["LastModified"].astimezone(UTC),
            metadata=metadata,
            is_latest=is_latest,
        )

    @staticmethod
    def _version_arg(version_id: str | None) -> dict[str, str]:
        return {} if version_id is None else {"VersionId": version_id}

    def _full_key(self, key: str) -> str:
        """The bucket key for key, after checking that it is valid (prefix included)."""
        full_key = self._join(validate_key(key))
        if len(full_key.encode("utf-8")) > _MAX_KEY_BYTES:
            raise InvalidKeyError(
                f"invalid object key {_shorten(key)}: with the store's prefix it exceeds {_MAX_KEY_BYTES} UTF-8 bytes"
            )
        return full_key

    def _join(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _full_prefix(self, prefix: str) -> str:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, not {type(prefix).__name__}")
        return self._join(prefix)

    def _strip(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    @contextmanager
    def _errors(self, key: str | None = None, version_id: str | None = None) -> Iterator[None]:
        """Turn botocore's failures into the platform's one-line errors."""
        try:
            yield
        except (BotoConnectionError, HTTPClientError) as exc:
            raise StoreUnavailableError(f"{self._where} is unreachable: {exc}") from None
        except NoCredentialsError:
            raise StoreUnavailableError(f"{self._where} cannot be used: no AWS credentials found") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                raise StoreUnavailableError(f"{self._where} does not exist") from None
            if code in _DENIED_CODES:
                raise StoreUnavailableError(f"{self._where} refused access ({code})") from None
            # AWS answers a malformed version id with InvalidArgument.
            if key is not None and (code in _MISSING_CODES or (version_id is not None and code == "InvalidArgument")):
                raise ObjectNotFoundError(_not_found(key, version_id)) from None
            raise


def open_object_store(settings: Settings) -> ObjectStore:
    """The object store the settings name: S3 for s3://bucket[/prefix], else a local directory."""
    target = settings.resolved_object_store
    if target.startswith("s3://"):
        parts = urlsplit(target)
        return S3ObjectStore(
            bucket=parts.netloc,
            prefix=parts.path,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            sse=settings.s3_sse,
        )
    return LocalObjectStore(Path(target))


def put_if_changed(store: ObjectStore, key: str, data: bytes, **options: Any) -> tuple[ObjectVersion, bool]:
    """Put unless the latest version already holds these bytes: re-runs then add no version.

    Returns the version that holds the bytes and whether it is new.
    """
    digest = hashlib.sha256(data).hexdigest()
    try:
        latest = store.head(key)
    except ObjectNotFoundError:
        latest = None
    if latest is not None and latest.sha256 == digest:
        return latest, False
    return store.put(key, data, expected_sha256=digest, **options), True
