"""Retention as configuration: defaults declared once, overridden per tier or per organization."""

from __future__ import annotations

import pytest

from encaptio_data.accounts import ensure_organization
from encaptio_data.db.enums import OrganizationTier, RetentionAction
from encaptio_data.db.models import RetentionPolicy
from encaptio_data.errors import NotFoundError
from encaptio_data.lifecycle.retention import DEFAULTS, DataClass, effective_policies, show
from encaptio_data.platform import Platform


def _by_class(policies: list[dict]) -> dict[str, dict]:
    return {p["data_class"]: p for p in policies}


def test_the_defaults_are_the_ones_the_platform_promises() -> None:
    days = {c.value: (r.days[OrganizationTier.STANDARD], r.days[OrganizationTier.ENTERPRISE], r.action.value)
            for c, r in DEFAULTS.items()}
    assert days == {
        "analytics": (365, 2557, "archive"), "audit_log": (365, 2557, "delete"), "backups": (30, 30, "delete"),
        "sessions": (1, 1, "delete"), "temporary_files": (7, 7, "delete"), "soft_deleted": (30, 30, "delete"),
        "raw_events": (90, 90, "aggregate"), "exports": (7, 7, "delete"),
    }
    assert set(DEFAULTS) == set(DataClass)


def test_rows_override_defaults_per_tier_and_per_organization(platform: Platform) -> None:
    with platform.db.session() as session:
        small = ensure_organization(session, name="Small", slug="small").id
        big = ensure_organization(session, name="Big", slug="big", tier=OrganizationTier.ENTERPRISE).id
        other = ensure_organization(session, name="Other", slug="other").id
        session.add_all([
            RetentionPolicy(data_class="audit_log", tier=OrganizationTier.STANDARD, organization_id=None,
                            retain_days=400, action=RetentionAction.DELETE),
            RetentionPolicy(data_class="analytics", tier=OrganizationTier.STANDARD, organization_id=small,
                            retain_days=60, action=RetentionAction.DELETE),
            # An organization row for a tier the organization is not on does not apply to it.
            RetentionPolicy(data_class="soft_deleted", tier=OrganizationTier.STANDARD, organization_id=big,
                            retain_days=5, action=RetentionAction.DELETE),
            RetentionPolicy(data_class="no_such_class", tier=OrganizationTier.STANDARD, organization_id=None,
                            retain_days=5, action=RetentionAction.DELETE),
        ])
    with platform.db.session() as session:
        mine = _by_class(effective_policies(session, small))
        theirs = _by_class(effective_policies(session, other))
        enterprise = _by_class(effective_policies(session, str(big)))
        with pytest.raises(NotFoundError):
            effective_policies(session, "00000000-0000-4000-8000-000000000000")
    assert (mine["analytics"]["retain_days"], mine["analytics"]["action"], mine["analytics"]["source"]) == (
        60, "delete", "organization override")
    assert (theirs["analytics"]["retain_days"], theirs["analytics"]["source"]) == (365, "default")
    assert (mine["audit_log"]["retain_days"], mine["audit_log"]["source"]) == (400, "tier override")
    assert (enterprise["audit_log"]["retain_days"], enterprise["soft_deleted"]["retain_days"]) == (2557, 30)
    assert all(p["covers"] and p["enforced_by"] for p in mine.values())

    shown = show(platform.db)
    assert len(shown["policies"]) == 2 * len(DataClass)
    assert len(shown["overrides"]) == 3
    assert [row["data_class"] for row in shown["unrecognized_rows"]] == ["no_such_class"]
    assert _by_class(show(platform.db, small)["policies"])["analytics"]["retain_days"] == 60
