"""Delivery of an organization export: the 7-day link, its download, and the notification.

The link is the access export's (privacy/access.py): the same HMAC-signed token format and
key, the same lifetime, the same injectable clock, and on S3 the same presigned URL to a
server-side-encrypted plain copy. The stored copies carry their link's end (``expires-at``) and
the retention purge deletes every version of them once it has passed (lifecycle/purge.py, the
same pass that removes expired access exports). The token's subject slot reads ``org-<organization id>``,
which no access-export token can carry, so a token issued for one kind of export never
opens the other. The stored copy is sealed (streamed AES-256-GCM under a data key wrapped by
the master key, lifecycle/backup.py), so an archive of any size is encrypted without
holding it in memory.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from encaptio_data import audit, authz
from encaptio_data.db.models import utcnow
from encaptio_data.errors import IntegrityError, InvalidInputError, ObjectNotFoundError
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle.backup import seal, unseal
from encaptio_data.lifecycle.purge import EXPIRES_FIELD
from encaptio_data.platform import Platform
from encaptio_data.privacy.access import LINK_LIFETIME, AccessExports, ExpiredLinkError

log = logging.getLogger("encaptio_data.portability")

PREFIX = "exports/organizations/"
WEBHOOK_VARIABLE = "ENCAPTIO_EXPORT_WEBHOOK_URL"
_SUBJECT = "org-"

__all__ = ["ExpiredLinkError", "LINK_LIFETIME", "download", "issue_link", "notify", "sealed_key", "store_archive"]


def sealed_key(organization_id: uuid.UUID, export_id: uuid.UUID) -> str:
    return f"{PREFIX}{organization_id}/{export_id}.zip.enc"


def _label(export_id: uuid.UUID) -> str:
    return f"organization-export:{export_id}"


def store_archive(platform: Platform, path: Path, organization_id: uuid.UUID, export_id: uuid.UUID, *,
                  clock: Callable[[], datetime] = utcnow) -> dict[str, Any]:
    """Put the sealed copy (and on S3 the SSE plain copy behind the presigned URL); idempotent per export id.

    Each copy carries the moment its link ends (``expires-at``): the purge removes every version
    of it then (lifecycle/purge.py), and a link issued again later never outlives it.
    """
    key = sealed_key(organization_id, export_id)
    stored = {"key": key, "plain_key": None}
    metadata = {"organization": str(organization_id), "export": str(export_id),
                EXPIRES_FIELD: (clock() + LINK_LIFETIME).isoformat()}
    if not platform.objects.exists(key):
        with path.open("rb") as source:
            platform.objects.put(key, seal(KeyStore(platform.settings.keys_dir), source, label=_label(export_id)),
                                 content_type="application/octet-stream", metadata=metadata)
    if getattr(platform.objects, "presigned_url", None) is not None:
        plain_key = key.removesuffix(".enc")
        if not platform.objects.exists(plain_key):
            with path.open("rb") as source:
                platform.objects.put(plain_key, source, content_type="application/zip", metadata=metadata)
        stored["plain_key"] = plain_key
    return stored


def _link_end(platform: Platform, organization_id: uuid.UUID, export_id: uuid.UUID,
              clock: Callable[[], datetime]) -> datetime:
    """When the stored copy's link ends: its stamp; a copy stored before stamps existed gets a full lifetime."""
    try:
        stamped = platform.objects.head(sealed_key(organization_id, export_id)).metadata.get(EXPIRES_FIELD)
    except ObjectNotFoundError:
        raise ObjectNotFoundError(f"export {export_id} of organization {organization_id} is not stored "
                                  "(never linked, or purged after its link expired)") from None
    return datetime.fromisoformat(stamped) if stamped else clock() + LINK_LIFETIME


