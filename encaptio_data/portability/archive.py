"""The archive layout, its manifest, and the verification every import starts with.

```
manifest.json                 format, export id, organization, schema version (Alembic head),
                              exporter version, created time, table format, counts, and the
                              sha256 and size of every other member
tables/<table>.<jsonl|csv|parquet>   the organization's rows of each owned table (scope.py);
                              content_extractions without its text column (see text/)
text/<content id>.txt         the extracted text of each content item, UTF-8
files/<content id>            the original bytes of each content item, from the object store
search/chunks.<ext>           the organization's rows of the LanceDB chunk table
                              (with their vectors in Parquet when embeddings are included)
```
The analytics aggregates of the organization are the tables daily_engagement and
daily_top_queries. Verification reads every member once, streaming: nothing is trusted (not
even a member's name) before the whole archive checks out.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

from encaptio_data.errors import IntegrityError, InvalidInputError

FORMAT = "encaptio-organization-export/1"
MANIFEST = "manifest.json"
COPY_BYTES = 1024 * 1024
_MAX_MANIFEST = 256 * 1024 * 1024


class ArchiveRefusedError(IntegrityError):
    """An archive that failed verification; the message names the member at fault."""


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such archive")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefusedError(f"{path.name} is not a readable ZIP archive ({exc}): refused") from None


def read_manifest(archive: zipfile.ZipFile, name: str) -> dict[str, Any]:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise ArchiveRefusedError(f"{name}: {MANIFEST} is missing: refused") from None
    if info.file_size > _MAX_MANIFEST:
        raise ArchiveRefusedError(f"{name}: {MANIFEST} is {info.file_size} bytes, too large: refused")
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except (ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise ArchiveRefusedError(f"{name}: {MANIFEST} is damaged ({exc}): refused") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveRefusedError(f"{name}: {MANIFEST} is not an {FORMAT} manifest: refused")
    if not isinstance(manifest.get("files"), dict):
        raise ArchiveRefusedError(f"{name}: {MANIFEST} lists no files: refused")
    return manifest


def member_sha256(archive: zipfile.ZipFile, member: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with archive.open(member) as stream:
        while chunk := stream.read(COPY_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_archive(path: Path, *, schema_version: str) -> dict[str, Any]:
    """The manifest of a complete, unaltered archive written for this schema; else refused naming the member."""
    name = path.name
    with _open_zip(path) as archive:
        manifest = read_manifest(archive, name)
        if manifest.get("schema_version") != schema_version:
            raise ArchiveRefusedError(
                f"{name}: {MANIFEST} has schema version {manifest.get('schema_version')!r}, this instance is at "
                f"{schema_version!r}: refused (migrate the older side first)")
        listed = manifest["files"]
        present = [info.filename for info in archive.infolist() if info.filename != MANIFEST]
        if len(present) != len(set(present)):
            duplicate = next(n for n in present if present.count(n) > 1)
            raise ArchiveRefusedError(f"{name}: member {duplicate} appears twice: refused")
        for member in sorted(set(listed) - set(present)):
            raise ArchiveRefusedError(f"{name}: member {member} listed in {MANIFEST} is missing: refused")
        for member in sorted(set(present) - set(listed)):
            raise ArchiveRefusedError(f"{name}: member {member} is not listed in {MANIFEST}: refused")
        for member in sorted(listed):
            expected = listed[member]
            try:
                actual, size = member_sha256(archive, member)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise ArchiveRefusedError(f"{name}: member {member} is damaged ({exc}): refused") from None
            if actual != expected.get("sha256") or size != expected.get("bytes"):
                raise ArchiveRefusedError(f"{name}: member {member} has sha256 {actual} ({size} bytes), the manifest "
                                          f"says {expected.get('sha256')} ({expected.get('bytes')} bytes): refused")
    return manifest
