"""Roles, permissions and the principals that act: checked in the domain API, not in the CLI.

One table (``ROLE_PERMISSIONS``) says what each role may do; nothing else in the code base
names a role when deciding an action. A ``Principal`` is who acts:

* an operator, resolved from an email to the ``users`` rows carrying it (one grant per
  organization the person belongs to). Grants are scoped to that organization, except for
  admins, whose grants cover every organization;
* a named system principal (``system:dagster`` for schedules, sensors and jobs) with the
  permissions listed for it in ``SYSTEM_PRINCIPALS``, and nothing else. System principals
  exist only as objects built in code (``system_principal``): a string such as
  ``--as system:dagster`` is refused, so a person cannot borrow a schedule's rights.

``authorize`` is the one gate: it returns the principal when allowed and otherwise records
``authz.denied`` in the audit trail and raises ``PermissionDeniedError`` (one line). A denial
is audited before anything else happens, and callers check before any effect.

People appear in the audit trail by a keyed reference (``user:<hmac of the email>``), never by
email: ``verify_erased`` scans every table for a subject's identifiers, so an email kept as an
actor would make its owner impossible to erase. ``actor_names`` maps the references back to
the users that still exist, for whoever reads the trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, NoReturn

import sqlalchemy as sa

from encaptio_data import audit
from encaptio_data.accounts import email_is, normalize_email
from encaptio_data.db.enums import UserRole
from encaptio_data.db.models import User
from encaptio_data.errors import InvalidInputError, PermissionDeniedError
from encaptio_data.keys import KeyStore

if TYPE_CHECKING:
    from encaptio_data.db.session import Database
    from encaptio_data.platform import Platform

SYSTEM_PREFIX = "system:"
DENIED_ACTION = "authz.denied"
ACTOR_REF_KEY = "operator-ref"
ANONYMOUS = "anonymous"


class Permission(StrEnum):
    SEARCH_ORG = "search_org"
    INGEST_CONTENT = "ingest_content"
    MANAGE_CAPSULES = "manage_capsules"
    VIEW_ANALYTICS = "view_analytics"
    EXPORT_ANALYTICS = "export_analytics"
    EXPORT_SUBJECT_DATA = "export_subject_data"
    APPROVE_ERASURE = "approve_erasure"
    PROCESS_REQUESTS = "process_requests"
    RUN_BACKUP = "run_backup"
    RESTORE_BACKUP = "restore_backup"
    CHANGE_RETENTION = "change_retention"
    EXPORT_ORG = "export_org"
    IMPORT_ORG = "import_org"
    ROTATE_KEYS = "rotate_keys"
    MANAGE_USERS = "manage_users"
    RUN_PURGE = "run_purge"


P = Permission

# Least privilege, declared once. docs/security.md ("Roles and permissions") shows this table.
ROLE_PERMISSIONS: Mapping[UserRole, frozenset[Permission]] = MappingProxyType({
    UserRole.VIEWER: frozenset({P.SEARCH_ORG}),
    # Creators delete and restore only the capsules they own (authorize_owner).
    UserRole.CREATOR: frozenset({P.SEARCH_ORG, P.INGEST_CONTENT, P.MANAGE_CAPSULES}),
    # Analysts see anonymized aggregates only: no search of the content, no subject data.
    UserRole.ANALYST: frozenset({P.VIEW_ANALYTICS, P.EXPORT_ANALYTICS}),
    UserRole.PRIVACY_OFFICER: frozenset({P.APPROVE_ERASURE, P.PROCESS_REQUESTS, P.EXPORT_SUBJECT_DATA}),
    UserRole.ADMIN: frozenset(Permission),
})
# Roles whose grants are not limited to the organization of their users row.
PLATFORM_WIDE_ROLES = frozenset({UserRole.ADMIN})

# What unattended code may do, and nothing more. Each entry is used by name in the glue.
SYSTEM_PRINCIPALS: Mapping[str, frozenset[Permission]] = MappingProxyType({
    # Schedules, sensors and jobs: backups and restore drills (which restore into scratch),
    # the approved-request jobs, the analytics export asset, the nightly retention purge.
    "dagster": frozenset({P.RUN_BACKUP, P.RESTORE_BACKUP, P.PROCESS_REQUESTS, P.VIEW_ANALYTICS,
                          P.EXPORT_ANALYTICS, P.RUN_PURGE}),
    # `encaptio demo` shows one search of the corpus it has just built.
    "demo": frozenset({P.SEARCH_ORG}),
    # The benchmarks under bench/ drive the same entry points on their own scratch data.
    "bench": frozenset({P.SEARCH_ORG, P.RUN_BACKUP, P.RESTORE_BACKUP, P.PROCESS_REQUESTS}),
})


@dataclass(frozen=True)
class Grant:
    """Permissions within one organization, or within every organization when ``organization_id`` is None."""

    permissions: frozenset[Permission]
    organization_id: uuid.UUID | None
    role: UserRole | None = None
    user_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Principal:
    """Who acts. ``actor`` is what the audit trail records; the grants are resolved once, so a
    check is a loop over one or two in-memory grants (no database round trip on a hot path)."""

    actor: str
    grants: tuple[Grant, ...]
    system: bool = False
    # How errors name the principal to the person acting (their own email); never audited.
    label: str = ""

    def allows(self, permission: Permission, organization_id: uuid.UUID | str | None = None) -> bool:
        org = _as_uuid(organization_id) if organization_id is not None else None
        for grant in self.grants:
            if permission in grant.permissions and (grant.organization_id is None or grant.organization_id == org):
                return True
        return False

    def is_user(self, user_id: uuid.UUID | str) -> bool:
        """True when the principal is this person (in any of their organizations)."""
        target = _as_uuid(user_id, "user")
        return any(grant.user_id == target for grant in self.grants)

    def user_id_for(self, organization_id: uuid.UUID | None) -> uuid.UUID | None:
        """The principal's users row in that organization, else their first one (an admin elsewhere)."""
        ids = [g.user_id for g in self.grants if g.user_id is not None]
        own = [g.user_id for g in self.grants if g.user_id is not None and g.organization_id == organization_id]
        return own[0] if own else (ids[0] if ids else None)

    def describe(self) -> str:
        if self.system:
            return "system principal"
        roles = sorted({(g.role.value if g.role else "?", str(g.organization_id) if g.organization_id else "*")
                        for g in self.grants})
        return ", ".join(f"{role} of {'every organization' if org == '*' else 'organization ' + org}"
                         for role, org in roles)


