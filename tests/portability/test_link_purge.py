"""The stored copy behind an export link is purged once the link expires: every version, on both profiles,
by the same purge pass that removes expired access exports of data subject requests."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.portability.conftest import Clock, make_admin, small_organization
from tests.privacy.conftest import plant

from encaptio_data.db.enums import HoldScope
from encaptio_data.db.models import AuditEntry, LegalHold, utcnow
from encaptio_data.errors import ObjectNotFoundError
from encaptio_data.lifecycle.purge import purge
from encaptio_data.platform import Platform
from encaptio_data.portability import ExpiredLinkError, download, export_organization
from encaptio_data.portability.links import issue_link
from encaptio_data.privacy.access import AccessExports


def _versions(platform: Platform, key: str) -> int:
    return sum(1 for v in platform.objects.list_versions(key) if v.key == key)


def _exports(report: dict) -> dict:
    return report["classes"]["exports"]


def test_expired_links_lose_their_stored_copies(platform: Platform, tmp_path: Path, clock: Clock) -> None:
    org = small_organization(platform)
    admin = make_admin(platform)
    # A minute earlier: the access export stored below, in real time, then expires a minute after this one
    # (S3 keeps whole seconds of the time an object was stored).
    clock.advance(-timedelta(minutes=1))
    result = export_organization(platform, org, table_format="csv", link=True, operator=admin, clock=clock)
    # A second version of the sealed copy (as a store retried after a crash would leave): both must go.
    head = platform.objects.head(result.key)
    platform.objects.put(result.key, platform.objects.get(result.key), metadata=head.metadata)
    keys = [result.key] + ([result.key.removesuffix(".enc")] if result.presigned_url else [])
    stored = sum(_versions(platform, key) for key in keys)
    assert stored == len(keys) + 1
    # A re-issued link ends when the stored copy does, never later.
    assert issue_link(platform, org, uuid.UUID(result.export_id), clock=clock)["expires_at"] == result.expires_at

    subject = plant(platform, "linked")
    request_id = uuid.uuid4()
    access = AccessExports(platform).create(request_id, subject.user_id)

    just_before = clock.now + timedelta(days=7) - timedelta(seconds=1)
    kept = purge(platform, just_before, operator=admin)
    assert _exports(kept)["purged"] == {} and sum(_versions(platform, key) for key in keys) == stored
    clock.now = just_before
    assert download(platform, result.token, tmp_path / "in-time", operator=admin, clock=clock).stat().st_size

    expiry = result.expires_at
    dry = _exports(purge(platform, expiry, dry_run=True))
    assert dry["purged"] == {"exports": 1, "object_versions": stored}
    assert sum(_versions(platform, key) for key in keys) == stored, "a dry run changes nothing"
    gone = _exports(purge(platform, expiry, operator=admin))
    assert gone["purged"] == {"exports": 1, "object_versions": stored}
    assert sum(_versions(platform, key) for key in keys) == 0, "every version of every copy"
    assert _versions(platform, access.key) == 1, "the access export's link is still valid"
    assert _exports(purge(platform, expiry, operator=admin))["purged"] == {}, "a re-run finds nothing"

    clock.now = expiry
    with pytest.raises(ExpiredLinkError) as late:
        download(platform, result.token, tmp_path / "late", operator=admin, clock=clock)
    assert "expired" in str(late.value) and "\n" not in str(late.value)
    with pytest.raises(ObjectNotFoundError, match="purged after its link expired"):
        issue_link(platform, org, uuid.UUID(result.export_id), clock=clock)

    # The access export follows the same pass, and a legal hold on its organization keeps it.
    after_access = utcnow() + timedelta(days=7, minutes=5)
    with platform.db.session() as session:
        hold = LegalHold(organization_id=subject.organization_id, scope=HoldScope.ORGANIZATION,
                         scope_id=subject.organization_id, reason="matter 7", placed_by="counsel@example.org")
        session.add(hold)
        session.flush()
        hold_id = hold.id
    held = _exports(purge(platform, after_access, operator=admin))
    assert held["purged"] == {} and [h["item"] for h in held["held"]] == [f"export:{access.key.removesuffix('.enc')}"]
    with platform.db.session() as session:
        session.get(LegalHold, hold_id).released_at = utcnow()
    released = _exports(purge(platform, after_access, operator=admin))
    assert released["purged"]["exports"] == 1 and _versions(platform, access.key) == 0
    with platform.db.session() as session:
        entries = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "retention.purged")).all()
    assert [e.details["exports"] for e in entries if e.details["data_class"] == "exports"] == [1, 1]
