"""Keys: the master key, per-subject data keys (envelope encryption) and named HMAC keys.

Embedded default: key files under ``<data dir>/keys`` (directory 0700, files 0600), never
in the database, so a database backup holds no key that crypto-shredding must destroy.
A subject's data key is random, stored only wrapped by the master key (AES-256-GCM with
the subject id as associated data, so a wrapped key cannot be swapped onto another
subject); destroying the wrapped key makes every copy of that subject's ciphertext
unreadable, backups included. The cryptography package does the cryptography; this
module only decides where keys live.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import secrets
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from encaptio_data.errors import EncaptioError, IntegrityError, InvalidInputError

if TYPE_CHECKING:
    from encaptio_data.authz import Principal
    from encaptio_data.platform import Platform

KEY_BYTES = 32
NONCE_BYTES = 12
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
ENVELOPE_MAGIC = b"ENC1"
# A subject's sealed stream (content files): SEALED_MAGIC | u32 header length | header JSON | frames.
SEALED_MAGIC = b"ENCSEAL1"
SEALED_FORMAT = "encaptio-sealed/1"
STREAM_CHUNK_BYTES = 1024 * 1024
KEY_RECHECK_SECONDS = 1.0
_MAX_HEADER = 64 * 1024
_FRAME = struct.Struct(">BI")  # final flag, envelope length


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"key-id:" + key).hexdigest()[:16]


class KeyDestroyedError(EncaptioError):
    """The subject's data key was destroyed (erasure): the data is unreadable by design."""


def _private_dirs(directory: Path) -> None:
    """Create the directory and any missing parents owner-only (mkdir's mode applies only to the last)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
        os.chmod(created, 0o700)


def _write_private(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Atomic, owner-only: a crash leaves the old key or the new one, never half of one.

    ``durable=False`` skips the fsyncs: for bulk writers that flush everything at once after.
    """
    _private_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if not durable:
        return
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return ENVELOPE_MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data or None)


