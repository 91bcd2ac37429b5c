"""Tampered archives, interrupted exports, a second import, expired links and the webhook, on both profiles.

These use a small organization whose uploads are registered but not embedded: what is
under test is the archive and the stores' state, which the model would only make slower.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.portability.conftest import Clock, emptiness, make_admin, org_rows, small_organization

from encaptio_data.accounts import add_user
from encaptio_data.db.migrate import head_revision
from encaptio_data.errors import IntegrityError, InvalidInputError, PermissionDeniedError
from encaptio_data.platform import Platform
from encaptio_data.portability import (ArchiveRefusedError, ExpiredLinkError, OrganizationExistsError, download,
                                       export_organization, import_organization, verify_archive)
from encaptio_data.portability import export as export_module
from encaptio_data.portability import importer as importer_module
from encaptio_data.portability.archive import MANIFEST
from encaptio_data.portability.export import archive_name
from encaptio_data.privacy.access import AccessExports

TARGET_ADMIN = "admin@operations.example"


@pytest.fixture
def exported(platform: Platform, tmp_path: Path) -> tuple[uuid.UUID, Path, str]:
    org = small_organization(platform)
    admin = make_admin(platform)
    result = export_organization(platform, org, table_format="json", out_dir=tmp_path / "out", operator=admin)
    return org, Path(result.path), admin


def _rewrite(source: Path, destination: Path, change: Callable[[str, bytes], bytes | None],
             add: dict[str, bytes] | None = None) -> Path:
    """Copy an archive member by member; change() returns new bytes, or None to drop the member."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(destination, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info.filename))
            if data is not None:
                new.writestr(info, data)
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return destination


def _first(archive: Path, prefix: str) -> str:
    with zipfile.ZipFile(archive) as handle:
        return sorted(n for n in handle.namelist() if n.startswith(prefix))[0]


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


def _wrong_schema(name: str, data: bytes) -> bytes:
    if name != MANIFEST:
        return data
    manifest = json.loads(data)
    manifest["schema_version"] = "0003"
    return json.dumps(manifest).encode()


def _tampered(kind: str, archive: Path, tmp_path: Path) -> tuple[Path, str]:
    """A tampered copy of the archive and the member the refusal must name."""
    out = tmp_path / f"tampered-{kind}.zip"
    if kind == "changed byte":
        member = _first(archive, "files/")
        return _rewrite(archive, out, lambda n, d: _flip(d) if n == member else d), member
    if kind == "changed byte on disk":
        # No rewrite at all: one bit of the stored bytes of a file flips inside the ZIP itself.
        member = _first(archive, "files/")
        with zipfile.ZipFile(archive) as handle:
            info = handle.getinfo(member)
        raw = bytearray(archive.read_bytes())
        name_length, extra_length = (int.from_bytes(raw[info.header_offset + o:info.header_offset + o + 2], "little")
                                     for o in (26, 28))
        raw[info.header_offset + 30 + name_length + extra_length + info.compress_size // 2] ^= 0x01
        out.write_bytes(bytes(raw))
        return out, member
    if kind == "missing file":
        member = _first(archive, "text/")
        return _rewrite(archive, out, lambda n, d: None if n == member else d), member
    if kind == "extra file":
        return _rewrite(archive, out, lambda n, d: d, add={"files/smuggled": b"not exported"}), "files/smuggled"
    if kind == "wrong schema version":
        return _rewrite(archive, out, _wrong_schema), MANIFEST
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["changed byte", "changed byte on disk", "missing file", "extra file",
                                  "wrong schema version"])
def test_tampered_archive_is_refused_naming_the_member_and_nothing_is_imported(
        kind: str, exported: tuple[uuid.UUID, Path, str], target: Platform, tmp_path: Path) -> None:
    org, archive, _ = exported
    tampered, member = _tampered(kind, archive, tmp_path)
    with pytest.raises(ArchiveRefusedError) as refused:
        import_organization(target, tampered, operator=TARGET_ADMIN)
    assert member in str(refused.value) and "refused" in str(refused.value)
    assert emptiness(target, org) == {"organization_rows": 0, "object_versions": 0, "vector_rows": 0}
    # The untouched archive still imports: the refusal left nothing in the way.
    assert import_organization(target, archive, operator=TARGET_ADMIN).counts["content"] == 3


