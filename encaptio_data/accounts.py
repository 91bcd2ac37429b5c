"""Organizations and users: the tenants and people every other record hangs from."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data.db.enums import OrganizationTier, UserRole
from encaptio_data.db.models import Organization, User
from encaptio_data.errors import InvalidInputError, NotFoundError

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


def add_user(session: Session, *, email: str, name: str, organization_id: str | uuid.UUID | None = None,
             role: UserRole | str = UserRole.VIEWER) -> UserRecord:
    """Create a user, or return the existing one with that email in the organization (idempotent)."""
    email = normalize_email(email)
    name = (name or "").strip()
    if not name:
        raise InvalidInputError("name must not be empty")
    try:
        role = UserRole(role)
    except ValueError:
        raise InvalidInputError(f"unknown role {role!r}; choose one of {', '.join(r.value for r in UserRole)}") from None
    org = get_organization(session, organization_id) if organization_id else default_organization(session)
    existing = session.scalar(sa.select(User).where(User.organization_id == org.id, User.email == email))
    if existing is not None:
        return UserRecord(existing.id, org.id, existing.email, existing.name, existing.role.value, created=False)
    user = User(organization_id=org.id, email=email, name=name, role=role)
    session.add(user)
    session.flush()
    return UserRecord(user.id, org.id, email, name, role.value, created=True)
