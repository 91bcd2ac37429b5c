"""Live counters in the cache: views per capsule and day, and rate limits.

The cache is only a cache (Redis may restart, the in-process cache dies with the process), so
the live view counter is an early, approximate number; the daily aggregate is the truth, and
``reconcile_live_views`` compares the two once the day is materialized. Counters carry no
user id: they are counts, not events.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from encaptio_data.db.models import DailyEngagement, DailyEngagementRun
from encaptio_data.db.session import Database
from encaptio_data.stores.cache import Cache

# A day's counters outlive the day long enough for the next morning's reconciliation.
VIEW_COUNTER_TTL = timedelta(days=3).total_seconds()
# Differences below this share of the expected count are timing noise at the day boundary.
DEFAULT_TOLERANCE = 0.02


def _aware(at: datetime | None) -> datetime:
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return at.astimezone(UTC)


def view_counter_key(capsule_id: uuid.UUID | str, day: date) -> str:
    return f"analytics:views:{day.isoformat()}:{uuid.UUID(str(capsule_id)).hex}"


def record_view(cache: Cache, capsule_id: uuid.UUID | str, at: datetime | None = None) -> int:
    """Count one view of a capsule on the UTC day of ``at``; returns the day's count so far."""
    return cache.incr(view_counter_key(capsule_id, _aware(at).date()), ttl=VIEW_COUNTER_TTL)


def live_views(cache: Cache, day: date) -> dict[str, int]:
    """Capsule id (hex) → live views counted for ``day``."""
    prefix = f"analytics:views:{day.isoformat()}:"
    counts: dict[str, int] = {}
    for key in cache.keys(prefix):
        raw = cache.get(key)
        if raw is not None:
            counts[key.removeprefix(prefix)] = int(raw)
    return counts


@dataclass(frozen=True)
class RateLimit:
    allowed: bool
    count: float
    limit: int
    remaining: int
    retry_after_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_rate_limit(cache: Cache, key: str, limit: int, window_s: float, *, now: datetime | None = None,
                     cost: int = 1) -> RateLimit:
    """Sliding-window rate limit: allow at most ``limit`` hits per ``window_s`` seconds under ``key``.

    Two fixed-window counters (this window and the previous one, weighted by how much of it
    still overlaps the sliding window) approximate a true sliding log in two cache keys, and
    avoid the fixed window's burst of 2 × limit across a boundary. The hit is counted even
    when refused, so a client hammering a limit stays limited.
    """
    if limit < 1 or window_s <= 0:
        raise ValueError("limit must be >= 1 and window_s > 0")
    timestamp = _aware(now).timestamp()
    window = math.floor(timestamp / window_s)
    elapsed = (timestamp - window * window_s) / window_s
    current = cache.incr(f"ratelimit:{key}:{window}", cost, ttl=2 * window_s)
    previous_raw = cache.get(f"ratelimit:{key}:{window - 1}")
    previous = int(previous_raw) if previous_raw is not None else 0
    weighted = current + previous * (1.0 - elapsed)
    allowed = weighted <= limit
    retry_after = 0.0 if allowed else round((1.0 - elapsed) * window_s, 3)
    return RateLimit(allowed=allowed, count=round(weighted, 3), limit=limit,
                     remaining=max(0, math.floor(limit - weighted)), retry_after_s=retry_after)


def reconcile_live_views(cache: Cache, db: Database, day: date, *,
                         tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Compare the day's live view counters with the aggregate.

    The live counter sees every view; the aggregate leaves out views of excluded subjects and
    quarantined events, which the day's run recorded, so the expected live count is
    aggregated + excluded + quarantined. With no counters at all for the day (the cache was
    flushed, or views were recorded elsewhere) there is nothing to compare, which is reported
    rather than failed.
    """
    live = live_views(cache, day)
    with db.session() as session:
        run = session.get(DailyEngagementRun, day)
        aggregated = dict(session.execute(sa.select(DailyEngagement.capsule_id, DailyEngagement.views)
                                          .where(DailyEngagement.day == day)).all())
    if run is None:
        return {"passed": False, "reason": "day not materialized", "live_views": sum(live.values())}
    aggregated_views = sum(aggregated.values())
    withheld = int(run.details.get("views_excluded", 0)) + int(run.details.get("views_quarantined", 0))
    live_total = sum(live.values())
    if not live:
        return {"passed": True, "compared": False, "reason": "no live counters for the day",
                "aggregated_views": aggregated_views, "withheld_views": withheld}
    expected = aggregated_views + withheld
    difference = live_total - expected
    relative = abs(difference) / max(expected, 1)
    per_capsule = []
    for capsule_hex in sorted(set(live) | {c.hex for c in aggregated}):
        counted = aggregated.get(uuid.UUID(hex=capsule_hex), 0)
        if live.get(capsule_hex, 0) != counted:
            per_capsule.append({"capsule_id": str(uuid.UUID(hex=capsule_hex)), "live": live.get(capsule_hex, 0),
                                "aggregated": counted})
    return {"passed": relative <= tolerance, "compared": True, "live_views": live_total,
            "aggregated_views": aggregated_views, "withheld_views": withheld, "difference": difference,
            "relative_difference": round(relative, 4), "tolerance": tolerance,
            "capsules_differing": per_capsule[:20]}