def test_failure_after_objects_and_rows_leaves_nothing(exported: tuple[uuid.UUID, Path, str], target: Platform,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    org, archive, _ = exported

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("vector store went away")

    original = importer_module._load_vectors
    monkeypatch.setattr(importer_module, "_load_vectors", broken)
    with pytest.raises(RuntimeError, match="vector store went away"):
        import_organization(target, archive, operator=TARGET_ADMIN)
    assert emptiness(target, org) == {"organization_rows": 0, "object_versions": 0, "vector_rows": 0}
    monkeypatch.setattr(importer_module, "_load_vectors", original)
    assert import_organization(target, archive, operator=TARGET_ADMIN).counts["content"] == 3


def test_second_import_is_refused_and_changes_nothing(exported: tuple[uuid.UUID, Path, str], target: Platform) -> None:
    org, archive, _ = exported
    first = import_organization(target, archive, operator=TARGET_ADMIN)
    before = org_rows(target, org)
    with pytest.raises(OrganizationExistsError, match=f"organization {org} already exists"):
        import_organization(target, archive, operator=TARGET_ADMIN)
    assert org_rows(target, org) == before
    assert emptiness(target, org)["object_versions"] == first.counts["files"] == 3


def test_import_into_the_source_or_over_a_taken_slug_is_refused(exported: tuple[uuid.UUID, Path, str],
                                                               platform: Platform, target: Platform) -> None:
    org, archive, admin = exported
    with pytest.raises(OrganizationExistsError, match="already exists"):
        import_organization(platform, archive, operator=admin)
    small_organization(target, slug="tiny", files=1)  # another organization, same slug
    with pytest.raises(OrganizationExistsError, match="slug 'tiny'"):
        import_organization(target, archive, operator=TARGET_ADMIN)
    assert emptiness(target, org)["organization_rows"] == 0


def test_only_permitted_operators_export_and_import(exported: tuple[uuid.UUID, Path, str], platform: Platform,
                                                    target: Platform, tmp_path: Path) -> None:
    org, archive, _ = exported
    with pytest.raises(PermissionDeniedError):
        export_organization(platform, org, out_dir=tmp_path / "denied", operator="creator@tiny.example")
    assert not (tmp_path / "denied").exists()
    with target.db.session() as session:
        other = small_organization(target, slug="elsewhere", files=1)
        add_user(session, email="owner@elsewhere.example", name="Owner", organization_id=other, role="admin")
    with pytest.raises(PermissionDeniedError):
        import_organization(target, archive, operator="creator@elsewhere.example")
    assert emptiness(target, org)["organization_rows"] == 0


def test_interrupted_export_reruns_into_one_complete_archive(platform: Platform, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    org = small_organization(platform)
    admin = make_admin(platform)
    out = tmp_path / "out"
    export_id = uuid.uuid4()
    calls = []
    original = export_module.write_file_member

    def crash_on_second_file(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise InterruptedError("killed halfway")
        return original(*args, **kwargs)

    monkeypatch.setattr(export_module, "write_file_member", crash_on_second_file)
    with pytest.raises(InterruptedError):
        export_organization(platform, org, out_dir=out, export_id=export_id, operator=admin)
    assert list(out.iterdir()) == []  # no half archive is ever visible under its final name
    monkeypatch.setattr(export_module, "write_file_member", original)

    # A process killed outright leaves its partial behind; one more is being written right now.
    killed = out / (archive_name(org, export_id) + ".partial")
    killed.write_bytes(b"PK half an archive")
    older = out / (archive_name(org, uuid.uuid4()) + ".partial")
    older.write_bytes(b"PK another abandoned attempt")
    live = out / (archive_name(org, uuid.uuid4()) + ".partial")
    with live.open("wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = export_organization(platform, org, out_dir=out, export_id=export_id, operator=admin)
        assert sorted(p.name for p in out.iterdir()) == sorted([archive_name(org, export_id), live.name])
    manifest = verify_archive(Path(result.path), schema_version=head_revision())
    with zipfile.ZipFile(result.path) as handle:
        names = handle.namelist()
    assert len(names) == len(set(names)) == len(manifest["files"]) + 1
    assert manifest["counts"]["files"] == 3 and not result.reused

    again = export_organization(platform, org, out_dir=out, export_id=export_id, operator=admin)
    assert again.reused and again.sha256 == result.sha256 and again.path == result.path


def test_link_expires_after_seven_days(platform: Platform, tmp_path: Path, clock: Clock) -> None:
    org = small_organization(platform)
    admin = make_admin(platform)
    result = export_organization(platform, org, table_format="csv", link=True, operator=admin, clock=clock)
    assert result.path is None and result.key and result.token
    assert result.expires_at == clock.now + timedelta(days=7)
    assert list((platform.settings.root / "exports" / "organizations").iterdir()) == []  # the store holds the copy
    if platform.settings.profile == "production":
        fetched = httpx.get(result.presigned_url)
        assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == result.sha256
    else:
        assert result.presigned_url is None

    clock.advance(timedelta(days=7) - timedelta(seconds=1))
    path = download(platform, result.token, tmp_path / "got", operator=admin, clock=clock)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == result.sha256
    verify_archive(path, schema_version=head_revision())

    with pytest.raises(PermissionDeniedError):
        download(platform, result.token, tmp_path / "creator", operator="creator@tiny.example", clock=clock)
    altered = result.token[:-2] + ("A" if result.token[-2] != "A" else "B") + result.token[-1]
    with pytest.raises((IntegrityError, InvalidInputError)):
        download(platform, altered, tmp_path / "altered", operator=admin, clock=clock)
    access_token = AccessExports(platform, clock=clock).token(uuid.uuid4(), uuid.uuid4(), clock.now + timedelta(days=1))
    with pytest.raises(InvalidInputError, match="not an organization export link"):
        download(platform, access_token, tmp_path / "access", operator=admin, clock=clock)

    clock.advance(timedelta(seconds=1))
    with pytest.raises(ExpiredLinkError, match="expired"):
        download(platform, result.token, tmp_path / "late", operator=admin, clock=clock)
    assert not (tmp_path / "late").exists() or list((tmp_path / "late").iterdir()) == []


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/exports", received
    server.shutdown()
    server.server_close()


def test_requester_is_notified_by_log_and_webhook(platform: Platform, tmp_path: Path, webhook: tuple[str, list[dict]],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    url, received = webhook
    org = small_organization(platform)
    admin = make_admin(platform)
    monkeypatch.setenv("ENCAPTIO_EXPORT_WEBHOOK_URL", url)
    with caplog.at_level(logging.INFO, logger="encaptio_data.portability"):
        result = export_organization(platform, org, link=True, operator=admin)
    assert result.notification == {"sent": True, "status": 204}
    (payload,) = received
    assert payload["event"] == "organization.export.completed" and payload["export_id"] == result.export_id
    assert payload["token"] == result.token and payload["sha256"] == result.sha256
    assert any(result.export_id in r.getMessage() and "ready" in r.getMessage() for r in caplog.records)
    assert all(result.token not in r.getMessage() for r in caplog.records)

    # A webhook that cannot be reached does not undo a finished export.
    failed = export_organization(platform, org, out_dir=tmp_path / "out", operator=admin,
                                 webhook_url="http://127.0.0.1:9/unreachable")
    assert failed.notification["sent"] is False and "error" in failed.notification
    assert Path(failed.path).is_file()


@pytest.mark.parametrize("bad", [{"table_format": "xml"}, {"link": True}, {"out_dir": None},
                                 {"table_format": "json", "embeddings": True}, {"organization_id": "not-a-uuid"}])
def test_bad_export_requests_are_refused_in_one_line(platform: Platform, tmp_path: Path, bad: dict) -> None:
    org = small_organization(platform, files=1)
    admin = make_admin(platform)
    arguments = {"organization_id": org, "table_format": "json", "out_dir": tmp_path / "out"} | bad
    with pytest.raises(InvalidInputError) as refused:
        export_organization(platform, arguments.pop("organization_id"), operator=admin, **arguments)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
