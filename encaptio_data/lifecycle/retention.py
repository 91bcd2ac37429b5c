"""Retention as configuration, legal holds, and the soft delete / restore of capsules.

How long each class of data is kept, and what happens when that time is up, is declared
once here (``DEFAULTS``). Rows in ``retention_policies`` override a default, either for a
whole tier (``organization_id`` NULL) or for one organization; an organization's row applies
while the organization is on that row's tier, so an upgrade to enterprise brings the
enterprise defaults unless an enterprise row exists for it too. Data that belongs to no
organization (platform audit entries, backups, temporary files) follows the standard tier.

The purge (``lifecycle.purge``) and the archive (``lifecycle.archive``) read the policies
from here and never carry a number of days of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data import audit, authz
from encaptio_data.accounts import parse_uuid
from encaptio_data.authz import Permission, Principal
from encaptio_data.db.enums import HoldScope, OrganizationTier, RetentionAction
from encaptio_data.db.models import (
    AuditEntry,
    Capsule,
    Content,
    ContentExtraction,
    LegalHold,
    Organization,
    RetentionPolicy,
    utcnow,
)
from encaptio_data.db.session import Database
from encaptio_data.errors import EncaptioError, InvalidInputError, NotFoundError
from encaptio_data.platform import Platform
from encaptio_data.privacy.access import LINK_LIFETIME


class DataClass(StrEnum):
    ANALYTICS = "analytics"
    AUDIT_LOG = "audit_log"
    BACKUPS = "backups"
    SESSIONS = "sessions"
    TEMPORARY_FILES = "temporary_files"
    SOFT_DELETED = "soft_deleted"
    RAW_EVENTS = "raw_events"
    EXPORTS = "exports"


def _years(n: int) -> int:
    return round(n * 365.25)


@dataclass(frozen=True)
class Rule:
    data_class: DataClass
    days: dict[OrganizationTier, int]
    action: RetentionAction
    covers: str
    enforced_by: str


_STANDARD, _ENTERPRISE = OrganizationTier.STANDARD, OrganizationTier.ENTERPRISE

DEFAULTS: dict[DataClass, Rule] = {rule.data_class: rule for rule in (
    Rule(DataClass.ANALYTICS, {_STANDARD: _years(1), _ENTERPRISE: _years(7)}, RetentionAction.ARCHIVE,
         "daily engagement aggregates and top queries (daily_engagement, daily_top_queries)",
         "archive_job moves expired days to archive/ (Parquet); with action delete, the purge deletes them"),
    Rule(DataClass.AUDIT_LOG, {_STANDARD: _years(1), _ENTERPRISE: _years(7)}, RetentionAction.DELETE,
         "the hash-chained audit trail (audit_log)",
         "purge truncates the oldest entries and records the checkpoint the chain verifies from"),
    Rule(DataClass.BACKUPS, {_STANDARD: 30, _ENTERPRISE: 30}, RetentionAction.DELETE,
         "backups rows and their objects under backups/ (rolling window)",
         "purge; the newest restorable backup per store and the bases of kept backups stay"),
    Rule(DataClass.SESSIONS, {_STANDARD: 1, _ENTERPRISE: 1}, RetentionAction.DELETE,
         "sign-in sessions (cache keys under session:)",
         "the cache: session keys are written with ttl=SESSION_TTL_SECONDS and expire by themselves"),
    Rule(DataClass.TEMPORARY_FILES, {_STANDARD: 7, _ENTERPRISE: 7}, RetentionAction.DELETE,
         "temporary files of interrupted writes and incomplete multipart uploads",
         "purge: sweeps the local store's leftovers, aborts S3 multipart uploads"),
    Rule(DataClass.SOFT_DELETED, {_STANDARD: 30, _ENTERPRISE: 30}, RetentionAction.DELETE,
         "soft-deleted capsules and content (recoverable until then)",
         "purge: rows, every object version, LanceDB rows (physically), cache keys, archived rows"),
    Rule(DataClass.RAW_EVENTS, {_STANDARD: 90, _ENTERPRISE: 90}, RetentionAction.AGGREGATE,
         "raw interaction events, in the database and in archive/interaction_events",
         "purge deletes days whose aggregates exist and are current; the aggregates stay"),
    Rule(DataClass.EXPORTS, {_STANDARD: LINK_LIFETIME.days, _ENTERPRISE: LINK_LIFETIME.days}, RetentionAction.DELETE,
         "delivered exports behind their download links: access exports of data subject requests and "
         "organization exports (objects under exports/)",
         "purge: every version of the stored copy once its link has expired (7 days); a shorter policy "
         "removes it sooner"),
)}

RECOVERY_WINDOW_DAYS = DEFAULTS[DataClass.SOFT_DELETED].days[_STANDARD]
SESSION_TTL_SECONDS = DEFAULTS[DataClass.SESSIONS].days[_STANDARD] * 86_400


class RecoveryWindowError(EncaptioError):
    """A restore asked for after the recovery window: the data is due for purging, not back."""


@dataclass(frozen=True)
class Policy:
    data_class: str
    tier: str
    organization_id: str | None
    retain_days: int
    action: str
    source: str  # default | tier override | organization override

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.retain_days)

    def day_cutoff(self, now: datetime) -> datetime:
        """The start of the UTC day of the cutoff: data kept by whole days (events, aggregates) ends there."""
        return datetime.combine(self.cutoff(now).astimezone(UTC).date(), datetime.min.time(), UTC)

    def as_dict(self) -> dict[str, Any]:
        rule = DEFAULTS[DataClass(self.data_class)]
        return {**asdict(self), "covers": rule.covers, "enforced_by": rule.enforced_by}


class Policies:
    """Every policy in force, loaded once: a purge asks for thousands of (class, organization) pairs."""

    def __init__(self, tiers: dict[uuid.UUID, OrganizationTier], rows: Iterable[RetentionPolicy]) -> None:
        self.tiers = tiers
        self.tier_rows: dict[tuple[str, OrganizationTier], RetentionPolicy] = {}
        self.organization_rows: dict[tuple[str, OrganizationTier, uuid.UUID], RetentionPolicy] = {}
        self.unrecognized: list[dict[str, Any]] = []
        known = {c.value for c in DataClass}
        for row in rows:
            if row.data_class not in known:
                self.unrecognized.append({"id": str(row.id), "data_class": row.data_class, "tier": row.tier.value,
                                          "organization_id": str(row.organization_id) if row.organization_id else None})
            elif row.organization_id is None:
                self.tier_rows[(row.data_class, row.tier)] = row
            else:
                self.organization_rows[(row.data_class, row.tier, row.organization_id)] = row

    @classmethod
    def load(cls, session: Session) -> Policies:
        tiers = {k: v for k, v in session.execute(sa.select(Organization.id, Organization.tier))}
        return cls(tiers, session.scalars(sa.select(RetentionPolicy)))

    def get(self, data_class: DataClass | str, organization_id: uuid.UUID | None = None,
            tier: OrganizationTier | None = None) -> Policy:
        data_class = DataClass(data_class)
        if tier is None:
            tier = self.tiers.get(organization_id, _STANDARD) if organization_id else _STANDARD
        org = str(organization_id) if organization_id else None
        row = self.organization_rows.get((data_class.value, tier, organization_id)) if organization_id else None
        if row is not None:
            return Policy(data_class.value, tier.value, org, row.retain_days, row.action.value, "organization override")
        row = self.tier_rows.get((data_class.value, tier))
        if row is not None:
            return Policy(data_class.value, tier.value, org, row.retain_days, row.action.value, "tier override")
        rule = DEFAULTS[data_class]
        return Policy(data_class.value, tier.value, org, rule.days[tier], rule.action.value, "default")


def effective_policies(session: Session, organization_id: uuid.UUID | str | None = None) -> list[dict[str, Any]]:
    """The policy of every data class for one organization, or for each tier when no organization is given."""
    policies = Policies.load(session)
    if organization_id is not None:
        org = parse_uuid(organization_id, "organization")
        if org not in policies.tiers:
            raise NotFoundError(f"organization {organization_id} does not exist")
        return [policies.get(c, org).as_dict() for c in DataClass]
    return [policies.get(c, tier=tier).as_dict() for c in DataClass for tier in OrganizationTier]


def show(db: Database, organization_id: uuid.UUID | str | None = None) -> dict[str, Any]:
    """What `encaptio retention show` prints: the policies in force and every override row."""
    with db.session() as session:
        policies = Policies.load(session)
        overrides = [
            {"data_class": row.data_class, "tier": row.tier.value,
             "organization_id": str(row.organization_id) if row.organization_id else None,
             "retain_days": row.retain_days, "action": row.action.value}
            for row in [*policies.tier_rows.values(), *policies.organization_rows.values()]]
        return {
            "organization_id": str(organization_id) if organization_id else None,
            "policies": effective_policies(session, organization_id),
            "overrides": sorted(overrides, key=lambda o: (o["data_class"], o["tier"], o["organization_id"] or "")),
            "unrecognized_rows": policies.unrecognized,
        }


def set_policy(platform: Platform, data_class: DataClass | str, retain_days: int, *,
               operator: Principal | str | None, organization_id: uuid.UUID | str | None = None,
               tier: OrganizationTier | str | None = None, action: RetentionAction | str | None = None
               ) -> dict[str, Any]:
    """Change how long a class of data is kept: for one organization (an override on its current
    tier), or, without an organization, for a whole tier, which touches every organization and
    so needs a platform-wide grant. Setting the values in force again changes nothing."""
    try:
        data_class = DataClass(data_class)
        tier = OrganizationTier(tier) if tier is not None else None
        action = RetentionAction(action) if action is not None else DEFAULTS[data_class].action
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    if isinstance(retain_days, bool) or not isinstance(retain_days, int) or retain_days <= 0:
        raise InvalidInputError(f"retain_days must be a positive number of days, not {retain_days!r}")
    org = parse_uuid(organization_id, "organization") if organization_id is not None else None
    actor = authz.authorize(platform, operator, Permission.CHANGE_RETENTION, org).actor
    with platform.db.session() as session:
        if org is not None:
            organization = session.get(Organization, org)
            if organization is None:
                raise NotFoundError(f"organization {organization_id} does not exist")
            tier = tier or organization.tier
        tier = tier or _STANDARD
        row = session.scalar(sa.select(RetentionPolicy).where(
            RetentionPolicy.data_class == data_class.value, RetentionPolicy.tier == tier,
            RetentionPolicy.organization_id.is_(None) if org is None else RetentionPolicy.organization_id == org))
        previous = {"retain_days": row.retain_days, "action": row.action.value} if row is not None else None
        changed = previous != {"retain_days": retain_days, "action": action.value}
        if row is None:
            session.add(RetentionPolicy(data_class=data_class.value, tier=tier, organization_id=org,
                                        retain_days=retain_days, action=action))
        elif changed:
            row.retain_days, row.action = retain_days, action
        if changed:
            audit.append_in(session, actor=actor, action="retention.changed", organization_id=org,
                            target=data_class.value, details={"tier": tier.value, "retain_days": retain_days,
                                                              "action": action.value, "previous": previous})
        session.flush()
        return {**Policies.load(session).get(data_class, org, tier).as_dict(), "changed": changed,
                "previous": previous}


# -- legal holds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    id: uuid.UUID
    scope: HoldScope
    scope_id: uuid.UUID
    reason: str

    def describe(self, item: str, **extra: Any) -> dict[str, Any]:
        """A held item for a report. ``reason`` is counsel's free text: kept out of Dagster metadata."""
        return {"item": item, "hold_id": str(self.id), "scope": self.scope.value, "scope_id": str(self.scope_id),
                "reason": self.reason, **extra}


