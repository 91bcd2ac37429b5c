"""Data subject requests: intake, identity verification, approval, deadlines and state.

States: received → identity_verified → approved → in_progress → completed, or rejected /
failed with a reason. Every transition is checked here (not in the CLI) and lands in the
audit trail with the operator who made it.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from sqlalchemy.orm import Session

from encaptio_data import audit
from encaptio_data.accounts import normalize_email, parse_uuid
from encaptio_data.authz import Permission, Principal, authorize
from encaptio_data.db.enums import Jurisdiction, RequestStatus, RequestType
from encaptio_data.db.models import DataSubjectRequest, utcnow
from encaptio_data.errors import EncaptioError, InvalidInputError, NotFoundError, PermissionDeniedError
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform
from encaptio_data.privacy.subjects import find_user, subject_ref

OPEN_STATES = {RequestStatus.RECEIVED, RequestStatus.IDENTITY_VERIFIED, RequestStatus.APPROVED,
               RequestStatus.IN_PROGRESS}
# Requests typed by an operator who has already checked who is asking need no second check;
# requests arriving through self-service channels prove control of the email address first.
SOURCES_WITHOUT_VERIFICATION = frozenset({"cli", "operator"})
NEEDS_APPROVAL = frozenset({RequestType.ERASURE})
RECTIFIABLE_FIELDS = frozenset({"name", "email"})
NEAR_DUE = timedelta(days=7)


class InvalidTransitionError(EncaptioError):
    """A request cannot move from its current state to the one asked for."""


def due_dates(jurisdiction: Jurisdiction, received_at: datetime) -> tuple[datetime, datetime | None]:
    """(answer due, acknowledgement due) under the jurisdiction's rules.

    GDPR Art. 12(3): one month from receipt. CCPA (Cal. Code Regs. tit. 11 § 7021):
    acknowledge within 10 business days, answer within 45 calendar days.
    """
    if jurisdiction is Jurisdiction.GDPR:
        return received_at + relativedelta(months=1), None
    ack_day = np.busday_offset(np.datetime64(received_at.date()), 10, roll="forward")
    ack = datetime.combine(ack_day.astype(object), received_at.timetz())
    return received_at + timedelta(days=45), ack


def extension(jurisdiction: Jurisdiction) -> relativedelta:
    """GDPR: two further months; CCPA: once, another 45 days; both with notice and reasons."""
    return relativedelta(months=2) if jurisdiction is Jurisdiction.GDPR else relativedelta(days=45)


@dataclass(frozen=True)
class Submission:
    request: dict[str, Any]
    merged: bool
    verification_code: str | None = None


def request_view(request: DataSubjectRequest) -> dict[str, Any]:
    """What `dsar status` shows: state, steps, receipt, deadlines; the subject's email is not repeated."""
    return {
        "id": str(request.id), "type": request.type.value, "status": request.status.value,
        "organization_id": str(request.organization_id), "jurisdiction": request.jurisdiction.value,
        "source": request.source, "received_at": request.received_at.isoformat(),
        "due_at": request.due_at.isoformat(),
        "extended_due_at": request.extended_due_at.isoformat() if request.extended_due_at else None,
        "verified_at": request.verified_at.isoformat() if request.verified_at else None,
        "approved_at": request.approved_at.isoformat() if request.approved_at else None,
        "completed_at": request.completed_at.isoformat() if request.completed_at else None,
        "status_reason": request.status_reason, "duplicate_of": str(request.duplicate_of) if request.duplicate_of else None,
        "steps": request.steps, "receipt": request.receipt,
    }


def _organization_of(session: Session, request_id: str | uuid.UUID) -> uuid.UUID:
    organization_id = session.scalar(sa.select(DataSubjectRequest.organization_id)
                                     .where(DataSubjectRequest.id == parse_uuid(request_id, "request")))
    if organization_id is None:
        raise NotFoundError(f"request {request_id} does not exist")
    return organization_id


