"""The privacy benchmark runs and reports its baseline (no timing is asserted)."""

from pathlib import Path

from bench.privacy import run_privacy_bench
from encaptio_data.platform import Platform
from tests.privacy.conftest import plant


def test_privacy_bench_reports_both_measurements(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import bench.privacy as privacy

    def tiny_demo(platform: Platform, progress: object) -> None:
        plant(platform, "erased")
        plant(platform, "baseline")

    monkeypatch.setattr(privacy, "_demo", tiny_demo)
    result = run_privacy_bench(events=200, files=3, data_dir=tmp_path)
    assert result["erasure"]["rows_deleted"] > 0 and result["erasure"]["baseline_sql_delete_seconds"] > 0
    assert result["access_export"]["counts"]["interaction_events"] == 200
    assert result["access_export"]["counts"]["content"] == 3
