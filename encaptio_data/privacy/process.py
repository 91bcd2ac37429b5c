"""Carrying out an approved request, one code path for the sensor-launched jobs and `encaptio dsar process`.

Each handler is idempotent: a run killed half-way leaves the request in_progress (or
failed), and running it again converges. The receipt names no person: it carries the
request id, the subject's keyed reference, counts and the verification result, signed with
an HMAC key so it can be checked later (`verify_receipt`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from encaptio_data import audit, authz
from encaptio_data.authz import Permission, Principal
from encaptio_data.db.enums import ConsentPurpose, RequestType, RestrictionKind
from encaptio_data.db import sealing
from encaptio_data.db.models import DataSubjectRequest, ErasureLedger, ProcessingRestriction, User, utcnow
from encaptio_data.errors import EncaptioError
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform
from encaptio_data.privacy.access import AccessExports
from encaptio_data.privacy.erasure import erase_subject, subject_cache_tag, verify_erased
from encaptio_data.privacy.requests import Requests
from encaptio_data.privacy.subjects import subject_ref

RECEIPT_KEY = "receipt-signing"


def sign_receipt(keys: KeyStore, receipt: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(receipt, sort_keys=True, separators=(",", ":"))
    return {**receipt, "signature": hmac.new(keys.secret(RECEIPT_KEY), body.encode(), hashlib.sha256).hexdigest()}


def verify_receipt(keys: KeyStore, receipt: dict[str, Any]) -> bool:
    unsigned = {k: v for k, v in receipt.items() if k != "signature"}
    return hmac.compare_digest(sign_receipt(keys, unsigned)["signature"], receipt.get("signature", ""))


class RequestProcessor:
    def __init__(self, platform: Platform, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.platform = platform
        self.requests = Requests(platform, clock=clock)
        self.exports = AccessExports(platform, clock=clock)
        self.keys = KeyStore(platform.settings.keys_dir)
        self.clock = clock

    def process(self, request_id: str, *, operator: Principal | str | None) -> dict[str, Any]:
        actor = self.requests.authorize(request_id, operator, Permission.PROCESS_REQUESTS).actor
        request = self.requests.start(request_id, actor=actor)
        if request is None:
            with self.platform.db.session() as session:
                from encaptio_data.privacy.requests import request_view

                return request_view(self.requests.get(session, request_id))
        handler = {RequestType.ACCESS: self._access, RequestType.ERASURE: self._erasure,
                   RequestType.RECTIFICATION: self._rectification, RequestType.RESTRICTION: self._restriction,
                   RequestType.OBJECTION: self._restriction}[request.type]
        try:
            summary = handler(request, actor)
        except EncaptioError as exc:
            return self.requests.finish(request.id, actor=actor, failure=str(exc))
        receipt = sign_receipt(self.keys, {
            "request_id": str(request.id), "type": request.type.value, "subject_ref": request.subject_hash,
            "organization_id": str(request.organization_id), "completed_at": self.clock().isoformat(), **summary})
        return self.requests.finish(request.id, actor=actor, receipt=receipt)

    def process_all(self, *, operator: Principal | str | None) -> list[dict[str, Any]]:
        """Every approved request the operator may process: a privacy officer works their own
        organization's queue; requests of other organizations are left for theirs."""
        principal = authz.resolve(self.platform, operator)
        if not any(Permission.PROCESS_REQUESTS in grant.permissions for grant in principal.grants):
            authz.check(self.platform.db, principal, Permission.PROCESS_REQUESTS)  # denied and audited
        ids = self.requests.approved_ids()
        with self.platform.db.session() as session:
            organizations = dict(session.execute(sa.select(DataSubjectRequest.id, DataSubjectRequest.organization_id)
                                                 .where(DataSubjectRequest.id.in_([uuid.UUID(i) for i in ids]))).all())
        return [self.process(request_id, operator=principal) for request_id in ids
                if principal.allows(Permission.PROCESS_REQUESTS, organizations.get(uuid.UUID(request_id)))]

    def _user_id(self, request: DataSubjectRequest) -> uuid.UUID:
        if request.user_id is not None:
            return request.user_id
        # A re-run after the rows were erased: the ledger step already happened; nothing to find.
        raise EncaptioError(f"request {request.id} no longer names a subject")

    def _access(self, request: DataSubjectRequest, actor: str) -> dict[str, Any]:
        export = self.exports.create(request.id, self._user_id(request))
        self.requests.record_step(request.id, "export", {"key": export.key, "bytes": export.bytes})
        return {"export": {"token": export.token, "expires_at": export.expires_at.isoformat(), "bytes": export.bytes,
                           "counts": export.counts, "presigned_url": export.presigned_url}}

    def _erasure(self, request: DataSubjectRequest, actor: str) -> dict[str, Any]:
        if request.user_id is None:
            # A re-run after a crash past the database step: the rows are gone and the ledger
            # holds the subject; what is left to do is the verification of what we can know.
            with self.platform.db.session() as session:
                if session.scalar(sa.select(ErasureLedger.id).where(ErasureLedger.subject_hash == request.subject_hash)) is None:
                    raise EncaptioError(f"request {request.id} no longer names a subject and none was erased")
            erased, user_id, identifiers, names = request.steps.get("erasure", {}), None, [], []
        else:
            user_id = request.user_id
            with self.platform.db.session() as session:
                user = session.get(User, user_id)
                identifiers, names = [user.email, str(user_id), user_id.hex], [user.name]
            erased = erase_subject(self.platform, user_id, actor=actor, request_id=request.id).as_dict()
            # No identifier of the subject goes into the request's steps: they must survive the erasure.
            self.requests.record_step(request.id, "erasure", {k: v for k, v in erased.items() if k != "subject_ref"})
        verification = verify_erased(self.platform, user_id, identifiers, names)
        if not verification.passed:
            raise EncaptioError(f"erasure verification found data left: {'; '.join(verification.findings[:5])}")
        if verification.mentions:
            # Counts by store only, in the receipt and the audit trail: a place's name (another
            # creator's file name) can itself hold the subject's name, and neither may keep it.
            # The officer finds the places by searching for the name they were given.
            audit.append(self.platform.db, actor=actor, action="erasure.mentions_for_review", target=str(request.id),
                         organization_id=request.organization_id,
                         details={"mentions": verification.mention_counts()})
        return {"erased": {k: v for k, v in erased.items() if k not in {"subject_ref", "at"}},
                "verification": {"passed": True, "scanned": verification.scanned,
                                 "mentions_for_review": verification.mention_counts()}}

    def _rectification(self, request: DataSubjectRequest, actor: str) -> dict[str, Any]:
        user_id = self._user_id(request)
        with self.platform.db.session() as session:
            user = session.get(User, user_id)
            changed = sorted(k for k, v in request.changes.items() if getattr(user, k) != v)
            for field_name in changed:
                setattr(user, field_name, request.changes[field_name])
            if "email" in changed:
                # The keyed reference follows the email so later requests still find this subject.
                new_ref = subject_ref(self.keys, user.organization_id, user.email)
                sealed_email = sealing.seal_value(self.keys, DataSubjectRequest.subject_email, user_id, user.email)
                session.execute(sa.update(DataSubjectRequest).where(DataSubjectRequest.user_id == user_id)
                                .values(subject_email=sealed_email, subject_hash=new_ref))
        removed = self.platform.cache.invalidate_tag(subject_cache_tag(user_id))
        return {"rectified_fields": changed, "cache_keys_invalidated": removed}

    def _restriction(self, request: DataSubjectRequest, actor: str) -> dict[str, Any]:
        user_id = self._user_id(request)
        kind = RestrictionKind.RESTRICTION if request.type is RequestType.RESTRICTION else RestrictionKind.OBJECTION
        purpose = request.changes.get("purpose")
        with self.platform.db.session() as session:
            exists = session.scalar(sa.select(ProcessingRestriction.id).where(
                ProcessingRestriction.request_id == request.id))
            if exists is None:
                session.add(ProcessingRestriction(user_id=user_id, kind=kind, request_id=request.id,
                                                  purpose=ConsentPurpose(purpose) if purpose else None,
                                                  reason=f"{kind.value} requested"))
        removed = self.platform.cache.invalidate_tag(subject_cache_tag(user_id))
        return {"restriction": {"kind": kind.value, "purpose": purpose or "all"}, "cache_keys_invalidated": removed}
