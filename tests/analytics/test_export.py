"""Exports: k-anonymous in every format, and the answer says what was enforced and achieved."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from encaptio_data.analytics.export import export_analytics
from encaptio_data.authz import system_principal
from encaptio_data.errors import InvalidInputError
from encaptio_data.platform import Platform
from tests.analytics.world import DAY, NOW, at, build_world

DAGSTER = system_principal("dagster", run="test")  # the export asset's principal


def _crowd_and_outlier(platform: Platform):
    world = build_world(platform, users=12)
    for i, user in enumerate(world.users[:10]):  # a crowd on capsule 0
        world.event(world.capsules[0], user, f"s{i}", "view", at(DAY, 9, i))
    world.event(world.capsules[1], world.users[11], "s-lonely", "view", at(DAY, 10))  # alone on capsule 1
    return world


def test_export_every_format_is_k_anonymous_and_self_describing(platform: Platform, tmp_path: Path) -> None:
    world = _crowd_and_outlier(platform)
    answers = {}
    for fmt in ("csv", "parquet", "json"):
        answers[fmt] = export_analytics(platform, fmt, tmp_path / f"export.{fmt}", date_from=DAY, date_to=DAY, now=NOW,
                                        operator=DAGSTER)
    answer = answers["csv"]
    assert answer["quasi_identifiers"] == ["capsule_id", "period", "geo", "event_type"]
    assert answer["k"] == 5 and answer["min_group_size"] >= 5
    assert answer["suppressed"] >= 1 and answer["suppressed_events"] >= 1 and answer["rows"] >= 1
    assert answer["events"] == 11

    csv = pd.read_csv(tmp_path / "export.csv")
    parquet = pq.read_table(tmp_path / "export.parquet")
    document = json.loads((tmp_path / "export.json").read_text())
    assert (csv["subjects"] >= 5).all() and (parquet.column("subjects").to_pandas() >= 5).all()
    assert all(row["subjects"] >= 5 for row in document["rows"]) and document["k"] == 5
    assert json.loads(parquet.schema.metadata[b"encaptio.export"])["min_group_size"] == answer["min_group_size"]
    assert str(world.capsules[1]) not in set(csv["capsule_id"])  # the lone visitor's capsule is suppressed
    text = (tmp_path / "export.csv").read_text() + (tmp_path / "export.json").read_text()
    assert not any(user.hex in text or str(user) in text for user in world.users)

    only = export_analytics(platform, "json", tmp_path / "one.json", capsule_id=str(world.capsules[0]),
                            date_from=DAY.isoformat(), date_to=DAY.isoformat(), now=NOW, operator=DAGSTER)
    assert only["capsule_id"] == str(world.capsules[0]) and only["events"] == 10


def test_export_refuses_bad_arguments(embedded_platform: Platform, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="format"):
        export_analytics(embedded_platform, "xlsx", tmp_path / "x", operator=DAGSTER)
    with pytest.raises(InvalidInputError, match="k must be"):
        export_analytics(embedded_platform, "csv", tmp_path / "x", k=1, operator=DAGSTER)
    with pytest.raises(InvalidInputError, match="after"):
        export_analytics(embedded_platform, "csv", tmp_path / "x", date_from="2026-10-09", date_to="2026-10-01",
                         operator=DAGSTER)
    with pytest.raises(InvalidInputError, match="uuid"):
        export_analytics(embedded_platform, "csv", tmp_path / "x", capsule_id="nope", operator=DAGSTER)
