"""Freshness policies of the key assets, with windows that follow the schedules that materialize them.

The rule is the same for every asset: it warns once the next scheduled materialization is late
(the longest gap between the ticks of its schedules, plus the time a run may take) and fails
once a whole tick has been missed (twice the gap, plus that time). The gaps are written out
beside the schedules they come from; tests/test_alerts.py recomputes them from the cron strings
in the code location, so changing a schedule without its freshness fails the suite.

Dagster's freshness daemon (part of `dagster-daemon run`) evaluates the policies; the web UI
shows each asset's state, and a failing state is visible in the asset health of the catalog.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import dagster as dg

from encaptio_data.errors import InvalidInputError

_AssetLike = TypeVar("_AssetLike", dg.AssetsDefinition, dg.AssetSpec)


@dataclass(frozen=True)
class Cadence:
    """How often the named schedules materialize an asset, and how long a run of it may take."""

    schedules: tuple[str, ...]
    longest_gap: timedelta
    run_allowance: timedelta

    @property
    def warn_window(self) -> timedelta:
        return self.longest_gap + self.run_allowance

    @property
    def fail_window(self) -> timedelta:
        return 2 * self.longest_gap + self.run_allowance

    def policy(self) -> dg.FreshnessPolicy:
        return dg.FreshnessPolicy.time_window(fail_window=self.fail_window, warn_window=self.warn_window)


HOUR, DAY = timedelta(hours=1), timedelta(days=1)

KEY_ASSET_CADENCES: dict[str, Cadence] = {
    # Search: the hourly index maintenance (search_index_job_schedule, :15 every hour).
    "search_indexes": Cadence(("search_index_job_schedule",), HOUR, timedelta(minutes=30)),
    # Analytics: the nightly aggregation of the day that ended (00:30 UTC), then the DP release and
    # the k-anonymous export built from it (analytics_privacy_job_schedule, 02:30 UTC).
    "daily_engagement": Cadence(("daily_engagement_schedule",), DAY, HOUR),
    "anonymized_analytics": Cadence(("analytics_privacy_job_schedule",), DAY, HOUR),
    "engagement_export": Cadence(("analytics_privacy_job_schedule",), DAY, HOUR),
    # Backups: the full backup at 01:00 and the incremental at :20 of every other hour, so the
    # longest gap is 01:00 -> 02:20; the vector snapshot comes with the full backup only; the
    # replica syncs at :40 every hour; the restore drill runs on the 1st of each month (05:00).
    "database_backups": Cadence(("backup_full_job_schedule", "backup_incremental_job_schedule"),
                                timedelta(minutes=80), timedelta(minutes=30)),
    "vector_snapshots": Cadence(("backup_full_job_schedule",), DAY, HOUR),
    "object_replica": Cadence(("replica_sync_job_schedule",), HOUR, timedelta(minutes=30)),
    "restore_drill_evidence": Cadence(("restore_drill_job_schedule",), 31 * DAY, timedelta(hours=6)),
}


def with_freshness_policies(assets: Iterable[_AssetLike],
                            cadences: dict[str, Cadence] | None = None) -> Sequence[_AssetLike]:
    """The assets with a freshness policy on every key asset (the others unchanged).

    Raises when a key asset is not among `assets`: a renamed asset would otherwise lose its
    policy without anyone noticing.
    """
    cadences = KEY_ASSET_CADENCES if cadences is None else cadences
    assets = list(assets)
    present = {spec.key.to_user_string() for item in assets
               for spec in (item.specs if isinstance(item, dg.AssetsDefinition) else [item])}
    missing = sorted(set(cadences) - present)
    if missing:
        raise InvalidInputError(f"freshness policies name assets that are not defined: {', '.join(missing)}")

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        cadence = cadences.get(spec.key.to_user_string())
        return dg.apply_freshness_policy(spec, cadence.policy()) if cadence else spec

    return dg.map_asset_specs(attach, assets)
