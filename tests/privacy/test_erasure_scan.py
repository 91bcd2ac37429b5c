"""The erasure verification reads object versions and files a chunk at a time, and still finds
an identifier that straddles two reads."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

from encaptio_data.keys import STREAM_CHUNK_BYTES
from encaptio_data.platform import Platform
from encaptio_data.privacy.erasure import scan_directory, stream_holds, verify_erased
from tests.privacy.conftest import plant

NEEDLE = "canary-4f1d9e2a"


class _CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest_read = 0

    def read(self, size: int | None = -1) -> bytes:
        piece = super().read(size)
        self.largest_read = max(self.largest_read, len(piece))
        return piece


def _straddling(total: int, boundary: int) -> bytes:
    """total bytes of filler with NEEDLE split in half across byte offset `boundary`."""
    start = boundary - len(NEEDLE) // 2
    return b"x" * start + NEEDLE.encode() + b"y" * (total - start - len(NEEDLE))


def test_a_needle_split_across_reads_is_found_in_chunk_sized_reads() -> None:
    for boundary in (16, 32, 48):
        reader = _CountingReader(_straddling(64, boundary))
        assert stream_holds(reader, [NEEDLE.encode(), b"other-needle"], chunk_bytes=16)
        assert reader.largest_read <= 16


def test_absent_needles_and_no_needles_are_not_found() -> None:
    assert not stream_holds(io.BytesIO(b"z" * 1000), [NEEDLE.encode()], chunk_bytes=7)
    assert not stream_holds(io.BytesIO(NEEDLE.encode()), [], chunk_bytes=7)
    # A needle that is only partly at the end of the stream is not there.
    assert not stream_holds(io.BytesIO(b"q" * 30 + NEEDLE.encode()[:-1]), [NEEDLE.encode()], chunk_bytes=8)


def test_a_file_larger_than_a_read_is_scanned_across_its_chunk_boundary(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(_straddling(3 * STREAM_CHUNK_BYTES, 2 * STREAM_CHUNK_BYTES))
    (tmp_path / "utf16.txt").write_bytes(b"\0" * (STREAM_CHUNK_BYTES - 5) + NEEDLE.encode("utf-16-le"))
    (tmp_path / "clean.bin").write_bytes(b"c" * (STREAM_CHUNK_BYTES + 10))
    scanned: dict[str, int] = {}
    findings = scan_directory(tmp_path, [NEEDLE], scanned, skip=set())
    assert sorted(findings) == ["file big.bin still holds an identifier", "file utf16.txt still holds an identifier"]
    assert scanned["files"] == 3


def test_an_object_version_larger_than_a_read_is_reported(platform: Platform) -> None:
    platform.objects.put("uploads/large/blob.bin", _straddling(2 * STREAM_CHUNK_BYTES + 99, STREAM_CHUNK_BYTES))
    platform.objects.put("uploads/large/clean.bin", b"c" * (STREAM_CHUNK_BYTES + 1))
    verification = verify_erased(platform, None, [NEEDLE])
    objects = [f for f in verification.findings if f.startswith("object ")]
    assert len(objects) == 1 and "uploads/large/blob.bin" in objects[0]
    platform.objects.delete_all_versions("uploads/large/blob.bin")
    assert not [f for f in verify_erased(platform, None, [NEEDLE]).findings if f.startswith("object ")]


def test_each_needle_is_found_in_its_own_table_in_the_one_pass_per_table(platform: Platform) -> None:
    victim = plant(platform, "scan")
    absent = f"absent-{uuid.uuid4().hex}"

    def tables(needles: list[str]) -> set[str]:
        findings = verify_erased(platform, None, needles).findings
        return {f.split()[2] for f in findings if f.startswith("database table")}

    found = tables([absent, f"Notes of {victim.canary}", f"s-{victim.canary}"])
    assert {"capsules", "interactions", "interaction_events"} <= found
    assert "users" not in found
    assert tables([absent]) == set()
