"""`encaptio bench quality` end to end at a toy size: what it returns, and that it reuses its stores."""

from __future__ import annotations

import json
from pathlib import Path

from bench.quality import run_quality_bench
from encaptio_data.quality.catalog import CHECKS


def test_quality_bench_times_every_check_against_bare_reads(tmp_path: Path) -> None:
    messages: list[str] = []
    result = run_quality_bench(chunks=300, content_rows=30, data_dir=tmp_path, content_per_capsule=10,
                               progress=messages.append)
    json.dumps(result)  # JSON-able, as `--json` prints it
    assert result["checks_passed"] and result["failed"] == [] and messages
    assert result["dataset"]["built_now"] and result["dataset"]["chunks"] == 300
    assert result["dataset"]["capsules"] == 3 and result["dataset"]["content_rows"] == 30
    assert list(result["per_check_seconds"]) == [check.name for check in CHECKS] + [
        "daily_engagement_suite", "aggregates_reconcile_with_raw_events"]
    assert {"list_uploads", "read_rows", "read_vectors", "total", "cpu_total"} <= result["baseline_seconds"].keys()
    assert result["checks_cpu_seconds"] > 0
    assert list(result["per_check_cpu_seconds"]) == list(result["per_check_seconds"])
    assert {"cpu_model", "cores", "load_average_end"} <= result["machine"].keys()

    again = run_quality_bench(chunks=300, content_rows=30, data_dir=tmp_path, content_per_capsule=10)
    assert not again["dataset"]["built_now"] and again["checks_passed"]
    resized = run_quality_bench(chunks=200, content_rows=20, data_dir=tmp_path, content_per_capsule=10)
    assert resized["dataset"]["built_now"] and resized["dataset"]["chunks"] == 200
