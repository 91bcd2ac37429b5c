"""The GX suite on the analytics aggregates: clean aggregates pass, each injected fault fails."""

from __future__ import annotations

from datetime import date

import pytest
from great_expectations.data_context import AbstractDataContext

from encaptio_data.db.models import DailyEngagement
from encaptio_data.platform import Platform
from encaptio_data.quality.suites import DAILY_ENGAGEMENT, daily_engagement_frame, validate
from tests.quality.conftest import unchecked

DAY = date(2026, 10, 5)
CLEAN = {"events": 10, "views": 4, "unique_sessions": 3, "searches": 3, "chat_turns": 2, "dwell_events": 1,
         "completions": 0, "total_dwell_seconds": 42.0, "unique_users": 2}


def _row(corpus, **values) -> DailyEngagement:  # type: ignore[no-untyped-def]
    return DailyEngagement(day=DAY, capsule_id=corpus.capsule_ids[0], organization_id=corpus.organization_id,
                           median_dwell_seconds=None, **(CLEAN | values))


def test_clean_aggregates_pass(platform: Platform, corpus, gx_context: AbstractDataContext) -> None:  # type: ignore[no-untyped-def]
    with platform.db.session() as session:
        session.add(_row(corpus))
    outcome = validate(gx_context, DAILY_ENGAGEMENT, daily_engagement_frame(platform.db, DAY))
    assert outcome.passed and outcome.statistics["rows"] == 1


@pytest.mark.parametrize(("fault", "column"), [({"views": 11}, "events, views"), ({"searches": -1}, "searches")])
def test_injected_faults_fail_and_name_the_row(platform: Platform, corpus, gx_context: AbstractDataContext,  # type: ignore[no-untyped-def]
                                               fault: dict[str, int], column: str) -> None:
    with unchecked(platform, "daily_engagement", "ck_daily_engagement_counts_not_negative") as session:
        session.add(_row(corpus, **fault))
    outcome = validate(gx_context, DAILY_ENGAGEMENT, daily_engagement_frame(platform.db, DAY))
    assert not outcome.passed
    assert any(example["column"] == column and example.get("id", "").startswith(str(DAY))
               for example in outcome.examples), outcome.examples


def test_quality_run_reports_the_aggregate_checks(platform: Platform, corpus) -> None:  # type: ignore[no-untyped-def]
    from encaptio_data.quality.runner import run_all

    with unchecked(platform, "daily_engagement", "ck_daily_engagement_counts_not_negative") as session:
        session.add(_row(corpus, completions=-3))
    result = run_all(platform)
    by_name = {check["name"]: check for check in result["checks"]}
    assert not by_name["daily_engagement_suite"]["passed"] and by_name["daily_engagement_suite"]["blocking"]
    assert result["blocking_failed"] and "daily_engagement_suite" in result["failed"]
