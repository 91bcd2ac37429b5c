"""Differentially private releases of weekly engagement, with an epsilon ledger.

Privacy unit: one subject's activity on one UTC day (a "subject-day"). Before anything is
summed, each subject-day's contribution is bounded: at most ``capsules_per_day`` capsules
(chosen at random when there are more) and, per capsule, at most ``bounds.<metric>`` events
of each kind (dwell clipped to ``bounds.dwell_seconds``). The L1 sensitivity of a metric's
vector over capsules is then ``capsules_per_day × bound``, and OpenDP calibrates discrete
Laplace noise to it (``binary_search_param`` finds the smallest scale that meets the epsilon
given to the metric; the release's epsilon is split evenly over the metrics). A person active
on several days of the week is protected with epsilon times that number of days (group
privacy); an anonymous visitor is protected per session, since sessions are all we know.

The capsule list comes from the capsules table, not from the data, so whether a capsule had
any visitors is itself noisy rather than revealed by the row being there. Negative noisy
counts are clamped to zero (post-processing costs no privacy).

Budget: per dataset and period, ``privacy_budget`` records every release with the epsilon it
spent. A release that would take the period past its budget is refused. The ledger row is
committed before the release is published, so a crash can over-count spend but never hide
it. Re-publishing an existing release costs nothing (it is the same noisy output), which is
what a re-run of the asset does unless a fresh release is asked for.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from encaptio_data.analytics.aggregate import day_bounds, read_usable_events
from encaptio_data.db.enums import EventType
from encaptio_data.db.models import Capsule, DailyEngagementRun, PrivacyBudget
from encaptio_data.db.session import Database
from encaptio_data.errors import EncaptioError, ObjectNotFoundError
from encaptio_data.platform import Platform

DATASET = "weekly_engagement"
DEFAULT_EPSILON = 0.5
DEFAULT_PERIOD_BUDGET = 1.0
RELEASES_PREFIX = "analytics/releases/"
METRICS = ("visits", "views", "searches", "chat_turns", "completions", "dwell_seconds")
_EVENT_METRIC = {EventType.VIEW.value: "views", EventType.SEARCH.value: "searches",
                 EventType.CHAT_TURN.value: "chat_turns", EventType.COMPLETION.value: "completions"}


class PrivacyBudgetExceededError(EncaptioError):
    """A release would spend more epsilon than the period's budget has left."""


@dataclass(frozen=True)
class ContributionBounds:
    """Per subject-day and capsule, the most a subject can add to each metric."""

    visits: int = 1
    views: int = 3
    searches: int = 10
    chat_turns: int = 10
    completions: int = 1
    dwell_seconds: int = 1_800
    capsules_per_day: int = 3

    def sensitivity(self, metric: str) -> int:
        return self.capsules_per_day * int(getattr(self, metric))


@lru_cache(maxsize=1)
def _opendp() -> Any:
    import opendp.prelude as dp

    # Laplace on integer vectors lives in OpenDP's "contrib" (proven but not yet vetted) features.
    dp.enable_features("contrib")
    return dp


def laplace_measurement(sensitivity: int, epsilon: float) -> tuple[Any, float]:
    """The discrete Laplace measurement on integer vectors for (L1 ``sensitivity``, ``epsilon``), and its scale."""
    dp = _opendp()

    def make(scale: float) -> Any:
        return dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale)

    scale = dp.binary_search_param(make, d_in=sensitivity, d_out=epsilon)
    return make(scale), float(scale)