def _as_uuid(value: uuid.UUID | str, what: str = "organization") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInputError(f"{what} {str(value)[:80]!r} is not a valid id (expected a UUID)") from None


def system_principal(name: str, *, run: str | None = None) -> Principal:
    """A named system principal; ``run`` (e.g. a Dagster run id) is kept in the actor for attribution."""
    try:
        permissions = SYSTEM_PRINCIPALS[name]
    except KeyError:
        raise InvalidInputError(f"unknown system principal {name!r}; known: {', '.join(SYSTEM_PRINCIPALS)}") from None
    actor = f"{SYSTEM_PREFIX}{name}" + (f":{run}" if run else "")
    return Principal(actor, (Grant(permissions, None),), system=True, label=actor)


def actor_ref(keys: KeyStore, email: str) -> str:
    """The keyed, stable name of a person in the audit trail (see the module docstring)."""
    return "user:" + keys.hmac_hex(ACTOR_REF_KEY, normalize_email(email))[:32]


def actor_names(platform: Platform) -> dict[str, str]:
    """Audit actor reference → email, for the users that exist now (erased people stay unnamed)."""
    keys = KeyStore(platform.settings.keys_dir)
    with platform.db.session() as session:
        return {actor_ref(keys, email): email for email in session.scalars(sa.select(User.email).distinct())}


def user_principal(keys: KeyStore, email: str, rows: Iterable[tuple[uuid.UUID, uuid.UUID, UserRole]]) -> Principal:
    """A principal from the (user id, organization id, role) rows of one email."""
    grants = tuple(Grant(ROLE_PERMISSIONS[role], None if role in PLATFORM_WIDE_ROLES else org, role, user_id)
                   for user_id, org, role in rows)
    return Principal(actor_ref(keys, email), grants, label=normalize_email(email))


