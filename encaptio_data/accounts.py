"""Organizations and users: the tenants and people every other record hangs from.

``add_user`` is the building block (seeding, imports and tests call it inside their own
transaction); people are added and their roles changed through ``create_user`` and ``set_role``,
which check the operator's manage_users permission (authz.py) and audit the change.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data.db import sealing
from encaptio_data.db.enums import OrganizationTier, UserRole
from encaptio_data.db.models import Organization, User
from encaptio_data.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from encaptio_data.authz import Principal
    from encaptio_data.platform import Platform

BOOTSTRAP_ACTOR = "bootstrap"

# Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is the
# verification step's job; this only refuses what is plainly not an address.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class UserRecord:
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    name: str
    role: str
    created: bool

    def as_dict(self) -> dict[str, object]:
        return {"id": str(self.id), "organization_id": str(self.organization_id), "email": self.email,
                "name": self.name, "role": self.role, "created": self.created}


def normalize_email(email: str) -> str:
    if not isinstance(email, str):
        raise InvalidInputError(f"email must be text, got {type(email).__name__}")
    normalized = email.strip().lower()
    if len(normalized) > 320 or not _EMAIL.match(normalized):
        raise InvalidInputError(f"invalid email address {email!r}")
    return normalized


def email_is(session: Session, email: str) -> sa.ColumnElement[bool]:
    """WHERE the user's email is ``email``: through the blind index, since the address itself is sealed."""
    return User.email_index == sealing.email_index(sealing.keys_of(session), normalize_email(email))


def parse_uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInputError(f"{what} {value!r} is not a valid id (expected a UUID)") from None


def get_organization(session: Session, organization_id: str | uuid.UUID) -> Organization:
    org = session.get(Organization, parse_uuid(organization_id, "organization"))
    if org is None:
        raise NotFoundError(f"organization {organization_id} does not exist")
    return org


def default_organization(session: Session) -> Organization:
    """The only organization, for single-tenant installs; ambiguous otherwise."""
    orgs = session.scalars(sa.select(Organization).order_by(Organization.created_at).limit(2)).all()
    if len(orgs) == 1:
        return orgs[0]
    if not orgs:
        return ensure_organization(session, name="Default", slug="default")
    raise InvalidInputError("several organizations exist: name one with --org ID")


def ensure_organization(session: Session, *, name: str, slug: str,
                        tier: OrganizationTier = OrganizationTier.STANDARD, id: uuid.UUID | None = None) -> Organization:
    existing = session.scalar(sa.select(Organization).where(Organization.slug == slug))
    if existing is not None:
        return existing
    org = Organization(id=id or uuid.uuid4(), name=name, slug=slug, tier=tier)
    session.add(org)
    session.flush()
    return org


def _role(role: UserRole | str) -> UserRole:
    try:
        return UserRole(role)
    except ValueError:
        raise InvalidInputError(f"unknown role {role!r}; choose one of {', '.join(r.value for r in UserRole)}") from None


def add_user(session: Session, *, email: str, name: str, organization_id: str | uuid.UUID | None = None,
             role: UserRole | str = UserRole.VIEWER) -> UserRecord:
    """Create a user, or return the existing one with that email in the organization (idempotent)."""
    email = normalize_email(email)
    name = (name or "").strip()
    if not name:
        raise InvalidInputError("name must not be empty")
    role = _role(role)
    org = get_organization(session, organization_id) if organization_id else default_organization(session)
    existing = session.scalar(sa.select(User).where(User.organization_id == org.id, email_is(session, email)))
    if existing is not None:
        return UserRecord(existing.id, org.id, existing.email, existing.name, existing.role.value, created=False)
    user = User(organization_id=org.id, email=email, name=name, role=role)
    session.add(user)
    session.flush()
    return UserRecord(user.id, org.id, email, name, role.value, created=True)


def _has_admin(session: Session) -> bool:
    return session.scalar(sa.select(User.id).where(User.role == UserRole.ADMIN, User.deleted_at.is_(None))
                          .limit(1)) is not None


def _target_organization(platform: Platform, organization_id: str | uuid.UUID | None) -> uuid.UUID:
    with platform.db.session() as session:
        org = get_organization(session, organization_id) if organization_id else default_organization(session)
        return org.id


def create_user(platform: Platform, *, email: str, name: str, organization_id: str | uuid.UUID | None = None,
                role: UserRole | str = UserRole.VIEWER, operator: Principal | str | None) -> UserRecord:
    """Add a user as ``operator`` (manage_users in the organization); idempotent like ``add_user``.

    A platform without any admin has no one who could grant manage_users, so there, and only
    there, the first admin may be added without an operator (audited as ``bootstrap``).
    """
    from encaptio_data import audit, authz

    email, role = normalize_email(email), _role(role)
    with platform.db.session() as session:
        bootstrap = operator is None and role is UserRole.ADMIN and not _has_admin(session)
    if bootstrap:
        actor = BOOTSTRAP_ACTOR
        org = _target_organization(platform, organization_id)
    else:
        principal = authz.resolve(platform, operator)
        org = _target_organization(platform, organization_id)
        actor = authz.check(platform.db, principal, authz.Permission.MANAGE_USERS, org).actor
    with platform.db.session() as session:
        record = add_user(session, email=email, name=name, organization_id=org, role=role)
        if record.created:
            audit.append_in(session, actor=actor, action="user.created", organization_id=org, target=str(record.id),
                            details={"role": role.value})
    return record


def set_role(platform: Platform, *, email: str, organization_id: str | uuid.UUID | None = None,
             role: UserRole | str, operator: Principal | str | None) -> dict[str, Any]:
    """Change a user's role in one organization as ``operator`` (manage_users there); audited.

    The last admin cannot be demoted: nobody would be left to grant manage_users again.
    Setting the role in force changes nothing.
    """
    from encaptio_data import audit, authz

    email, role = normalize_email(email), _role(role)
    principal = authz.resolve(platform, operator)
    org = _target_organization(platform, organization_id)
    actor = authz.check(platform.db, principal, authz.Permission.MANAGE_USERS, org).actor
    with platform.db.session() as session:
        user = session.scalar(sa.select(User).where(User.organization_id == org, email_is(session, email),
                                                    User.deleted_at.is_(None)))
        if user is None:
            raise NotFoundError(f"no user {email} in organization {org}")
        previous = user.role
        if previous is UserRole.ADMIN and role is not UserRole.ADMIN:
            others = session.scalar(sa.select(sa.func.count()).select_from(User).where(
                User.role == UserRole.ADMIN, User.deleted_at.is_(None), User.id != user.id)) or 0
            if not others:
                raise InvalidInputError(f"{email} is the last admin of this platform: make someone else admin first")
        if previous is not role:
            user.role = role
            audit.append_in(session, actor=actor, action="user.role_changed", organization_id=org,
                            target=str(user.id), details={"role": role.value, "previous": previous.value})
        return {"id": str(user.id), "organization_id": str(org), "email": email, "role": role.value,
                "previous": previous.value, "changed": previous is not role}
