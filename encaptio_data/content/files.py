"""Content files at rest: sealed with their uploader's data key, read back through one function.

A file a user uploaded is personal data of that user, and backups of the object store (S3
noncurrent versions, replicas, snapshots) outlive any erasure. So it is stored encrypted with
the uploader's data key (``KeyStore.seal_stream``: AES-256-GCM in authenticated chunks), and
erasure destroys that key: every copy made before, wherever it went, becomes unreadable.

The object's metadata keeps the plaintext's sha256 and size (``plain-sha256``, ``plain-size``),
so content rows, deduplication and integrity checks keep speaking of the bytes the user
uploaded; the store's own sha256 still covers the ciphertext it holds.

Files without an uploader (``content.uploaded_by`` empty: the uploader is not a user of this
instance, or the organization uploaded them) belong to no data subject: no erasure will ever
destroy a key for them, so sealing them would cost a key lookup per read and protect nothing
that crypto-shredding needs. They stay plain, as do uploads written before sealing existed
until registration seals them (``content.uploads``), which is also the migration path.

``open_content`` / ``read_content`` are the only readers of a content item's bytes.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any, BinaryIO

from encaptio_data.errors import EncaptioError, IntegrityError, ObjectNotFoundError
from encaptio_data.keys import SEALED_MAGIC, STREAM_CHUNK_BYTES, KeyStore, buffered, read_exact
from encaptio_data.stores.objects import ObjectStore, ObjectVersion

PLAIN_SHA256 = "plain-sha256"
PLAIN_SIZE = "plain-size"
UPLOADED_BY = "uploaded-by"
SEALING_FIELDS = (PLAIN_SHA256, PLAIN_SIZE)
_SPOOL_BYTES = 8 * 1024 * 1024


class SealedWithoutKeysError(EncaptioError):
    """A sealed file was asked for by code that was given no key store."""


def is_sealed(version: ObjectVersion) -> bool:
    return PLAIN_SHA256 in version.metadata


def plain_digest(version: ObjectVersion) -> tuple[str, int]:
    """The sha256 and size of the bytes the user uploaded, whether stored sealed or plain."""
    if is_sealed(version):
        return version.metadata[PLAIN_SHA256], int(version.metadata.get(PLAIN_SIZE, -1))
    return version.sha256, version.size


def user_metadata(version: ObjectVersion) -> dict[str, str]:
    """The metadata the uploader gave, without what sealing added (for exports)."""
    return {name: value for name, value in version.metadata.items() if name not in SEALING_FIELDS}


def _spool(data: bytes | BinaryIO) -> tuple[BinaryIO, str, int]:
    """The plaintext in a rewindable file, with its sha256 and size (both go into the put's metadata,
    which the store takes before the body)."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (returned open)
    digest, size = hashlib.sha256(), 0
    pieces: Iterator[bytes] = iter((bytes(data),)) if isinstance(data, (bytes, bytearray, memoryview)) \
        else iter(lambda: data.read(STREAM_CHUNK_BYTES), b"")
    for piece in pieces:
        digest.update(piece)
        spool.write(piece)
        size += len(piece)
    spool.seek(0)
    return spool, digest.hexdigest(), size  # type: ignore[return-value]


def put_file(objects: ObjectStore, keys: KeyStore, key: str, data: bytes | BinaryIO, *,
             uploaded_by: uuid.UUID | str | None, content_type: str = "application/octet-stream",
             metadata: Mapping[str, str] | None = None, expected_sha256: str | None = None) -> ObjectVersion:
    """Store an upload: sealed with the uploader's data key, or plain without an uploader.

    expected_sha256 is the plaintext's: on a mismatch nothing is written.
    """
    fields = {name: value for name, value in (metadata or {}).items() if name not in SEALING_FIELDS}
    if uploaded_by is None:
        return objects.put(key, data, content_type=content_type, metadata=fields, expected_sha256=expected_sha256)
    subject = str(uploaded_by)
    spool, sha256, size = _spool(data)
    with spool:
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            raise IntegrityError(f"refused to store {key!r}: its sha256 is {sha256}, not the expected {expected_sha256}")
        fields |= {UPLOADED_BY: subject, PLAIN_SHA256: sha256, PLAIN_SIZE: str(size)}
        with keys.seal_stream(subject, spool) as sealed:
            return objects.put(key, sealed, content_type=content_type, metadata=fields)


