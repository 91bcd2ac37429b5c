"""Every quality check in one pass outside Dagster: `encaptio quality run` and `encaptio quality report`.

The checks are the ones Dagster runs (``catalog.CHECKS``), over the whole store rather than
one capsule. Nothing here needs Dagster to be running: the volume check reads its baseline
from the instance's storage in the data dir, if there is one.
"""

from __future__ import annotations

import html
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

import sqlalchemy as sa

from encaptio_data.errors import EncaptioError
from encaptio_data.integrity import CheckOutcome
from encaptio_data.platform import Platform
from encaptio_data.quality import suites
from encaptio_data.quality.catalog import CHECKS, CheckRun, raise_alert

log = logging.getLogger(__name__)


def run_all(platform: Platform, *, alert: bool = False) -> dict[str, Any]:
    """Run every check over the whole platform; with ``alert``, failed ERROR checks raise alerts as in Dagster.

    A check that cannot run because a store is unavailable counts as failed, with the reason
    as its example; any other exception is a bug and propagates with its traceback.
    """
    from encaptio_data.quality.history import stored_volume_history

    started, cpu_started = time.monotonic(), time.process_time()
    run = CheckRun(platform, volume_history=lambda: stored_volume_history(platform.settings))
    checks = []
    for check in CHECKS:
        check_started, check_cpu_started = time.monotonic(), time.process_time()
        try:
            outcome = check.evaluate(run)
        except EncaptioError as exc:
            outcome = CheckOutcome(passed=False, examples=[{"error": str(exc)}])
        entry: dict[str, Any] = {
            "name": check.name, "asset": check.asset, "severity": check.severity.value, "blocking": check.blocking,
            "description": check.description, **outcome.as_dict(),
            "seconds": round(time.monotonic() - check_started, 3),
            "cpu_seconds": round(time.process_time() - check_cpu_started, 3),
        }
        if alert and not outcome.passed and check.blocking:
            sent = raise_alert(run, check, outcome)
            log.error("blocking check %s on %s failed: %s (audit entry %s, webhook %s)",
                      check.name, check.asset, outcome.statistics, sent.seq, sent.webhook)
            entry["alert"] = {"audit_seq": sent.seq, "webhook": sent.webhook}
        checks.append(entry)
    checks += _analytics_checks(run)
    failed = [c for c in checks if not c["passed"]]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": platform.settings.profile,
        "passed": not failed,
        "blocking_failed": any(c["blocking"] for c in failed),
        "checks_passed": len(checks) - len(failed),
        "checks_failed": len(failed),
        "failed": [c["name"] for c in failed],
        "seconds": round(time.monotonic() - started, 3),
        # CPU time of this process (all its threads): what the checks cost, whatever else the machine runs.
        "cpu_seconds": round(time.process_time() - cpu_started, 3),
        "checks": checks,
    }


def _analytics_checks(run: CheckRun) -> list[dict[str, Any]]:
    """The aggregate checks the daily_engagement asset runs per day, here over every aggregated day.

    They live in that asset (a day-partitioned check cannot sit in the capsule-scoped catalog),
    so the runner calls the same functions to report them with the rest.
    """
    from encaptio_data.analytics.aggregate import reconcile_day
    from encaptio_data.db.models import DailyEngagementRun

    started = time.monotonic()
    suite = suites.validate(run.gx, suites.DAILY_ENGAGEMENT, suites.daily_engagement_frame(run.stores.db))
    with run.stores.db.session() as session:
        days = sorted(session.scalars(sa.select(DailyEngagementRun.day)))
    reconciliations = {day.isoformat(): reconcile_day(run.stores.db, day) for day in days}
    broken = [{"day": day, **{k: v for k, v in result.items() if k != "passed"}}
              for day, result in reconciliations.items() if not result["passed"]]
    common = {"asset": "daily_engagement", "severity": "ERROR", "blocking": True,
              "seconds": round(time.monotonic() - started, 3), "cpu_seconds": None}
    return [
        {"name": "daily_engagement_suite", "description": "GX: aggregate counts non-negative, every kind of event "
         "within the day's events.", **suite.as_dict(), **common},
        {"name": "aggregates_reconcile_with_raw_events", "description": "read = aggregated + quarantined + "
         "excluded for every aggregated day, agreeing with the raw table and the quarantine.",
         "passed": not broken, "statistics": {"days": len(days), "days_failing": len(broken)},
         "examples": broken[:5], **common},
    ]


_PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Encaptio data quality: $verdict</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1d2330; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid #dde1e8; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f6f9; } code { font-size: 12px; }
.pass, .fail, .warn { font-weight: 600; } .pass { color: #11703a; } .fail { color: #b3261e; } .warn { color: #8a5a00; }
.summary span { margin-right: 1.5rem; }
</style>
</head>
<body>
<h1>Data quality: <span class="$verdict_class">$verdict</span></h1>
<p class="summary"><span>generated $generated_at</span><span>profile $profile</span>
<span>$checks_passed passed, $checks_failed failed</span><span>$seconds s</span></p>
<table>
<tr><th>check</th><th>asset</th><th>severity</th><th>result</th><th>statistics</th><th>seconds</th></tr>
$rows
</table>
$failures
</body>
</html>
""")


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return html.escape(text)


def _examples_table(examples: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for example in examples for key in example))
    head = "".join(f"<th>{_cell(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(example.get(c, ''))}</td>" for c in columns) + "</tr>"
                   for example in examples)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(result: dict[str, Any]) -> str:
    rows, failures = [], []
    for check in result["checks"]:
        if check["passed"]:
            status, css = "passed", "pass"
        else:
            status, css = ("failed", "fail") if check["blocking"] else ("warning", "warn")
        statistics = ", ".join(f"{k}={v}" for k, v in check["statistics"].items())
        rows.append(f"<tr><td><code>{_cell(check['name'])}</code><br><small>{_cell(check['description'])}</small></td>"
                    f"<td>{_cell(check['asset'])}</td><td>{_cell(check['severity'])}</td>"
                    f"<td class=\"{css}\">{status}</td><td><small>{_cell(statistics)}</small></td>"
                    f"<td>{check['seconds']}</td></tr>")
        if not check["passed"]:
            failures.append(f"<h2 id=\"{_cell(check['name'])}\"><code>{_cell(check['name'])}</code> "
                            f"<span class=\"{css}\">{status}</span></h2>"
                            + (_examples_table(check["examples"]) if check["examples"] else "<p>no examples</p>"))
    if result["passed"]:
        verdict, verdict_class = "all checks passed", "pass"
    elif result["blocking_failed"]:
        verdict, verdict_class = "blocking checks failed", "fail"
    else:
        verdict, verdict_class = "warnings", "warn"
    return _PAGE.substitute(verdict=verdict, verdict_class=verdict_class, generated_at=_cell(result["generated_at"]),
                            profile=_cell(result["profile"]), checks_passed=result["checks_passed"],
                            checks_failed=result["checks_failed"], seconds=result["seconds"], rows="\n".join(rows),
                            failures="\n".join(failures))


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``run_all``'s result as one self-contained HTML page; returns the path written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(result), encoding="utf-8")
    return target