class Tally:
    """What a pass kept, and why: items under a legal hold, and counts skipped for a stated reason."""

    held: list[dict[str, Any]]
    skipped: list[dict[str, Any]]

    def skip(self, reason: str, count: int = 1) -> None:
        if count <= 0:
            return
        for item in self.skipped:
            if item["reason"] == reason:
                item["count"] += count
                return
        self.skipped.append({"reason": reason, "count": count})

    def hold(self, item: str, hold: Hold, count: int = 1) -> None:
        for entry in self.held:
            if entry["item"] == item and entry["hold_id"] == str(hold.id):
                entry["count"] += count
                return
        self.held.append(hold.describe(item, count=count))


class Holds:
    """The active legal holds, looked up by what an item belongs to (most specific scope first)."""

    _ORDER = (HoldScope.CONTENT, HoldScope.CAPSULE, HoldScope.USER, HoldScope.ORGANIZATION)

    def __init__(self, holds: Iterable[Hold]) -> None:
        self.by_scope: dict[HoldScope, dict[uuid.UUID, Hold]] = {scope: {} for scope in HoldScope}
        for hold in holds:
            self.by_scope[hold.scope].setdefault(hold.scope_id, hold)

    @classmethod
    def load(cls, session: Session) -> Holds:
        active = sa.select(LegalHold).where(LegalHold.released_at.is_(None)).order_by(LegalHold.placed_at)
        rows = session.scalars(active)
        return cls(Hold(h.id, h.scope, h.scope_id, h.reason) for h in rows)

    def __bool__(self) -> bool:
        return any(self.by_scope.values())

    def ids(self, scope: HoldScope) -> set[uuid.UUID]:
        return set(self.by_scope[scope])

    def first(self) -> Hold | None:
        return next((h for scope in self._ORDER for h in self.by_scope[scope].values()), None)

    def find(self, *, content: Iterable[uuid.UUID | None] = (), capsule: Iterable[uuid.UUID | None] = (),
             user: Iterable[uuid.UUID | None] = (), organization: Iterable[uuid.UUID | None] = ()) -> Hold | None:
        for scope, ids in zip(self._ORDER, (content, capsule, user, organization), strict=True):
            held = self.by_scope[scope]
            if held:
                for scope_id in ids:
                    if scope_id is not None and scope_id in held:
                        return held[scope_id]
        return None


