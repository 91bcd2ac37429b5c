"""The append-only, hash-chained audit trail.

Each entry's hash covers its own fields and the previous entry's hash, so editing,
inserting or removing any entry breaks every hash after it; ``verify_chain`` finds the
first break. ``prev_hash`` is unique: two writers that read the same tail cannot both
append (the second fails and retries on the new tail), so the chain never forks.
Entries name subjects only by keyed hash (``subject_ref``): the trail must outlive an
erasure without keeping the erased person in it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data.db.models import AuditEntry, utcnow
from encaptio_data.db.session import Database

GENESIS = "0" * 64
# Retention truncates the oldest entries and records, in an entry with this action, the hash of
# the last one removed ("genesis") and its seq ("through_seq"): the chain is verified from there.
TRUNCATION_ACTION = "audit.truncated"
_RETRIES = 5


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_hash(*, occurred_at: datetime, actor: str, action: str, organization_id: uuid.UUID | None,
               subject_ref: str | None, target: str | None, details: dict[str, Any], prev_hash: str) -> str:
    body = {"occurred_at": occurred_at.isoformat(), "actor": actor, "action": action,
            "organization_id": str(organization_id) if organization_id else None, "subject_ref": subject_ref,
            "target": target, "details": details, "prev_hash": prev_hash}
    return hashlib.sha256(_canonical(body)).hexdigest()


def _append_once(session: Session, actor: str, action: str, organization_id: uuid.UUID | None,
                 subject_ref: str | None, target: str | None, details: dict[str, Any]) -> AuditEntry:
    tail = session.scalar(sa.select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)) or GENESIS
    # Round-trip details through JSON now so the hash covers exactly what the database returns.
    details = json.loads(_canonical(details))
    occurred_at = utcnow()
    entry = AuditEntry(occurred_at=occurred_at, actor=actor, action=action, organization_id=organization_id,
                       subject_ref=subject_ref, target=target, details=details, prev_hash=tail)
    entry.hash = entry_hash(occurred_at=occurred_at, actor=actor, action=action, organization_id=organization_id,
                            subject_ref=subject_ref, target=target, details=details, prev_hash=tail)
    session.add(entry)
    session.flush()
    return entry


def append(db: Database, *, actor: str, action: str, organization_id: uuid.UUID | None = None,
           subject_ref: str | None = None, target: str | None = None, details: dict[str, Any] | None = None) -> int:
    """Append one entry in its own transaction; returns its sequence number."""
    for attempt in range(_RETRIES):
        try:
            with db.session() as session:
                return _append_once(session, actor, action, organization_id, subject_ref, target, details or {}).seq
        except sa.exc.IntegrityError:
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def append_in(session: Session, *, actor: str, action: str, organization_id: uuid.UUID | None = None,
              subject_ref: str | None = None, target: str | None = None, details: dict[str, Any] | None = None) -> int:
    """Append inside the caller's transaction, so the entry commits (or not) with the change it records."""
    return _append_once(session, actor, action, organization_id, subject_ref, target, details or {}).seq


@dataclass
class ChainReport:
    entries: int
    valid: bool
    first_break: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _genesis(session: Session) -> str:
    """GENESIS, or the checkpoint the oldest remaining entry follows once old entries were truncated.

    The checkpoint is itself an entry of the chain (it follows the tail of its time), so it can
    be neither edited nor removed without a break being reported.
    """
    first = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq).limit(1)).first()
    if first is None or first.prev_hash == GENESIS:
        return GENESIS
    for details in session.scalars(sa.select(AuditEntry.details).where(AuditEntry.action == TRUNCATION_ACTION)):
        if details.get("genesis") == first.prev_hash and int(details.get("through_seq", -1)) < first.seq:
            return first.prev_hash
    return GENESIS


def verify_chain(db: Database) -> ChainReport:
    """Walk the trail in order; report the first entry whose link or hash does not hold."""
    count = 0
    with db.session() as session:
        expected_prev = _genesis(session)
        for entry in session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000):
            count += 1
            if entry.prev_hash != expected_prev:
                return ChainReport(count, False, entry.seq, f"entry {entry.seq} does not follow the one before it "
                                                           "(an entry was removed or inserted)")
            recomputed = entry_hash(occurred_at=entry.occurred_at, actor=entry.actor, action=entry.action,
                                    organization_id=entry.organization_id, subject_ref=entry.subject_ref,
                                    target=entry.target, details=entry.details, prev_hash=entry.prev_hash)
            if recomputed != entry.hash:
                return ChainReport(count, False, entry.seq, f"entry {entry.seq} was edited (its hash no longer matches)")
            expected_prev = entry.hash
    return ChainReport(count, True)
