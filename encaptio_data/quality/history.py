"""The volume check's baseline: its own earlier evaluations, as Dagster recorded them.

Each evaluation of the volume check stores the counts it saw as metadata, so the Dagster
instance already holds the trailing window: no table of ours to migrate, and the history
shown in the UI is exactly the one the check judges against. ``encaptio quality run`` reads
the same instance (the one in the data dir that `encaptio demo` and `make ui` use), without
needing Dagster to be running.
"""

from __future__ import annotations

import dagster as dg

# Dagster 1.13 reads check history only through its storage layer; the status set lives there too.
from dagster._core.storage.asset_check_execution_record import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES

from encaptio_data.integrity import VOLUME_METRICS
from encaptio_data.quality.catalog import CHECKS_BY_NAME, CONTENT_VOLUME, VOLUME
from encaptio_data.settings import Settings

VOLUME_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey(CHECKS_BY_NAME[CONTENT_VOLUME].asset), CONTENT_VOLUME)


def volume_history(instance: dg.DagsterInstance, window: int = VOLUME.window) -> list[dict[str, int]]:
    """The counts of the last ``window`` completed evaluations of the volume check, newest first."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        VOLUME_CHECK_KEY, limit=window, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
    history = []
    for record in records:
        event = record.event.dagster_event if record.event else None
        metadata = getattr(event.event_specific_data if event else None, "metadata", None) or {}
        counts = {name: int(metadata[name].value) for name in VOLUME_METRICS if name in metadata}
        if counts:
            history.append(counts)
    return history


def stored_volume_history(settings: Settings) -> list[dict[str, int]]:
    """The history in the data dir's Dagster instance; none when Dagster never ran there."""
    home = settings.dagster_home
    if not (home / "dagster.yaml").exists():
        return []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return volume_history(instance)