# -- soft delete and restore ------------------------------------------------------------------


def _search_removal(platform: Platform, organization_id: uuid.UUID, capsule_id: uuid.UUID) -> int:
    from encaptio_data.content.pipeline import invalidate_search_cache, remove_deleted_content
    from encaptio_data.search.index import open_chunks_table

    remove_deleted_content(platform.db, open_chunks_table(platform.vectors), capsule_id=capsule_id)
    return invalidate_search_cache(platform.cache, {(organization_id, capsule_id)})


def _capsule_owner(platform: Platform, capsule_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID] | None:
    with platform.db.session() as session:
        row = session.execute(sa.select(Capsule.organization_id, Capsule.owner_id)
                              .where(Capsule.id == capsule_id)).first()
    return (row[0], row[1]) if row else None


def delete_capsule(platform: Platform, capsule_id: uuid.UUID | str, *, operator: Principal | str | None,
                   now: datetime | None = None) -> dict[str, Any]:
    """Delete a capsule for its users now; restorable until its recovery window ends, purged after.

    The operator needs manage_capsules in its organization and must own it, unless their grant
    holds everywhere (an admin). Search stops returning its chunks at once. Deleting again is
    harmless and finishes the search removal a crash may have interrupted.
    """
    now = now or utcnow()
    capsule_uuid = parse_uuid(capsule_id, "capsule")
    principal = authz.resolve(platform, operator)
    owner = _capsule_owner(platform, capsule_uuid)
    if owner is None:
        raise NotFoundError(f"capsule {capsule_id} does not exist")
    actor = authz.authorize_owner(platform, principal, Permission.MANAGE_CAPSULES, *owner).actor
    with platform.db.session() as session:
        capsule = session.get(Capsule, capsule_uuid)
        if capsule is None:
            raise NotFoundError(f"capsule {capsule_id} does not exist")
        policy = Policies.load(session).get(DataClass.SOFT_DELETED, capsule.organization_id)
        newly = capsule.deleted_at is None
        content = 0
        if newly:
            capsule.deleted_at = now
            # Content deleted on its own earlier keeps its own date (and its own, earlier, purge).
            content = session.execute(sa.update(Content).where(Content.capsule_id == capsule.id,
                                                               Content.deleted_at.is_(None))
                                      .values(deleted_at=now)).rowcount or 0
            audit.append_in(session, actor=actor, action="capsule.deleted", organization_id=capsule.organization_id,
                            target=str(capsule.id), details={"content": content,
                                                             "recovery_window_days": policy.retain_days})
        deleted_at, organization_id = capsule.deleted_at, capsule.organization_id
    cache_keys = _search_removal(platform, organization_id, capsule_uuid)
    return {"capsule_id": str(capsule_uuid), "deleted_at": deleted_at.isoformat(), "already_deleted": not newly,
            "content_deleted": content, "cache_keys_invalidated": cache_keys,
            "restorable_until": (deleted_at + timedelta(days=policy.retain_days)).isoformat()}