def decrypt(key: bytes, ciphertext: bytes, associated_data: bytes = b"", *, what: str = "ciphertext") -> bytes:
    if not ciphertext.startswith(ENVELOPE_MAGIC) or len(ciphertext) < len(ENVELOPE_MAGIC) + NONCE_BYTES + 16:
        raise IntegrityError(f"{what} is not an encrypted envelope")
    nonce = ciphertext[len(ENVELOPE_MAGIC):len(ENVELOPE_MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext[len(ENVELOPE_MAGIC) + NONCE_BYTES:], associated_data or None)
    except InvalidTag:
        raise IntegrityError(f"{what} failed authentication: tampered, or encrypted under another key") from None


# -- chunked streams ---------------------------------------------------------------------------
#
# frame = u8 final | u32 length | encrypt(key, chunk, AAD = sha256(header) | u64 index | final)
#
# The layout of lifecycle/backup.py's files. The associated data binds every chunk to its
# stream's header, to its position and to whether it is the last one, so chunks cannot be
# reordered, dropped, spliced from another stream or cut off at the end; a large file is
# never held in memory whole.

def frame_aad(header_digest: bytes, index: int, final: bool) -> bytes:
    return header_digest + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def read_exact(stream: BinaryIO, size: int) -> bytes:
    """Up to size bytes: fewer only at the end of the stream (a read may return less than asked)."""
    parts, remaining = [], size
    while remaining:
        piece = stream.read(remaining)
        if not piece:
            break
        parts.append(piece)
        remaining -= len(piece)
    return b"".join(parts)


def seal_frames(key: bytes, header_digest: bytes, source: BinaryIO, chunk_bytes: int, *,
                plaintext_digest: Any = None) -> Iterator[bytes]:
    """The frames of source; plaintext_digest (a hashlib object), if given, is fed the plaintext."""
    index = 0
    chunk = read_exact(source, chunk_bytes)
    while True:
        if plaintext_digest is not None:
            plaintext_digest.update(chunk)
        following = read_exact(source, chunk_bytes) if chunk else b""
        final = not following
        sealed = encrypt(key, chunk, frame_aad(header_digest, index, final))
        yield _FRAME.pack(1 if final else 0, len(sealed)) + sealed
        if final:
            return
        chunk, index = following, index + 1


def open_frames(key: bytes, header_digest: bytes, stream: BinaryIO, chunk_bytes: int, *, what: str
                ) -> Iterator[bytes]:
    """The plaintext chunks of sealed frames; IntegrityError on any damage, truncation or extra byte."""
    index = 0
    while True:
        frame = read_exact(stream, _FRAME.size)
        if len(frame) < _FRAME.size:
            raise IntegrityError(f"{what} is truncated after chunk {index}")
        final, length = _FRAME.unpack(frame)
        if length > chunk_bytes + len(ENVELOPE_MAGIC) + NONCE_BYTES + 16 or final not in (0, 1):
            raise IntegrityError(f"{what} chunk {index} has a damaged frame")
        sealed = read_exact(stream, length)
        if len(sealed) < length:
            raise IntegrityError(f"{what} is truncated in chunk {index}")
        yield decrypt(key, sealed, frame_aad(header_digest, index, bool(final)), what=f"{what} chunk {index}")
        if final:
            break
        index += 1
    if stream.read(1):
        raise IntegrityError(f"{what} has bytes after its last chunk")


class PiecesReader(io.RawIOBase):
    """A read-only stream over a generator of byte strings (no copy of the whole output)."""

    def __init__(self, pieces: Iterator[bytes], on_close: Callable[[], None] | None = None) -> None:
        self._pieces = pieces
        self._current = memoryview(b"")
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not len(self._current):
            try:
                self._current = memoryview(next(self._pieces))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size

    def close(self) -> None:
        if not self.closed and self._on_close is not None:
            self._on_close()
        super().close()


def buffered(pieces: Iterator[bytes], on_close: Callable[[], None] | None = None) -> BinaryIO:
    return io.BufferedReader(PiecesReader(pieces, on_close), buffer_size=STREAM_CHUNK_BYTES)  # type: ignore[return-value]


# key store directory -> (data keys by subject, master keys by id); see KeyStore.__init__.
_SHARED_CACHES: dict[str, tuple[dict[str, tuple[bytes, str, float]], dict[str, bytes]]] = {}


class KeyStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Unwrapped data keys (key, key file, when last seen on disk): sealed database columns
        # open one per value read, and unwrapping from the file each time cost ~130 us. Shared
        # by every KeyStore on this directory in the process, so a key destroyed through any of
        # them is gone for all at once; one destroyed by another process is noticed within
        # KEY_RECHECK_SECONDS (the next use after that looks at the file again).
        # Master keys by id are cached for unwrapping only: wrapping always reads the current
        # master from disk, so a rotation finished by another process is never undone here.
        self._data_keys, self._masters = _SHARED_CACHES.setdefault(str(self.root.absolute()), ({}, {}))

    # -- master key -------------------------------------------------------------------
    @property
    def _master_path(self) -> Path:
        return self.root / "master.key"

    def master_key(self) -> bytes:
        if not self._master_path.exists():
            _write_private(self._master_path, secrets.token_bytes(KEY_BYTES))
        key = self._master_path.read_bytes()
        if len(key) != KEY_BYTES:
            raise IntegrityError(f"{self._master_path} is not a {KEY_BYTES}-byte key")
        return key

    def master_key_id(self) -> str:
        return _key_id(self.master_key())

    @property
    def _next_master_path(self) -> Path:
        return self.root / "master.next.key"

    def _master_by_id(self, key_id: str) -> bytes:
        """The master key a record was wrapped with: the current one, or the next one mid-rotation."""
        if key_id in self._masters:
            return self._masters[key_id]
        candidates = [self.master_key()]
        if self._next_master_path.exists():
            candidates.append(self._next_master_path.read_bytes())
        for key in candidates:
            if _key_id(key) == key_id:
                self._masters[key_id] = key
                return key
        raise IntegrityError(f"no master key with id {key_id} (retired before its keys were re-wrapped?)")

    def _records(self) -> list[Path]:
        return sorted((self.root / "subjects").glob("*/*.json"))

    def rotate_master(self) -> dict[str, object]:
        """Re-wrap every data key under a new master key; the data itself is not touched.

        Crash-safe at every step: the next master is written before any record uses it,
        each record names the master that wrapped it (so both masters stay usable until the
        end), and the old master is retired only after every record has been re-read with
        the new one. Running it again after a crash finishes the same rotation.
        """
        old = self.master_key()
        if not self._next_master_path.exists():
            _write_private(self._next_master_path, secrets.token_bytes(KEY_BYTES))
        new = self._next_master_path.read_bytes()
        rewrapped = 0
        for path in self._records():
            record = json.loads(path.read_bytes())
            if record["master_key_id"] == _key_id(new):
                continue
            subject = record["subject"]
            key = decrypt(self._master_by_id(record["master_key_id"]), bytes.fromhex(record["wrapped"]),
                          subject.encode(), what=f"data key of subject {subject}")
            record = {"subject": subject, "master_key_id": _key_id(new),
                      "wrapped": encrypt(new, key, subject.encode()).hex()}
            _write_private(path, json.dumps(record).encode())
            rewrapped += 1
        for path in self._records():
            record = json.loads(path.read_bytes())
            decrypt(new, bytes.fromhex(record["wrapped"]), record["subject"].encode(),
                    what=f"re-wrapped data key of subject {record['subject']}")
        retired = self.root / "retired" / f"master-{_key_id(old)}.key"
        _write_private(retired, old)
        os.replace(self._next_master_path, self._master_path)
        self._masters.clear()  # the retired master must not stay usable in this process
        return {"old_master_key_id": _key_id(old), "new_master_key_id": _key_id(new), "rewrapped": rewrapped,
                "verified": len(self._records()), "retired_to": str(retired.relative_to(self.root))}

    # -- named secrets (HMAC keys) ------------------------------------------------------
    def secret(self, name: str) -> bytes:
        """A named random secret (HMAC keys for subject references, tokens, receipts)."""
        if not _NAME.fullmatch(name):
            raise InvalidInputError(f"invalid key name {name!r}")
        path = self.root / "secrets" / f"{name}.key"
        if not path.exists():
            _write_private(path, secrets.token_bytes(KEY_BYTES))
        return path.read_bytes()

    def hmac_hex(self, name: str, message: str) -> str:
        return hmac.new(self.secret(name), message.encode(), hashlib.sha256).hexdigest()

    # -- per-subject data keys ----------------------------------------------------------
    def _subject_path(self, subject_id: str) -> Path:
        digest = hashlib.sha256(subject_id.encode()).hexdigest()
        return self.root / "subjects" / digest[:2] / f"{digest}.json"

    def data_key(self, subject_id: str, *, create: bool = True) -> bytes:
        cached = self._data_keys.get(subject_id)
        if cached is not None:
            key, key_file, seen = cached
            now = time.monotonic()
            if now - seen < KEY_RECHECK_SECONDS:
                return key
            if os.path.exists(key_file):
                self._data_keys[subject_id] = (key, key_file, now)
                return key
            del self._data_keys[subject_id]
        path = self._subject_path(subject_id)
        if not path.exists():
            if self.is_destroyed(subject_id):
                raise KeyDestroyedError(f"the data key of subject {subject_id} was destroyed (the subject was "
                                        "erased): its data is unreadable by design")
            if not create:
                raise KeyDestroyedError(f"the data key of subject {subject_id} does not exist in this key store "
                                        "(erased, or sealed under another instance's keys)")
            key = self._new_data_key(subject_id, durable=True)
        else:
            record = json.loads(path.read_bytes())
            key = decrypt(self._master_by_id(record["master_key_id"]), bytes.fromhex(record["wrapped"]),
                          subject_id.encode(), what=f"data key of subject {subject_id}")
        self._data_keys[subject_id] = (key, str(path), time.monotonic())
        return key

    def _new_data_key(self, subject_id: str, *, durable: bool) -> bytes:
        key = secrets.token_bytes(KEY_BYTES)
        wrapped = encrypt(self.master_key(), key, subject_id.encode())
        record = {"subject": subject_id, "master_key_id": self.master_key_id(), "wrapped": wrapped.hex()}
        _write_private(self._subject_path(subject_id), json.dumps(record).encode(), durable=durable)
        return key

    def ensure_data_keys(self, subject_ids: Iterable[str]) -> None:
        """Create the missing data keys of many subjects (bulk seeding and imports).

        Two fsyncs per key (~2 ms) made 50k users take minutes; here the keys are written
        first and flushed to disk together, before the caller writes anything sealed with them.
        """
        created = 0
        for subject_id in dict.fromkeys(subject_ids):
            if subject_id in self._data_keys or self._subject_path(subject_id).exists():
                continue
            if self.is_destroyed(subject_id):
                raise KeyDestroyedError(f"the data key of subject {subject_id} was destroyed (the subject was "
                                        "erased): nothing can be sealed for it again")
            key_file = str(self._subject_path(subject_id))
            self._data_keys[subject_id] = (self._new_data_key(subject_id, durable=False), key_file, time.monotonic())
            created += 1
        if created:
            os.sync()

    def destroy_data_key(self, subject_id: str) -> bool:
        """Crypto-shred: remove the only copy of the wrapped key, leaving a tombstone (no key material)."""
        path = self._subject_path(subject_id)
        self._data_keys.pop(subject_id, None)
        tombstone = path.with_suffix(".destroyed")
        existed = path.exists()
        _write_private(tombstone, b"destroyed\n")
        if existed:
            path.unlink()
        return existed

    def is_destroyed(self, subject_id: str) -> bool:
        return self._subject_path(subject_id).with_suffix(".destroyed").exists()

    def encrypt_for(self, subject_id: str, plaintext: bytes) -> bytes:
        return encrypt(self.data_key(subject_id), plaintext, subject_id.encode())

    def decrypt_for(self, subject_id: str, ciphertext: bytes, *, what: str = "ciphertext") -> bytes:
        return decrypt(self.data_key(subject_id, create=False), ciphertext, subject_id.encode(), what=what)

    def seal_stream(self, subject_id: str, source: BinaryIO, *, chunk_bytes: int = STREAM_CHUNK_BYTES) -> BinaryIO:
        """source encrypted in chunks with the subject's data key; the header names the subject,
        so a sealed object can be opened without knowing whose it is."""
        key = self.data_key(subject_id)
        header = json.dumps({"format": SEALED_FORMAT, "subject": subject_id, "cipher": "AES-256-GCM",
                             "chunk_bytes": chunk_bytes}, sort_keys=True).encode()
        digest = hashlib.sha256(header).digest()

        def pieces() -> Iterator[bytes]:
            yield SEALED_MAGIC + len(header).to_bytes(4, "big") + header
            yield from seal_frames(key, digest, source, chunk_bytes)

        return buffered(pieces())

    def open_sealed(self, stream: BinaryIO, *, what: str) -> tuple[str, BinaryIO]:
        """The subject and a plaintext stream of a sealed stream whose SEALED_MAGIC was already read.

        KeyDestroyedError, before any byte is decrypted, when the subject's key is gone; the
        returned stream raises IntegrityError at the first damaged chunk. Closing it closes stream.
        """
        size = int.from_bytes(read_exact(stream, 4), "big")
        if not 0 < size <= _MAX_HEADER:
            raise IntegrityError(f"{what} has a damaged header (length {size})")
        raw = read_exact(stream, size)
        try:
            header = json.loads(raw)
            subject, chunk_bytes = str(header["subject"]), int(header["chunk_bytes"])
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{what} has a damaged header") from None
        if header.get("format") != SEALED_FORMAT:
            raise IntegrityError(f"{what} has format {header.get('format')!r}, not {SEALED_FORMAT}")
        key = self.data_key(subject, create=False)
        return subject, buffered(open_frames(key, hashlib.sha256(raw).digest(), stream, chunk_bytes, what=what),
                                 stream.close)


def rotate_master_key(platform: Platform, *, operator: Principal | str | None) -> dict[str, object]:
    """Rotate the platform's master key as an operator: authorized (rotate_keys, platform-wide) before
    any key is touched, and audited with that operator. ``KeyStore.rotate_master`` is the mechanism."""
    from encaptio_data import audit, authz

    actor = authz.authorize(platform, operator, authz.Permission.ROTATE_KEYS).actor
    report = KeyStore(platform.settings.keys_dir).rotate_master()
    audit.append(platform.db, actor=actor, action="keys.rotated",
                 details={k: v for k, v in report.items() if k != "retired_to"})
    return report