def put_file_if_changed(objects: ObjectStore, keys: KeyStore, key: str, data: bytes, *,
                        uploaded_by: uuid.UUID | str | None, **options: Any) -> tuple[ObjectVersion, bool]:
    """put_file unless the latest version already holds these bytes, stored as they should be
    (sealed with an uploader, plain without): re-runs then add no version."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        latest = objects.head(key)
    except ObjectNotFoundError:
        latest = None
    if latest is not None and plain_digest(latest)[0] == digest and is_sealed(latest) == (uploaded_by is not None):
        return latest, False
    version = put_file(objects, keys, key, data, uploaded_by=uploaded_by, expected_sha256=digest, **options)
    if latest is not None and plain_digest(latest)[0] == digest and not is_sealed(latest):
        # The same bytes were stored plain (before sealing existed): the sealed copy replaces them.
        objects.delete(key, latest.version_id)
    return version, True


def seal_version(objects: ObjectStore, keys: KeyStore, version: ObjectVersion, uploaded_by: uuid.UUID | str
                 ) -> ObjectVersion:
    """Replace a plain version by a sealed one: the sealed copy becomes the latest version, then
    the plain version is deleted for good (a noncurrent version is as readable as the latest)."""
    with objects.open(version.key, version.version_id) as plain:
        sealed = put_file(objects, keys, version.key, plain, uploaded_by=uploaded_by,
                          content_type=version.content_type, metadata=version.metadata,
                          expected_sha256=version.sha256)
    objects.delete(version.key, version.version_id)
    return sealed


def open_file(objects: ObjectStore, keys: KeyStore | None, key: str, version_id: str | None = None, *,
              sha256: str | None = None) -> BinaryIO:
    """The plaintext of an upload, sealed or plain, as a stream verified at its end against
    ``sha256`` (the content row's digest) when given.

    KeyDestroyedError when the file was sealed for a subject since erased.
    """
    stream = objects.open(key, version_id)
    try:
        what = f"object {key!r} version {version_id or 'latest'}"
        prefix = read_exact(stream, len(SEALED_MAGIC))
        if prefix == SEALED_MAGIC:
            if keys is None:
                raise SealedWithoutKeysError(f"{what} is sealed with its uploader's data key, and no key store "
                                             "was given to read it")
            _, plain = keys.open_sealed(stream, what=what)
        else:
            plain = buffered(chain((prefix,), iter(lambda: stream.read(STREAM_CHUNK_BYTES), b"")), stream.close)
    except BaseException:
        stream.close()
        raise
    return plain if sha256 is None else buffered(_verified(plain, sha256, what), plain.close)


def _verified(stream: BinaryIO, sha256: str, what: str) -> Iterator[bytes]:
    digest = hashlib.sha256()
    while piece := stream.read(STREAM_CHUNK_BYTES):
        digest.update(piece)
        yield piece
    if digest.hexdigest() != sha256:
        raise IntegrityError(f"{what} does not hold the bytes its content row records "
                             f"(sha256 {digest.hexdigest()}, not {sha256})")


def _row_value(content: Any, name: str) -> Any:
    return content[name] if isinstance(content, Mapping) else getattr(content, name)


def open_content(objects: ObjectStore, keys: KeyStore | None, content: Any) -> BinaryIO:
    """The plaintext of a content item (a Content row or a mapping of its columns), verified
    against the row's sha256: every reader of uploaded bytes comes through here."""
    return open_file(objects, keys, _row_value(content, "object_key"), _row_value(content, "object_version"),
                     sha256=_row_value(content, "sha256"))


def read_content(objects: ObjectStore, keys: KeyStore | None, content: Any) -> bytes:
    with open_content(objects, keys, content) as stream:
        return stream.read()
