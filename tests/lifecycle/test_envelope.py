"""The sealed backup format: a round trip at every chunk boundary, and every tampering refused by name.

Every test runs against both readers: ``unseal`` (a stream into a stream, in order) and
``unseal_into`` (restores: frames decrypted on threads and written by position into a file).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle.backup import BackupIntegrityError, seal, unseal, unseal_into

NAME = "backups/sqlite/test.db.enc"
CHUNK = 64


def _sealed(keys: KeyStore, data: bytes, label: str = "backup-1") -> bytes:
    return seal(keys, io.BytesIO(data), label=label, chunk_bytes=CHUNK).read()


@pytest.fixture(params=["unseal", "unseal_into"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[KeyStore, bytes], tuple[bytes, dict]]:
    def into_a_file(keys: KeyStore, sealed: bytes) -> tuple[bytes, dict]:
        path = tmp_path / f"plain-{uuid.uuid4().hex}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            opened = unseal_into(keys, io.BytesIO(sealed), fd, name=NAME)
        finally:
            os.close(fd)
        return path.read_bytes(), opened

    def into_a_stream(keys: KeyStore, sealed: bytes) -> tuple[bytes, dict]:
        sink = io.BytesIO()
        opened = unseal(keys, io.BytesIO(sealed), sink, name=NAME)
        return sink.getvalue(), opened

    return into_a_file if request.param == "unseal_into" else into_a_stream


@pytest.fixture
def _open(opener: Callable[[KeyStore, bytes], tuple[bytes, dict]]) -> Callable[[KeyStore, bytes], bytes]:
    return lambda keys, sealed: opener(keys, sealed)[0]


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7])
def test_round_trip_at_every_chunk_boundary(keys: KeyStore, opener: Callable, size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    sealed = _sealed(keys, data)
    assert size < 16 or data not in sealed
    plain, opened = opener(keys, sealed)
    assert plain == data
    assert opened["plaintext_bytes"] == size and opened["key_id"] == keys.master_key_id()


def _frames(sealed: bytes) -> tuple[bytes, list[bytes]]:
    """Split a sealed file into its header part and its frames (flag, length, envelope)."""
    header_end = 8 + 4 + int.from_bytes(sealed[8:12], "big")
    frames, position = [], header_end
    while position < len(sealed):
        length = int.from_bytes(sealed[position + 1:position + 5], "big")
        frames.append(sealed[position:position + 5 + length])
        position += 5 + length
    return sealed[:header_end], frames


def test_a_flipped_byte_anywhere_is_refused_naming_the_file(keys: KeyStore, _open: Callable) -> None:
    sealed = _sealed(keys, b"x" * (3 * CHUNK))
    header, frames = _frames(sealed)
    positions = [*range(12, len(header)), len(header) + 20, len(sealed) // 2, len(sealed) - 1]
    for position in positions:
        damaged = bytearray(sealed)
        damaged[position] ^= 0x01
        with pytest.raises(BackupIntegrityError, match="refused") as raised:
            _open(keys, bytes(damaged))
        assert NAME in str(raised.value)


def test_reordered_dropped_or_extra_chunks_are_refused(keys: KeyStore, _open: Callable) -> None:
    header, frames = _frames(_sealed(keys, b"".join(bytes([i]) * CHUNK for i in range(4))))
    with pytest.raises(BackupIntegrityError, match="failed authentication"):
        _open(keys, header + frames[1] + frames[0] + b"".join(frames[2:]))
    with pytest.raises(BackupIntegrityError, match="truncated"):
        _open(keys, header + b"".join(frames[:-1]))
    with pytest.raises(BackupIntegrityError, match="bytes after its last chunk"):
        _open(keys, header + b"".join(frames) + b"\0")
    # A chunk from another backup sealed under the same master key does not fit either.
    other_header, other_frames = _frames(_sealed(keys, b"".join(bytes([i]) * CHUNK for i in range(4)), "backup-2"))
    with pytest.raises(BackupIntegrityError, match="failed authentication"):
        _open(keys, header + other_frames[0] + b"".join(frames[1:]))


def test_a_wrong_master_key_is_refused(keys: KeyStore, tmp_path: Path, _open: Callable) -> None:
    sealed = _sealed(keys, b"secret rows")
    stranger = KeyStore(tmp_path / "other-keys")
    with pytest.raises(BackupIntegrityError, match="wrong key, refused") as raised:
        _open(stranger, sealed)
    assert NAME in str(raised.value)
    # Even claiming the stranger's key id, the wrapped data key does not open under its key.
    forged = sealed.replace(keys.master_key_id().encode(), stranger.master_key_id().encode())
    with pytest.raises(BackupIntegrityError, match="failed authentication"):
        _open(stranger, forged)


def test_not_a_backup_file(keys: KeyStore, _open: Callable) -> None:
    with pytest.raises(BackupIntegrityError, match="not an encaptio backup file"):
        _open(keys, b"SQLite format 3\0" + b"\0" * 100)


def test_a_damaged_chunk_among_many_is_refused_and_names_its_index(keys: KeyStore, _open: Callable) -> None:
    # Many chunks, so the threaded reader has several in flight when the damaged one comes.
    data = os.urandom(20 * CHUNK + 5)
    sealed = _sealed(keys, data)
    header, frames = _frames(sealed)
    assert _open(keys, sealed) == data
    for index in (0, 7, 19, 20):
        damaged = bytearray(frames[index])
        damaged[len(damaged) // 2] ^= 0x80
        tampered = header + b"".join(frames[:index]) + bytes(damaged) + b"".join(frames[index + 1:])
        with pytest.raises(BackupIntegrityError, match=f"{NAME} chunk {index} failed authentication.*refused"):
            _open(keys, tampered)
    # A frame claiming more than a chunk holds is damaged, whatever follows it.
    oversized = bytearray(frames[3])
    oversized[1:5] = (CHUNK + 33).to_bytes(4, "big")
    with pytest.raises(BackupIntegrityError, match=f"{NAME} chunk 3 has a damaged frame"):
        _open(keys, header + b"".join(frames[:3]) + bytes(oversized) + b"".join(frames[4:]))