class Requests:
    """The request lifecycle over one platform; `clock` is injectable for deadline tests."""

    def __init__(self, platform: Platform, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.platform = platform
        self.keys = KeyStore(platform.settings.keys_dir)
        self.clock = clock

    def get(self, session: Session, request_id: str | uuid.UUID) -> DataSubjectRequest:
        request = session.get(DataSubjectRequest, parse_uuid(request_id, "request"))
        if request is None:
            raise NotFoundError(f"request {request_id} does not exist")
        return request

    def submit(self, *, type: str, email: str, organization_id: str | None = None, changes: dict[str, str] | None = None,
               jurisdiction: str = "gdpr", source: str = "cli", actor: str = "cli") -> Submission:
        try:
            kind, law = RequestType(type), Jurisdiction(jurisdiction)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        changes = dict(changes or {})
        if kind is RequestType.RECTIFICATION:
            if not changes:
                raise InvalidInputError("a rectification needs --set FIELD=VALUE")
            unknown = set(changes) - RECTIFIABLE_FIELDS
            if unknown:
                raise InvalidInputError(f"cannot rectify {', '.join(sorted(unknown))}; "
                                        f"rectifiable: {', '.join(sorted(RECTIFIABLE_FIELDS))}")
            if "email" in changes:
                changes["email"] = normalize_email(changes["email"])
        elif kind is RequestType.OBJECTION:
            if set(changes) - {"purpose"}:
                raise InvalidInputError("an objection takes only --set purpose=PURPOSE")
            if "purpose" in changes:
                from encaptio_data.privacy.consent import parse_purpose

                changes["purpose"] = parse_purpose(changes["purpose"]).value
        elif changes:
            raise InvalidInputError("--set is only for rectification and objection requests")
        now = self.clock()
        with self.platform.db.session() as session:
            user = find_user(session, email=email, organization_id=organization_id)
            ref = subject_ref(self.keys, user.organization_id, user.email)
            existing = session.scalar(
                sa.select(DataSubjectRequest).where(
                    DataSubjectRequest.subject_hash == ref, DataSubjectRequest.type == kind,
                    DataSubjectRequest.status.in_(OPEN_STATES)).order_by(DataSubjectRequest.received_at).limit(1))
            if existing is not None and existing.changes == changes:
                audit.append_in(session, actor=actor, action="dsar.merged", organization_id=user.organization_id,
                                subject_ref=ref, target=str(existing.id))
                return Submission(request_view(existing), merged=True)
            due, ack = due_dates(law, now)
            code = None if source in SOURCES_WITHOUT_VERIFICATION else f"{secrets.randbelow(10**6):06d}"
            request = DataSubjectRequest(
                id=uuid.uuid4(), organization_id=user.organization_id, user_id=user.id, subject_email=user.email,
                subject_hash=ref, type=kind, jurisdiction=law, source=source, changes=changes, received_at=now,
                due_at=due, status=RequestStatus.RECEIVED,
                verification_hash=self._code_hash(code) if code else None,
                steps={"acknowledge_by": ack.isoformat()} if ack else {},
            )
            session.add(request)
            session.flush()
            audit.append_in(session, actor=actor, action="dsar.received", organization_id=user.organization_id,
                            subject_ref=ref, target=str(request.id), details={"type": kind.value, "source": source})
            if code is None:
                self._advance(session, request, RequestStatus.IDENTITY_VERIFIED, actor, "identity verified by operator")
                if kind not in NEEDS_APPROVAL:
                    self._advance(session, request, RequestStatus.APPROVED, actor, "no approval needed")
            return Submission(request_view(request), merged=False, verification_code=code)

    def _code_hash(self, code: str) -> str:
        return self.keys.hmac_hex("verification", code)

    def verify(self, request_id: str, code: str, *, actor: str = "subject") -> dict[str, Any]:
        with self.platform.db.session() as session:
            request = self.get(session, request_id)
            if request.status is not RequestStatus.RECEIVED or request.verification_hash is None:
                raise InvalidTransitionError(f"request {request.id} is {request.status.value}, not awaiting verification")
            if not hmac.compare_digest(self._code_hash(code.strip()), request.verification_hash):
                audit.append_in(session, actor=actor, action="dsar.verification_failed",
                                organization_id=request.organization_id, subject_ref=request.subject_hash,
                                target=str(request.id))
                raise PermissionDeniedError(f"wrong verification code for request {request.id}")
            self._advance(session, request, RequestStatus.IDENTITY_VERIFIED, actor, "code verified")
            if request.type not in NEEDS_APPROVAL:
                self._advance(session, request, RequestStatus.APPROVED, actor, "no approval needed")
            return request_view(request)

    def authorize(self, request_id: str | uuid.UUID, operator: Principal | str | None,
                   permission: Permission) -> Principal:
        """Checked in a read of its own, before the transaction that changes the request."""
        with self.platform.db.session() as session:
            organization_id = _organization_of(session, request_id)
        return authorize(self.platform, operator, permission, organization_id)

    def approve(self, request_id: str, *, operator: Principal | str | None) -> dict[str, Any]:
        approver = self.authorize(request_id, operator, Permission.APPROVE_ERASURE)
        with self.platform.db.session() as session:
            request = self.get(session, request_id)
            if request.status is not RequestStatus.IDENTITY_VERIFIED:
                raise InvalidTransitionError(f"request {request.id} is {request.status.value}; only a request whose "
                                             "identity is verified can be approved")
            request.approved_by, request.approved_at = approver.user_id_for(request.organization_id), self.clock()
            self._advance(session, request, RequestStatus.APPROVED, approver.actor, "approved")
            return request_view(request)

    def reject(self, request_id: str, reason: str, *, operator: Principal | str | None) -> dict[str, Any]:
        actor = self.authorize(request_id, operator, Permission.PROCESS_REQUESTS).actor
        with self.platform.db.session() as session:
            request = self.get(session, request_id)
            if request.status not in OPEN_STATES - {RequestStatus.IN_PROGRESS}:
                raise InvalidTransitionError(f"request {request.id} is {request.status.value} and cannot be rejected")
            request.status_reason = reason
            self._advance(session, request, RequestStatus.REJECTED, actor, reason)
            return request_view(request)

    def extend(self, request_id: str, reason: str, *, operator: Principal | str | None) -> dict[str, Any]:
        actor = self.authorize(request_id, operator, Permission.PROCESS_REQUESTS).actor
        with self.platform.db.session() as session:
            request = self.get(session, request_id)
            if request.extended_due_at is not None:
                raise InvalidTransitionError(f"request {request.id} was already extended once")
            if not reason.strip():
                raise InvalidInputError("an extension needs a reason (it is sent to the subject)")
            request.extended_due_at = request.due_at + extension(request.jurisdiction)
            request.extension_reason = reason.strip()
            audit.append_in(session, actor=actor, action="dsar.extended", organization_id=request.organization_id,
                            subject_ref=request.subject_hash, target=str(request.id),
                            details={"extended_due_at": request.extended_due_at.isoformat()})
            return request_view(request)

    def _advance(self, session: Session, request: DataSubjectRequest, status: RequestStatus, actor: str,
                 note: str) -> None:
        request.status = status
        request.steps = {**request.steps, status.value: {"at": self.clock().isoformat(), "by": actor, "note": note}}
        audit.append_in(session, actor=actor, action=f"dsar.{status.value}", organization_id=request.organization_id,
                        subject_ref=request.subject_hash, target=str(request.id), details={"note": note})

    def start(self, request_id: str, *, actor: str) -> DataSubjectRequest | None:
        """Move an approved request to in_progress; None when it is already done (idempotent re-runs)."""
        with self.platform.db.session() as session:
            request = self.get(session, request_id)
            if request.status is RequestStatus.COMPLETED:
                return None
            if request.status not in (RequestStatus.APPROVED, RequestStatus.IN_PROGRESS, RequestStatus.FAILED):
                raise InvalidTransitionError(f"request {request.id} is {request.status.value}, not approved")
            if request.status is not RequestStatus.IN_PROGRESS:
                self._advance(session, request, RequestStatus.IN_PROGRESS, actor, "processing")
            return request

    def record_step(self, request_id: uuid.UUID, step: str, result: dict[str, Any]) -> None:
        with self.platform.db.session() as session:
            request = self.get(session, request_id)
            request.steps = {**request.steps, step: {"at": self.clock().isoformat(), **result}}

    def finish(self, request_id: uuid.UUID, *, actor: str, receipt: dict[str, Any] | None = None,
               failure: str | None = None) -> dict[str, Any]:
        with self.platform.db.session() as session:
            request = self.get(session, request_id)
            if failure:
                request.status_reason = failure
                self._advance(session, request, RequestStatus.FAILED, actor, failure)
            else:
                request.receipt, request.completed_at = receipt, self.clock()
                self._advance(session, request, RequestStatus.COMPLETED, actor, "completed")
            return request_view(request)

    def approved_ids(self) -> list[str]:
        with self.platform.db.session() as session:
            return [str(i) for i in session.scalars(
                sa.select(DataSubjectRequest.id).where(DataSubjectRequest.status == RequestStatus.APPROVED)
                .order_by(DataSubjectRequest.received_at))]

    def deadlines(self) -> dict[str, list[dict[str, Any]]]:
        """Open requests past or within a week of their (extended) due date."""
        now = self.clock()
        overdue, near = [], []
        with self.platform.db.session() as session:
            for request in session.scalars(sa.select(DataSubjectRequest)
                                           .where(DataSubjectRequest.status.in_(OPEN_STATES))):
                due = request.extended_due_at or request.due_at
                entry = {"id": str(request.id), "type": request.type.value, "due_at": due.isoformat(),
                         "organization_id": str(request.organization_id)}
                if due < now:
                    overdue.append(entry)
                elif due - now < NEAR_DUE:
                    near.append(entry)
        return {"overdue": overdue, "near_due": near}

