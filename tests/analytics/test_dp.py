"""Differential privacy: noise calibrated to epsilon, bounded contributions, and a budget that refuses."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from encaptio_data.analytics.aggregate import materialize_day
from encaptio_data.analytics.dp import (
    METRICS,
    ContributionBounds,
    PrivacyBudgetExceededError,
    budget_status,
    bounded_contributions,
    laplace_measurement,
    releasable_weeks,
    release_week,
)
from encaptio_data.analytics.retention import expire_raw_events
from encaptio_data.db.models import PrivacyBudget
from encaptio_data.errors import EncaptioError
from encaptio_data.platform import Platform
from tests.analytics.world import NOW, at, build_world

MONDAY = date(2026, 10, 5)


@pytest.mark.parametrize(("sensitivity", "epsilon"), [(3, 0.1), (30, 0.5)])
def test_noise_scale_matches_epsilon(sensitivity: int, epsilon: float) -> None:
    measurement, scale = laplace_measurement(sensitivity, epsilon)
    assert scale == pytest.approx(sensitivity / epsilon, rel=1e-6)
    assert measurement.map(sensitivity) <= epsilon + 1e-12
    # OpenDP draws from the OS's CSPRNG and cannot be seeded: check the distribution instead.
    # Discrete Laplace with scale b: E|X| = 2e^(-1/b) / (1 - e^(-2/b)), close to b for large b.
    draws = np.asarray(measurement([0] * 20_000), dtype=np.float64)
    q = np.exp(-1.0 / scale)
    expected_abs = 2 * q / (1 - q * q)
    assert abs(draws.mean()) < 4 * np.sqrt(2) * scale / np.sqrt(len(draws))
    assert np.abs(draws).mean() == pytest.approx(expected_abs, rel=0.05)
    assert draws.var() == pytest.approx(2 * q / (1 - q) ** 2, rel=0.1)


def test_contributions_are_bounded_per_subject_and_day() -> None:
    rows = [{"subject": "u1", "capsule_id": "c1", "event_type": "view", "seconds": None}] * 50
    rows += [{"subject": "u1", "capsule_id": f"c{i}", "event_type": "search", "seconds": None} for i in range(2, 8)]
    rows += [{"subject": "u2", "capsule_id": "c1", "event_type": "dwell", "seconds": 5000.0}]
    frame = pd.DataFrame(rows).assign(day=date(2026, 10, 5))
    bounds = ContributionBounds()
    per = bounded_contributions(frame, bounds, np.random.default_rng(1))
    assert per.groupby(["subject", "day"]).size().max() <= bounds.capsules_per_day
    assert per["views"].max() <= bounds.views and per["searches"].max() <= bounds.searches
    assert per.loc[per["subject"] == "u2", "dwell_seconds"].item() == bounds.dwell_seconds
    assert (per["visits"] == 1).all()


def _week_of_events(platform: Platform) -> None:
    world = build_world(platform, users=8)
    for d in range(7):
        for i, user in enumerate(world.users):
            world.event(world.capsules[i % 2], user, f"s{d}-{i}", "view", at(MONDAY + timedelta(days=d), 10, i))
    for d in range(7):
        materialize_day(platform, MONDAY + timedelta(days=d), now=NOW)


def test_release_spends_budget_and_refuses_a_release_beyond_it(platform: Platform) -> None:
    _week_of_events(platform)
    assert releasable_weeks(platform.db, NOW.date()) == [MONDAY]
    first = release_week(platform, MONDAY, epsilon=0.5, budget=1.0, now=NOW)
    assert not first.reused and first.epsilon_spent == 0.5 and first.epsilon_remaining == pytest.approx(0.5)
    assert first.metrics["views"]["scale"] == pytest.approx(
        ContributionBounds().sensitivity("views") / (0.5 / len(METRICS)), rel=1e-6)
    document = json.loads(platform.objects.get(first.object_key))
    assert document["period"] == "2026-W41" and len(document["rows"]) == 2
    assert set(document["rows"][0]) == {"capsule_id", "organization_id", *METRICS}
    assert all(row[m] >= 0 for row in document["rows"] for m in METRICS)

    again = release_week(platform, MONDAY, epsilon=0.5, budget=1.0, now=NOW)
    assert again.reused and again.epsilon_spent == 0 and again.release_id == first.release_id

    second = release_week(platform, MONDAY, epsilon=0.5, budget=1.0, fresh=True, now=NOW)
    assert second.epsilon_remaining == pytest.approx(0.0)
    with pytest.raises(PrivacyBudgetExceededError, match="exceed the period's budget"):
        release_week(platform, MONDAY, epsilon=0.1, budget=1.0, fresh=True, now=NOW)
    with platform.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(PrivacyBudget)) == 2
    assert budget_status(platform.db, "2026-W41", budget=1.0) == {
        "dataset": "weekly_engagement", "period": "2026-W41", "epsilon_budget": 1.0, "epsilon_spent": 1.0,
        "epsilon_remaining": 0.0, "releases": 2}


def test_release_is_refused_once_raw_events_are_gone(embedded_platform: Platform) -> None:
    _week_of_events(embedded_platform)
    expire_raw_events(embedded_platform, now=NOW + timedelta(days=120))
    with pytest.raises(EncaptioError, match="deleted by retention"):
        release_week(embedded_platform, MONDAY, now=NOW + timedelta(days=120))
    assert releasable_weeks(embedded_platform.db, (NOW + timedelta(days=120)).date()) == []