def iso_week(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def budget_status(db: Database, period: str, *, dataset: str = DATASET,
                  budget: float = DEFAULT_PERIOD_BUDGET) -> dict[str, Any]:
    with db.session() as session:
        rows = session.scalars(sa.select(PrivacyBudget).where(PrivacyBudget.dataset == dataset,
                                                              PrivacyBudget.period == period)
                               .order_by(PrivacyBudget.released_at)).all()
    spent = sum(r.epsilon for r in rows)
    return {"dataset": dataset, "period": period, "epsilon_budget": budget, "epsilon_spent": round(spent, 6),
            "epsilon_remaining": round(max(0.0, budget - spent), 6), "releases": len(rows)}


def _spend(db: Database, *, dataset: str, period: str, epsilon: float, budget: float, release_id: uuid.UUID,
           object_key: str, parameters: dict[str, Any], now: datetime) -> float:
    """Record the spend, or refuse; returns the epsilon remaining after it."""
    with db.session() as session:
        if db.dialect == "postgresql":
            # Two concurrent releases of one period must not both see the old balance.
            session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"dp:{dataset}:{period}"})
        spent = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(PrivacyBudget.epsilon), 0.0))
                               .where(PrivacyBudget.dataset == dataset, PrivacyBudget.period == period)) or 0.0
        # The tolerance absorbs float summation, never a real overspend (epsilons are >= 1e-3 in practice).
        if spent + epsilon > budget + 1e-9:
            raise PrivacyBudgetExceededError(
                f"release of {dataset} {period} refused: epsilon {epsilon} would exceed the period's budget "
                f"{budget} (spent {round(spent, 6)}, remaining {round(max(0.0, budget - spent), 6)})")
        remaining = max(0.0, budget - spent - epsilon)
        # On SQLite the insert takes the write lock before the sum is re-read by a competitor,
        # so the check above cannot interleave with another release's insert there either.
        session.add(PrivacyBudget(id=release_id, dataset=dataset, period=period, epsilon=epsilon,
                                  epsilon_budget=budget, epsilon_remaining=remaining, mechanism="discrete_laplace",
                                  parameters=parameters, object_key=object_key, released_at=now))
    return remaining


def bounded_contributions(valid: pd.DataFrame, bounds: ContributionBounds, rng: np.random.Generator) -> pd.DataFrame:
    """Per (subject, day, capsule): each metric clipped to its bound, at most ``capsules_per_day`` capsules."""
    is_dwell = valid["event_type"] == EventType.DWELL.value
    frame = valid.assign(metric=valid["event_type"].map(_EVENT_METRIC),
                         dwell=np.where(is_dwell, valid["seconds"].fillna(0.0), 0.0))
    keys = ["subject", "day", "capsule_id"]
    counts = (frame.dropna(subset=["metric"]).groupby([*keys, "metric"]).size().unstack("metric", fill_value=0)
              .reindex(columns=list(_EVENT_METRIC.values()), fill_value=0))
    dwell = frame.groupby(keys)["dwell"].sum().rename("dwell_seconds")
    per = counts.join(dwell, how="outer").fillna(0).reset_index()
    per["visits"] = 1
    for metric in METRICS:
        per[metric] = np.minimum(per[metric].to_numpy(dtype=np.float64), getattr(bounds, metric))
    per["dwell_seconds"] = np.floor(per["dwell_seconds"])
    # A random, not a sorted, choice of capsules: sorting would always drop the same capsules.
    per["_order"] = rng.random(len(per))
    per = per.sort_values(["subject", "day", "_order"])
    per = per.loc[per.groupby(["subject", "day"]).cumcount() < bounds.capsules_per_day]
    return per.drop(columns="_order").astype({m: "int64" for m in METRICS})


@dataclass
class ReleaseReport:
    release_id: str
    dataset: str
    period: str
    epsilon_spent: float
    epsilon_of_release: float
    epsilon_remaining: float
    epsilon_budget: float
    reused: bool
    object_key: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _public_capsules(db: Database, before: datetime) -> pd.DataFrame:
    with db.session() as session:
        rows = session.execute(sa.select(Capsule.id, Capsule.organization_id)
                               .where(Capsule.published_at.is_not(None), Capsule.published_at < before)
                               .order_by(Capsule.id)).all()
    return pd.DataFrame({"capsule_id": [c.hex for c, _ in rows], "organization_id": [str(o) for _, o in rows]})


def _existing(platform: Platform, dataset: str, period: str, budget: float) -> ReleaseReport | None:
    with platform.db.session() as session:
        latest = session.scalars(sa.select(PrivacyBudget).where(PrivacyBudget.dataset == dataset,
                                                                PrivacyBudget.period == period)
                                 .order_by(PrivacyBudget.released_at.desc())).first()
    if latest is None:
        return None
    try:
        document = json.loads(platform.objects.get(latest.object_key))
    except ObjectNotFoundError:
        return None
    status = budget_status(platform.db, period, dataset=dataset, budget=budget)
    return ReleaseReport(release_id=str(latest.id), dataset=dataset, period=period, epsilon_spent=0.0,
                         epsilon_of_release=latest.epsilon, epsilon_remaining=status["epsilon_remaining"],
                         epsilon_budget=budget, reused=True, object_key=latest.object_key,
                         metrics=document["metrics"], rows=document["rows"])


