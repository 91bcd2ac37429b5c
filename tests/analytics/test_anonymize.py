"""Keyed pseudonyms with rotation, and k-anonymity on adversarial data, measured independently."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from encaptio_data.analytics.anonymize import (
    QUASI_IDENTIFIERS,
    country_of_locale,
    k_anonymize,
    measure_min_group_size,
    pseudonym_key,
    pseudonym_key_ids,
    pseudonymize,
    rotate_pseudonym_key,
)


def test_pseudonym_key_is_created_owner_only_and_pseudonyms_are_stable(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    key = pseudonym_key(keys)
    path = keys / "pseudonym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.key_id == "k1" and pseudonym_key(keys) == key
    ids = pa.array(["a" * 32, None, "b" * 32, "a" * 32])
    out = pseudonymize(ids, key).to_pylist()
    assert out[0] == out[3] != out[2] and out[1] is None
    assert out[0].startswith("k1:") and len(out[0]) == 3 + 32 and "a" * 32 not in out[0]


def test_rotation_starts_a_new_key_id_and_destroys_the_old_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    old = pseudonym_key(keys)
    before = old.pseudonym("user-1")
    answer = rotate_pseudonym_key(keys, now=datetime(2026, 11, 1).astimezone())
    new = pseudonym_key(keys)
    assert answer["previous_key_id"] == "k1" and answer["key_id"] == new.key_id == "k2"
    after = new.pseudonym("user-1")
    assert after.startswith("k2:") and after.split(":")[1] != before.split(":")[1]
    stored = json.loads((keys / "pseudonym.key").read_text())
    assert list(stored["keys"]) == ["k2"] and old.secret.hex() not in (keys / "pseudonym.key").read_text()
    assert [r["key_id"] for r in pseudonym_key_ids(keys)["retired"]] == ["k1"]
    rotate_pseudonym_key(keys)
    assert pseudonym_key(keys).key_id == "k3"


def test_country_from_locale() -> None:
    assert [country_of_locale(x) for x in ("de_DE", "en-GB", "fr", None, 7)] == ["DE", "GB", "unknown", "unknown",
                                                                                  "unknown"]


def _records(groups: list[tuple[str, str, str, str, int]]) -> pd.DataFrame:
    """(capsule, ISO day, country, event type, subjects): one event per subject, subjects unique per group."""
    rows = []
    for n, (capsule, day, country, event_type, subjects) in enumerate(groups):
        for s in range(subjects):
            rows.append({"capsule_id": capsule, "day": pd.Timestamp(day), "country": country,
                         "event_type": event_type, "subject": f"g{n}-s{s}", "dwell_seconds": 0.0})
    return pd.DataFrame(rows)


def test_adversarial_unique_combinations_and_tiny_groups_are_suppressed() -> None:
    records = _records(
        [("c1", "2026-10-05", "DE", "view", 30), ("c1", "2026-10-05", "FR", "view", 12)]
        # An outlier alone in its country, and tiny groups no generalization can merge.
        + [("c1", "2026-10-06", "IS", "view", 1), ("c2", "2026-10-07", "DE", "search", 2),
           ("c1", "2026-10-08", "US", "chat_turn", 4), ("c3", "2026-10-09", "JP", "completion", 3)]
    )
    published, report = k_anonymize(records, k=5)
    measured = measure_min_group_size(records, published, report.generalization)
    assert measured is not None and measured >= 5 and report.min_group_size == measured
    assert (published["subjects"] >= 5).all()
    # No rung keeps suppression under 5 %; week+region is the finest that suppresses least
    # (the Icelandic outlier joins its week's European views, the rest cannot be merged).
    assert report.generalization == "week+region"
    assert published[["capsule_id", "period", "geo", "event_type", "subjects"]].to_dict(orient="records") == [
        {"capsule_id": "c1", "period": "2026-W41", "geo": "europe", "event_type": "view", "subjects": 43}]
    assert (report.suppressed_groups, report.suppressed_records) == (3, 9)
    assert published["events"].sum() + report.suppressed_records == len(records)
    assert list(report.quasi_identifiers) == list(QUASI_IDENTIFIERS)


def test_the_finest_rung_is_kept_when_suppression_is_small() -> None:
    records = _records([("c1", "2026-10-05", "DE", "view", 60), ("c1", "2026-10-05", "FR", "view", 40),
                        ("c1", "2026-10-05", "IS", "view", 1)])
    published, report = k_anonymize(records, k=5)
    assert report.generalization == "day+country" and report.suppressed_records == 1
    assert sorted(published["geo"]) == ["DE", "FR"]
    assert measure_min_group_size(records, published, report.generalization) == 40


def test_generalization_climbs_the_ladder_before_suppressing() -> None:
    # Seven people on seven different days in one week: no day has five, the week has seven.
    records = _records([("c1", (pd.Timestamp("2026-10-05") + timedelta(days=d)).strftime("%Y-%m-%d"), c, "view", 1)
                        for d, c in enumerate(["DE", "FR", "DE", "NL", "DE", "FR", "IT"])])
    published, report = k_anonymize(records, k=5, max_suppression=0.0)
    assert report.generalization == "week+region"
    assert published[["period", "geo", "subjects"]].to_dict(orient="records") == [
        {"period": "2026-W41", "geo": "europe", "subjects": 7}]
    assert measure_min_group_size(records, published, report.generalization) == 7


def test_all_unique_data_publishes_nothing() -> None:
    records = _records([(f"c{i}", "2026-10-05", "DE", "view", 1) for i in range(20)])
    published, report = k_anonymize(records, k=5)
    assert published.empty and report.min_group_size is None and report.suppressed_records == 20
    assert report.generalization == "day+country"  # every rung suppresses everything: the finest is reported


def test_measurement_does_not_trust_the_published_counts() -> None:
    records = _records([("c1", "2026-10-05", "DE", "view", 6), ("c1", "2026-10-05", "FR", "view", 2)])
    published, report = k_anonymize(records, k=5, max_suppression=0.5)
    assert report.generalization == "day+country" and list(published["geo"]) == ["DE"]
    tampered = pd.concat([published, pd.DataFrame([{"capsule_id": "c1", "period": "2026-10-05", "geo": "FR",
                                                    "event_type": "view", "events": 2, "subjects": 99,
                                                    "dwell_seconds": 0.0}])])
    assert measure_min_group_size(records, tampered, report.generalization) == 2


def test_k_below_two_is_refused() -> None:
    with pytest.raises(ValueError):
        k_anonymize(_records([("c", "2026-10-05", "DE", "view", 3)]), k=1)