def resolve(platform: Platform, operator: Principal | str | None) -> Principal:
    """The principal for an operator given as a Principal or an email; unknown or missing ones are denied."""
    if isinstance(operator, Principal):
        return operator
    keys = KeyStore(platform.settings.keys_dir)
    if operator is None or not str(operator).strip():
        deny(platform.db, ANONYMOUS, None, None, "no operator",
             "permission denied: this action needs an operator: pass --as EMAIL or set ENCAPTIO_OPERATOR")
    text = str(operator).strip()
    if text.lower().startswith(SYSTEM_PREFIX):
        deny(platform.db, text[:100], None, None, "system principal named by a string",
             f"permission denied: {text[:100]!r} is a system principal; people act as themselves (--as EMAIL)")
    email = normalize_email(text)
    with platform.db.session() as session:
        rows = session.execute(sa.select(User.id, User.organization_id, User.role)
                               .where(email_is(session, email), User.deleted_at.is_(None))
                               .order_by(User.created_at)).all()
    if not rows:
        deny(platform.db, actor_ref(keys, email), None, None, "unknown operator",
             f"permission denied: {email} is not a user of this platform (add them with `encaptio users add`)")
    return user_principal(keys, email, [tuple(row) for row in rows])


def deny(db: Database, actor: str | Principal, permission: Permission | None, organization_id: uuid.UUID | None,
         reason: str, message: str) -> NoReturn:
    """Record the denial in the audit trail (its own transaction, so it survives the refusal), then raise.

    The entry holds the actor reference, the permission, the organization and a reason code;
    ``message`` (which names the person by email, for them) goes only into the exception.
    """
    principal = actor if isinstance(actor, Principal) else None
    details: dict[str, object] = {"permission": permission.value if permission else None,
                                  "organization_id": str(organization_id) if organization_id else None,
                                  "reason": reason}
    if principal is not None:
        details["grants"] = principal.describe()
    audit.append(db, actor=principal.actor if principal else str(actor), action=DENIED_ACTION,
                 organization_id=organization_id, details=details)
    raise PermissionDeniedError(message)


def check(db: Database, principal: Principal, permission: Permission,
          organization_id: uuid.UUID | str | None = None) -> Principal:
    """The gate for an already resolved principal (no query when allowed): the search hot path."""
    org = _as_uuid(organization_id) if organization_id is not None else None
    if principal.allows(permission, org):
        return principal
    where = f"in organization {org}" if org else "platform-wide (every organization)"
    deny(db, principal, permission, org, "not granted",
         f"permission denied: {principal.label or principal.actor} ({principal.describe()}) "
         f"may not {permission.value} {where}")


def authorize(platform: Platform, principal: Principal | str | None, permission: Permission,
              organization_id: uuid.UUID | str | None = None) -> Principal:
    """Allow ``principal`` to use ``permission`` in ``organization_id`` (None: platform-wide), or deny.

    Returns the resolved principal, whose ``actor`` the caller writes into its own audit entry.
    """
    return check(platform.db, resolve(platform, principal), permission, organization_id)


def authorize_owner(platform: Platform, principal: Principal | str | None, permission: Permission,
                    organization_id: uuid.UUID | str, owner_id: uuid.UUID | str | None) -> Principal:
    """``permission`` in the organization, on something ``owner_id`` owns: the owner themselves, or
    a principal whose grant holds everywhere (an admin, a system principal). A creator may delete
    their own capsule, not a colleague's."""
    resolved = authorize(platform, principal, permission, organization_id)
    if (owner_id is not None and resolved.is_user(owner_id)) or any(
            permission in g.permissions and g.organization_id is None for g in resolved.grants):
        return resolved
    org = _as_uuid(organization_id)
    deny(platform.db, resolved, permission, org, "not the owner",
         f"permission denied: {resolved.label or resolved.actor} ({resolved.describe()}) may not {permission.value} "
         f"in organization {org} on what another user owns")