def release_week(platform: Platform, monday: date, *, epsilon: float = DEFAULT_EPSILON,
                 budget: float = DEFAULT_PERIOD_BUDGET, bounds: ContributionBounds = ContributionBounds(),
                 fresh: bool = False, now: datetime | None = None, dataset: str = DATASET) -> ReleaseReport:
    """Publish the ISO week starting ``monday`` with epsilon-DP, or re-publish its latest release.

    Raises PrivacyBudgetExceededError when a new release would exceed the week's budget, and
    EncaptioError when the week's raw events were already deleted by retention (without them
    contributions cannot be bounded, and unbounded aggregates have no finite sensitivity).
    """
    if monday.weekday() != 0:
        raise ValueError(f"{monday} is not a Monday")
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    now = now or datetime.now(UTC)
    period = iso_week(monday)
    if not fresh and (existing := _existing(platform, dataset, period, budget)) is not None:
        return existing
    start, end = day_bounds(monday)[0], day_bounds(monday + timedelta(days=6))[1]
    with platform.db.session() as session:
        purged = session.scalar(sa.select(sa.func.count()).select_from(DailyEngagementRun).where(
            DailyEngagementRun.day >= monday, DailyEngagementRun.day < monday + timedelta(days=7),
            DailyEngagementRun.raw_purged_at.is_not(None)))
    if purged:
        raise EncaptioError(f"{period}: raw events of {purged} day(s) were deleted by retention; "
                            "contributions can no longer be bounded for a private release")

    usable = read_usable_events(platform, start, end, now=now)
    valid = usable.valid.select(["subject", "capsule_id", "event_type", "seconds", "occurred_at"]).to_pandas()
    valid["day"] = valid["occurred_at"].dt.date
    rng = np.random.default_rng()
    per = bounded_contributions(valid, bounds, rng)
    capsules = _public_capsules(platform.db, end)
    totals = per.groupby("capsule_id")[list(METRICS)].sum()
    totals = capsules.set_index("capsule_id").join(totals, how="left").fillna(0)

    per_metric = epsilon / len(METRICS)
    measurements, metrics = {}, {}
    for metric in METRICS:
        sensitivity = bounds.sensitivity(metric)
        measurement, scale = laplace_measurement(sensitivity, per_metric)
        measurements[metric] = measurement
        metrics[metric] = {"sensitivity": sensitivity, "epsilon": round(per_metric, 9), "scale": round(scale, 6)}

    release_id = uuid.uuid4()
    object_key = f"{RELEASES_PREFIX}{dataset}/{period}/{release_id}.json"
    parameters = {"privacy_unit": "subject-day", "bounds": asdict(bounds), "metrics": metrics,
                  "days": [monday.isoformat(), (monday + timedelta(days=6)).isoformat()]}
    remaining = _spend(platform.db, dataset=dataset, period=period, epsilon=epsilon, budget=budget,
                       release_id=release_id, object_key=object_key, parameters=parameters, now=now)

    noisy = {metric: np.maximum(0, np.asarray(measurements[metric](totals[metric].astype(int).tolist()),
                                              dtype=np.int64)) for metric in METRICS}
    rows = [{"capsule_id": str(uuid.UUID(hex=capsule)), "organization_id": organization,
             **{metric: int(noisy[metric][i]) for metric in METRICS}}
            for i, (capsule, organization) in enumerate(zip(totals.index, totals["organization_id"], strict=True))]
    document = {"release_id": str(release_id), "dataset": dataset, "period": period, "epsilon": epsilon,
                "mechanism": "discrete_laplace (OpenDP)", **parameters, "rows": rows, "released_at": now.isoformat()}
    platform.objects.put(object_key, json.dumps(document, indent=1).encode(), content_type="application/json")
    return ReleaseReport(release_id=str(release_id), dataset=dataset, period=period, epsilon_spent=epsilon,
                         epsilon_of_release=epsilon, epsilon_remaining=round(remaining, 6), epsilon_budget=budget,
                         reused=False, object_key=object_key, metrics=metrics, rows=rows)


def releasable_weeks(db: Database, today: date) -> list[date]:
    """Mondays of complete weeks (ended before ``today``) with materialized days whose raw events remain."""
    with db.session() as session:
        runs = session.execute(sa.select(DailyEngagementRun.day, DailyEngagementRun.raw_purged_at)).all()
    weeks: dict[date, bool] = {}
    for day, purged in runs:
        monday = week_start(day)
        weeks[monday] = weeks.get(monday, True) and purged is None
    return sorted(m for m, ok in weeks.items() if ok and m + timedelta(days=7) <= today)