def issue_link(platform: Platform, organization_id: uuid.UUID, export_id: uuid.UUID, *,
               clock: Callable[[], datetime] = utcnow) -> dict[str, Any]:
    """A token (and on S3 a presigned URL) for the stored copy, valid until the copy's own expiry."""
    expires = _link_end(platform, organization_id, export_id, clock)
    if clock() >= expires:
        raise ExpiredLinkError(f"export {export_id} expired at {expires.isoformat()}; request a new export")
    token = AccessExports(platform, clock=clock).token(export_id, f"{_SUBJECT}{organization_id}", expires)
    presigned = None
    create_link = getattr(platform.objects, "presigned_url", None)
    if create_link is not None:
        presigned = create_link(sealed_key(organization_id, export_id).removesuffix(".enc"),
                                expires_in=min(LINK_LIFETIME, expires - clock()))
    return {"token": token, "expires_at": expires, "presigned_url": presigned}


def _parse(platform: Platform, token: str, clock: Callable[[], datetime]) -> tuple[uuid.UUID, uuid.UUID, datetime]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        export_id, subject, expiry, _ = raw.split(":")
        expires_at = datetime.fromtimestamp(int(expiry), tz=clock().tzinfo)
        if not subject.startswith(_SUBJECT):
            raise InvalidInputError("this token is not an organization export link (an access export's?)")
        organization_id, export_uuid = uuid.UUID(subject.removeprefix(_SUBJECT)), uuid.UUID(export_id)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError("download token is malformed") from None
    # Recomputing the token with the access export's signer keeps one signing scheme.
    expected = AccessExports(platform, clock=clock).token(export_uuid, subject, expires_at)
    if not hmac.compare_digest(expected, token):
        raise IntegrityError("download token signature does not match: it was altered or not issued here")
    if clock() >= expires_at:
        raise ExpiredLinkError(f"download link expired at {expires_at.isoformat()}; request a new export")
    return organization_id, export_uuid, expires_at


def download(platform: Platform, token: str, out_dir: Path, *, operator: authz.Principal | str | None,
             clock: Callable[[], datetime] = utcnow) -> Path:
    """Write the archive behind a valid, unexpired token to out_dir (atomically).

    The token proves the link is genuine and current; the operator must still be allowed to
    export the organization (the link is not a bearer pass around least privilege).
    """
    organization_id, export_id, _ = _parse(platform, token, clock)
    principal = authz.authorize(platform, operator, authz.Permission.EXPORT_ORG, organization_id)
    key = sealed_key(organization_id, export_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"encaptio-org-{organization_id}-{export_id}.zip"
    partial = target.with_name(target.name + ".partial")
    try:
        with platform.objects.open(key) as stream, partial.open("wb") as sink:
            unseal(KeyStore(platform.settings.keys_dir), stream, sink, name=key)
    except ObjectNotFoundError:
        partial.unlink(missing_ok=True)
        raise ObjectNotFoundError(f"export {export_id} of organization {organization_id} is no longer stored") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    audit.append(platform.db, actor=principal.actor, action="organization.export.downloaded", organization_id=organization_id,
                 target=str(export_id), details={"bytes": target.stat().st_size})
    return target


def webhook_url(platform: Platform, explicit: str | None) -> str | None:
    # Read when the export runs (never at import time); a settings field can take over the
    # variable without changing callers.
    return explicit or getattr(platform.settings, "export_webhook_url", None) or os.environ.get(WEBHOOK_VARIABLE) or None


def notify(url: str | None, payload: dict[str, Any]) -> dict[str, Any]:
    """Log the completed export, and POST it to the webhook when one is configured.

    A failing webhook does not undo a finished export: the failure is logged and reported.
    The log line names the export and its size, never the token.
    """
    import httpx

    log.info("organization export %s of organization %s ready: %s (%s bytes)", payload["export_id"],
             payload["organization_id"], payload.get("path") or payload.get("key"), payload["bytes"])
    if not url:
        return {"sent": False}
    try:
        response = httpx.post(url, json=payload, timeout=10.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("export webhook failed for %s: %s", payload["export_id"], exc)
        return {"sent": False, "error": " ".join(str(exc).split())[:200]}
    return {"sent": True, "status": response.status_code}