def _refuse_missing(platform: Platform, principal: Principal, capsule_id: uuid.UUID) -> NoReturn:
    """Why a capsule cannot be restored: purged (told to those who may manage the organization's
    capsules; the purge's audit entry keeps its organization) or never there."""
    with platform.db.session() as session:
        purged = session.execute(sa.select(AuditEntry.occurred_at, AuditEntry.organization_id).where(
            AuditEntry.action == "capsule.purged", AuditEntry.target == str(capsule_id)).limit(1)).first()
    if purged is None:
        raise NotFoundError(f"capsule {capsule_id} does not exist")
    authz.check(platform.db, principal, Permission.MANAGE_CAPSULES, purged.organization_id)
    raise NotFoundError(f"capsule {capsule_id} cannot be restored: it was purged on "
                        f"{purged.occurred_at.date().isoformat()} after its recovery window")


def restore_capsule(platform: Platform, capsule_id: uuid.UUID | str, *, operator: Principal | str | None,
                    now: datetime | None = None) -> dict[str, Any]:
    """Bring a soft-deleted capsule back within its recovery window (same permission as deleting it).

    The content deleted with it comes back and is marked for re-embedding (its search rows
    went at deletion), so the next pipeline run for the capsule makes it searchable again.
    """
    now = now or utcnow()
    capsule_uuid = parse_uuid(capsule_id, "capsule")
    principal = authz.resolve(platform, operator)
    owner = _capsule_owner(platform, capsule_uuid)
    if owner is None:
        _refuse_missing(platform, principal, capsule_uuid)
    actor = authz.authorize_owner(platform, principal, Permission.MANAGE_CAPSULES, *owner).actor
    with platform.db.session() as session:
        capsule = session.get(Capsule, capsule_uuid)
        if capsule is None:
            _refuse_missing(platform, principal, capsule_uuid)
        if capsule.deleted_at is None:
            raise InvalidInputError(f"capsule {capsule_uuid} is not deleted: nothing to restore")
        policy = Policies.load(session).get(DataClass.SOFT_DELETED, capsule.organization_id)
        window_end = capsule.deleted_at + timedelta(days=policy.retain_days)
        if now >= window_end:
            raise RecoveryWindowError(
                f"capsule {capsule_uuid} cannot be restored: deleted on {capsule.deleted_at.date().isoformat()}, "
                f"its {policy.retain_days}-day recovery window ended on {window_end.date().isoformat()}")
        deleted_with_it = [row.id for row in session.execute(
            sa.select(Content.id, Content.deleted_at).where(Content.capsule_id == capsule.id)) if
            row.deleted_at == capsule.deleted_at]
        for start in range(0, len(deleted_with_it), 1000):
            batch = deleted_with_it[start:start + 1000]
            session.execute(sa.update(Content).where(Content.id.in_(batch)).values(deleted_at=None))
            session.execute(sa.update(ContentExtraction).where(ContentExtraction.content_id.in_(batch))
                            .values(embedded_sha256=None, embedded_at=None))
        capsule.deleted_at = None
        audit.append_in(session, actor=actor, action="capsule.restored", organization_id=capsule.organization_id,
                        target=str(capsule.id), details={"content": len(deleted_with_it)})
        organization_id = capsule.organization_id
    # No cache invalidation here: nothing is searchable until the re-embedding, which invalidates.
    return {"capsule_id": str(capsule_uuid), "organization_id": str(organization_id),
            "content_restored": len(deleted_with_it), "pending_embedding": len(deleted_with_it)}
