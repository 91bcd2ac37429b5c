"""Live view counters and rate limits in the cache (in-process and Redis), reconciled with the aggregates."""

from __future__ import annotations

from datetime import timedelta

from encaptio_data.analytics.aggregate import materialize_day
from encaptio_data.analytics.live import check_rate_limit, live_views, reconcile_live_views, record_view
from encaptio_data.db.enums import RestrictionKind
from encaptio_data.platform import Platform
from tests.analytics.world import DAY, NOW, at, build_world


def test_rate_limit_slides_over_window_boundaries(platform: Platform) -> None:
    cache = platform.cache
    start = at(DAY, 10)  # a whole minute: window boundaries fall on the minute
    decisions = [check_rate_limit(cache, "api:ip-1", 5, 60, now=start + timedelta(seconds=i)) for i in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert decisions[4].remaining == 0 and decisions[5].retry_after_s > 0
    # 15 s into the next window the previous one (7 hits) still weighs 3/4: 1 + 5.25 > 5 is refused...
    late = check_rate_limit(cache, "api:ip-1", 5, 60, now=start + timedelta(seconds=75))
    assert not late.allowed and late.count == 6.25
    # ...and two windows later it is forgotten.
    assert check_rate_limit(cache, "api:ip-1", 5, 60, now=start + timedelta(seconds=180)).allowed
    assert check_rate_limit(cache, "api:ip-2", 5, 60, now=start).allowed  # keys are independent


def test_live_counters_reconcile_with_the_aggregate(platform: Platform) -> None:
    world = build_world(platform)
    c1, c2 = world.capsules
    world.restrict(world.users[3], RestrictionKind.RESTRICTION)
    for i, (capsule, user) in enumerate([(c1, world.users[0]), (c1, None), (c2, world.users[1]),
                                         (c1, world.users[3])]):
        when = at(DAY, 9, i)
        world.event(capsule, user, f"s{i}", "view", when)
        record_view(platform.cache, capsule, when)  # what the product does when it serves the view
    world.event(c2, None, "s-bad", "view", at(DAY, 11), ["malformed"])
    record_view(platform.cache, c2, at(DAY, 11))

    assert live_views(platform.cache, DAY) == {c1.hex: 3, c2.hex: 2}
    assert reconcile_live_views(platform.cache, platform.db, DAY)["reason"] == "day not materialized"
    materialize_day(platform, DAY, now=NOW)
    result = reconcile_live_views(platform.cache, platform.db, DAY)
    # 3 aggregated + 1 excluded (restricted subject) + 1 quarantined = 5 live
    assert result["passed"] and result["compared"] and (result["aggregated_views"], result["withheld_views"]) == (3, 2)

    for _ in range(3):
        record_view(platform.cache, c1, at(DAY, 12))
    drifted = reconcile_live_views(platform.cache, platform.db, DAY)
    assert not drifted["passed"] and drifted["difference"] == 3

    other_day = DAY + timedelta(days=1)
    world.event(c1, None, "s-x", "view", at(other_day, 9))
    materialize_day(platform, other_day, now=NOW)
    nothing = reconcile_live_views(platform.cache, platform.db, other_day)
    assert nothing["passed"] and not nothing["compared"]  # no counters (cache flushed): nothing to compare
