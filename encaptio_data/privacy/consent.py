"""Consent per purpose (append-only history), restrictions and objections: what pipelines must honour."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data import audit
from encaptio_data.db.enums import ConsentPurpose
from encaptio_data.db.models import Consent, ProcessingRestriction, User, utcnow
from encaptio_data.errors import InvalidInputError, NotFoundError


def parse_purpose(value: str) -> ConsentPurpose:
    try:
        return ConsentPurpose(value)
    except ValueError:
        choices = ", ".join(p.value for p in ConsentPurpose)
        raise InvalidInputError(f"unknown purpose {value!r}; purposes: {choices}") from None


def record_consent(session: Session, user_id: uuid.UUID, purpose: str, *, granted: bool, version: str,
                   source: str = "product", actor: str = "subject") -> dict[str, Any]:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user {user_id} does not exist")
    kind = parse_purpose(purpose)
    row = Consent(user_id=user_id, purpose=kind, granted=granted, version=version, source=source, recorded_at=utcnow())
    session.add(row)
    session.flush()
    audit.append_in(session, actor=actor, action="consent.granted" if granted else "consent.withdrawn",
                    organization_id=user.organization_id, target=str(row.id),
                    details={"purpose": kind.value, "version": version})
    return {"id": str(row.id), "purpose": kind.value, "granted": granted, "version": version,
            "recorded_at": row.recorded_at.isoformat()}


def consent_history(session: Session, user_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = session.scalars(sa.select(Consent).where(Consent.user_id == user_id).order_by(Consent.recorded_at))
    return [{"purpose": r.purpose.value, "granted": r.granted, "version": r.version, "source": r.source,
             "recorded_at": r.recorded_at.isoformat()} for r in rows]


def excluded_users(session: Session, purpose: str, user_ids: Iterable[uuid.UUID] | None = None) -> set[uuid.UUID]:
    """Users whose data must not be processed for `purpose`: an active restriction (any purpose),
    an active objection to it, or a latest consent for it that is withdrawn.

    Set-based (three queries), so a pipeline can filter millions of events by membership.
    """
    kind = parse_purpose(purpose)
    restricted = sa.select(ProcessingRestriction.user_id).where(
        ProcessingRestriction.lifted_at.is_(None),
        sa.or_(ProcessingRestriction.purpose.is_(None), ProcessingRestriction.purpose == kind))
    latest = (sa.select(Consent.user_id, Consent.granted,
                        sa.func.row_number().over(partition_by=Consent.user_id,
                                                  order_by=(Consent.recorded_at.desc(), Consent.id.desc())).label("n"))
              .where(Consent.purpose == kind).subquery())
    withdrawn = sa.select(latest.c.user_id).where(latest.c.n == 1, latest.c.granted.is_(False))
    if user_ids is not None:
        ids = list(user_ids)
        restricted = restricted.where(ProcessingRestriction.user_id.in_(ids))
        withdrawn = withdrawn.where(latest.c.user_id.in_(ids))
    return set(session.scalars(restricted)) | set(session.scalars(withdrawn))


def may_process(session: Session, user_id: uuid.UUID, purpose: str) -> bool:
    return user_id not in excluded_users(session, purpose, [user_id])


def withdrawals_since(session: Session, since_iso: str | None) -> list[dict[str, Any]]:
    query = sa.select(Consent).where(Consent.granted.is_(False)).order_by(Consent.recorded_at)
    if since_iso:
        from datetime import datetime

        query = query.where(Consent.recorded_at > datetime.fromisoformat(since_iso))
    return [{"user_id": str(c.user_id), "purpose": c.purpose.value, "recorded_at": c.recorded_at.isoformat()}
            for c in session.scalars(query)]
