"""Restricted, objecting and withdrawn subjects contribute nothing to any analytics output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from encaptio_data.analytics.aggregate import day_bounds, materialize_day, read_usable_events
from encaptio_data.analytics.anonymize import pseudonym_key
from encaptio_data.analytics.dp import ContributionBounds, bounded_contributions
from encaptio_data.analytics.export import k_anonymous_engagement
from encaptio_data.analytics.pii import scan_events
from encaptio_data.db.enums import ConsentPurpose, RestrictionKind
from encaptio_data.db.models import DailyEngagement, DailyTopQuery, PiiFinding
from encaptio_data.platform import Platform
from tests.analytics.world import DAY, NOW, at, build_world


def test_excluded_subjects_contribute_nothing_anywhere(platform: Platform) -> None:
    world = build_world(platform, users=14)
    u = world.users
    before = datetime(2026, 9, 1, tzinfo=UTC)
    excluded = {
        u[0]: lambda: world.restrict(u[0], RestrictionKind.RESTRICTION),  # all purposes
        u[1]: lambda: world.restrict(u[1], RestrictionKind.OBJECTION, ConsentPurpose.ANALYTICS),
        u[2]: lambda: (world.consent(u[2], True, before), world.consent(u[2], False, before + timedelta(days=3))),
        u[3]: lambda: world.restrict(u[3], RestrictionKind.RESTRICTION, ConsentPurpose.ANALYTICS),
        u[4]: lambda: world.consent(u[4], False, before),
    }
    included = {
        u[5]: lambda: (world.consent(u[5], False, before), world.consent(u[5], True, before + timedelta(days=3))),
        u[6]: lambda: world.restrict(u[6], RestrictionKind.OBJECTION, ConsentPurpose.MARKETING),
        u[7]: lambda: world.restrict(u[7], RestrictionKind.RESTRICTION, lifted=True),
        u[8]: lambda: world.consent(u[8], False, before, purpose=ConsentPurpose.MARKETING),
        u[9]: lambda: None,
    }
    for setup in (*excluded.values(), *included.values()):
        setup()
    capsule = world.capsules[0]
    for i, user in enumerate([*excluded, *included]):
        session = f"s{i}"
        world.event(capsule, user, session, "view", at(DAY, 8, i))
        # Nine people search the same words: k = 5 is reached only if excluded searchers count.
        if user != u[9]:
            world.event(capsule, user, session, "search", at(DAY, 8, i, 30), {"query": "call me 415-555-0132"})
        world.event(capsule, user, session, "dwell", at(DAY, 8, i, 40), {"seconds": 100})
    world.event(capsule, None, "anon", "view", at(DAY, 9))  # anonymous visitors are included

    report = materialize_day(platform, DAY, now=NOW)
    assert report.events_excluded == 15 and report.subjects_excluded == 5
    with platform.db.session() as s:
        row = s.scalars(sa.select(DailyEngagement)).one()
        assert (row.views, row.searches, row.dwell_events, row.unique_users, row.unique_sessions) == (6, 4, 5, 5, 6)
        assert row.total_dwell_seconds == 500
        assert s.scalars(sa.select(DailyTopQuery)).all() == []  # 4 included searchers < k

    # The shared path every consumer reads through carries no excluded pseudonym.
    usable = read_usable_events(platform, *day_bounds(DAY), now=NOW, with_country=True)
    key = pseudonym_key(platform.settings.keys_dir)
    subjects = set(usable.valid["subject"].to_pylist())
    assert not subjects & {key.pseudonym(user.hex) for user in excluded}
    assert {key.pseudonym(user.hex) for user in included} <= subjects

    # Export: only included events are counted, before any suppression.
    _, facts = k_anonymous_engagement(platform, date_from=DAY, date_to=DAY, k=2, now=NOW)
    assert facts["events"] == 15 and facts["excluded_events"] == 15

    # DP release input: bounded contributions come from included subjects only.
    frame = usable.valid.select(["subject", "capsule_id", "event_type", "seconds", "occurred_at"]).to_pandas()
    frame["day"] = frame["occurred_at"].dt.date
    per = bounded_contributions(frame, ContributionBounds(), np.random.default_rng(0))
    assert per["visits"].sum() == 6 and per["views"].sum() == 6

    # PII scan of event text skips excluded subjects' searches.
    scan_events(platform, now=NOW)
    with platform.db.session() as s:
        flagged = s.scalars(sa.select(PiiFinding.event_id)).all()
    assert len(flagged) == 4
