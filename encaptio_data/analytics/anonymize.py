"""Pseudonyms and k-anonymity.

Pseudonyms
----------
A user id becomes ``<key id>:<HMAC-SHA256(key, id)>`` (128 bits, hex). Without the key a
pseudonym cannot be traced back to an id, even by hashing every known id; with it, the same
user gets the same pseudonym in every run, which is what distinct counts need.

The keyring lives in ``<data dir>/keys/pseudonym.key`` (mode 0600), created on first use,
never in the database (a database backup must not carry the key to its own pseudonyms).
``rotate_pseudonym_key`` starts a new key id and destroys the old key material: pseudonyms
made before and after a rotation can no longer be linked, which is the point of rotating.
Every pseudonym carries its key id, so any old release still says which key made it, and
the keyring keeps the retired ids and dates for that lookup.

k-anonymity
-----------
``k_anonymize`` publishes event counts grouped by the quasi-identifiers (capsule, period,
geography, event type) such that every published group holds at least ``k`` distinct
subjects. It generalizes along a fixed ladder (day → week → month, country → region → any)
and takes the first rung where groups smaller than k cover at most ``max_suppression`` of the
records; the remaining small groups are suppressed. ``measure_min_group_size`` recounts the
published groups from the records, independently of the counts the table itself reports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from encaptio_data.errors import IntegrityError

KEYRING_FILE = "pseudonym.key"
_KEY_BYTES = 32
_DIGEST_HEX = 32


# -- pseudonyms ---------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write owner-only and atomically; with ``exclusive``, only if the file does not exist yet.

    Returns False when ``exclusive`` lost the race: two processes creating the first key at
    once must end up using the same key, so the loser re-reads the winner's file.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if exclusive:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
        else:
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return True


@dataclass(frozen=True)
class PseudonymKey:
    key_id: str
    secret: bytes

    def pseudonym(self, value: str) -> str:
        digest = hmac.new(self.secret, value.encode(), hashlib.sha256).hexdigest()[:_DIGEST_HEX]
        return f"{self.key_id}:{digest}"


def _keyring_path(keys_dir: Path) -> Path:
    return Path(keys_dir) / KEYRING_FILE


def _read_keyring(path: Path) -> dict[str, Any]:
    try:
        keyring = json.loads(path.read_bytes())
        current = keyring["current"]
        secret = bytes.fromhex(keyring["keys"][current]["secret"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{path} is not a pseudonym keyring: {exc}") from None
    if len(secret) != _KEY_BYTES:
        raise IntegrityError(f"{path}: key {current} is not {_KEY_BYTES} bytes")
    return keyring


def _new_key_entry(now: datetime) -> dict[str, str]:
    return {"secret": secrets.token_bytes(_KEY_BYTES).hex(), "created_at": now.isoformat()}


def pseudonym_key(keys_dir: Path) -> PseudonymKey:
    """The current pseudonym key, created on first use."""
    path = _keyring_path(keys_dir)
    if not path.exists():
        keyring = {"current": "k1", "keys": {"k1": _new_key_entry(datetime.now(UTC))}, "retired": []}
        _write_private(path, json.dumps(keyring).encode(), exclusive=True)
    keyring = _read_keyring(path)
    current = keyring["current"]
    return PseudonymKey(current, bytes.fromhex(keyring["keys"][current]["secret"]))


def rotate_pseudonym_key(keys_dir: Path, *, now: datetime | None = None) -> dict[str, Any]:
    """Start a new key id and destroy the previous key; returns the ids and the retired history."""
    now = now or datetime.now(UTC)
    previous = pseudonym_key(keys_dir)
    path = _keyring_path(keys_dir)
    keyring = _read_keyring(path)
    number = 1 + max(int(k.removeprefix("k")) for k in
                     [*keyring["keys"], *(r["key_id"] for r in keyring.get("retired", []))])
    new_id = f"k{number}"
    retired = [*keyring.get("retired", []),
               {"key_id": previous.key_id, "created_at": keyring["keys"][previous.key_id]["created_at"],
                "retired_at": now.isoformat()}]
    # Only the new key's material survives: old pseudonyms become unlinkable to new ones.
    _write_private(path, json.dumps({"current": new_id, "keys": {new_id: _new_key_entry(now)},
                                     "retired": retired}).encode())
    return {"previous_key_id": previous.key_id, "key_id": new_id, "retired": retired}


def pseudonym_key_ids(keys_dir: Path) -> dict[str, Any]:
    """Which key id is current and which were retired when: how an old release is attributed."""
    keyring = _read_keyring(_keyring_path(keys_dir)) if _keyring_path(keys_dir).exists() else None
    if keyring is None:
        return {"current": None, "retired": []}
    return {"current": keyring["current"], "retired": keyring.get("retired", [])}


def pseudonymize(values: pa.ChunkedArray | pa.Array, key: PseudonymKey) -> pa.ChunkedArray:
    """Pseudonyms for a column of ids; nulls stay null.

    The HMAC runs once per distinct id and the result is spread back by index, so the cost
    follows the number of users, not the number of events.
    """
    values = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    distinct = pc.unique(values).drop_null()
    mapped = pa.array([key.pseudonym(v) for v in distinct.to_pylist()], pa.string())
    return pa.chunked_array([pc.take(mapped, pc.index_in(chunk, value_set=distinct)) for chunk in values.chunks],
                            type=pa.string())


# -- k-anonymity --------------------------------------------------------------------------

# Quasi-identifiers of every analytics export: together they could single a person out.
QUASI_IDENTIFIERS = ("capsule_id", "period", "geo", "event_type")

# ISO 3166 country → a coarse region, for the second geography rung. Unknown countries (and
# anonymous visitors, whose country we do not know) fall into "other".
_REGIONS = {
    **dict.fromkeys(("US", "CA", "MX", "BR", "AR", "CL", "CO", "PE"), "americas"),
    **dict.fromkeys(("GB", "IE", "DE", "FR", "ES", "IT", "NL", "BE", "LU", "AT", "CH", "PT", "DK", "SE", "NO", "FI",
                     "IS", "PL", "CZ", "SK", "HU", "RO", "BG", "GR", "HR", "SI", "EE", "LV", "LT"), "europe"),
    **dict.fromkeys(("IN", "JP", "CN", "KR", "SG", "TH", "VN", "PH", "ID", "MY", "IL", "TR", "AE"), "asia"),
    **dict.fromkeys(("AU", "NZ"), "oceania"),
    **dict.fromkeys(("ZA", "NG", "KE", "EG", "MA"), "africa"),
}


def country_of_locale(locale: object) -> str:
    """'de_DE' or 'en-GB' → 'DE' / 'GB'; anything else → 'unknown'."""
    if not isinstance(locale, str):
        return "unknown"
    parts = locale.replace("-", "_").split("_")
    return parts[1].upper() if len(parts) >= 2 and len(parts[1]) == 2 and parts[1].isalpha() else "unknown"


def region_of_country(country: str) -> str:
    return _REGIONS.get(country, "other")


@dataclass(frozen=True)
class Generalization:
    name: str
    period: str  # day | week | month
    geo: str  # country | region | any


LADDER: tuple[Generalization, ...] = (
    Generalization("day+country", "day", "country"),
    Generalization("week+country", "week", "country"),
    Generalization("week+region", "week", "region"),
    Generalization("month+region", "month", "region"),
    Generalization("month+any", "month", "any"),
)


@dataclass
class KAnonymityReport:
    k: int
    quasi_identifiers: list[str]
    generalization: str
    records: int
    groups: int
    suppressed_groups: int
    suppressed_records: int
    min_group_size: int | None
    ladder_tried: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generalize(records: pd.DataFrame, level: Generalization) -> pd.DataFrame:
    """The records with ``period`` and ``geo`` columns at ``level``.

    ``records`` needs ``day`` (datetime64, UTC midnight) and ``country`` columns.
    """
    day = pd.to_datetime(records["day"])
    if level.period == "day":
        period = day.dt.strftime("%Y-%m-%d")
    elif level.period == "week":
        iso = day.dt.isocalendar()
        period = iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)
    else:
        period = day.dt.strftime("%Y-%m")
    if level.geo == "country":
        geo = records["country"].astype(str)
    elif level.geo == "region":
        geo = records["country"].astype(str).map(region_of_country)
    else:
        geo = pd.Series("any", index=records.index)
    return records.assign(period=period.astype(str), geo=geo.astype(str))


def _group_sizes(generalized: pd.DataFrame) -> pd.DataFrame:
    grouped = generalized.groupby(list(QUASI_IDENTIFIERS), observed=True, sort=True)
    return grouped.agg(events=("subject", "size"), subjects=("subject", "nunique"),
                       dwell_seconds=("dwell_seconds", "sum")).reset_index()


def k_anonymize(records: pd.DataFrame, *, k: int = 5, ladder: Iterable[Generalization] = LADDER,
                max_suppression: float = 0.05) -> tuple[pd.DataFrame, KAnonymityReport]:
    """Grouped counts in which every row covers at least ``k`` distinct subjects.

    ``records``: one row per event with capsule_id, day, country, event_type, subject (a
    pseudonym or session reference) and dwell_seconds. Returns the published table (one row
    per surviving group: the quasi-identifiers, events, subjects, dwell_seconds) and the report.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, not {k}")
    tried: list[dict[str, Any]] = []
    # (share of records suppressed, rung index, rung, groups): the first rung within the
    # suppression budget wins; if none is, the rung that suppresses least (the finer on ties).
    best: tuple[float, int, Generalization, pd.DataFrame] | None = None
    total = len(records)
    for index, level in enumerate(ladder):
        groups = _group_sizes(generalize(records, level))
        small = groups["subjects"] < k
        share = float(groups.loc[small, "events"].sum()) / total if total else 0.0
        tried.append({"generalization": level.name, "groups": int(len(groups)), "small_groups": int(small.sum()),
                      "records_in_small_groups": round(share, 4)})
        if best is None or share < best[0]:
            best = (share, index, level, groups)
        if share <= max_suppression:
            best = (share, index, level, groups)
            break
    if best is None:
        raise ValueError("the generalization ladder is empty")
    _, _, level, groups = best
    small = groups["subjects"] < k
    published = groups.loc[~small].reset_index(drop=True)
    report = KAnonymityReport(
        k=k, quasi_identifiers=list(QUASI_IDENTIFIERS), generalization=level.name, records=total,
        groups=int(len(published)), suppressed_groups=int(small.sum()),
        suppressed_records=int(groups.loc[small, "events"].sum()),
        min_group_size=int(published["subjects"].min()) if len(published) else None, ladder_tried=tried)
    return published, report


def measure_min_group_size(records: pd.DataFrame, published: pd.DataFrame, generalization: str,
                           ladder: Iterable[Generalization] = LADDER) -> int | None:
    """The smallest number of distinct subjects behind any published row, recounted from the records.

    Independent of the ``subjects`` column the export carries: this is the measurement the
    asset check trusts, so a bug in suppression cannot vouch for itself.
    """
    level = next((rung for rung in ladder if rung.name == generalization), None)
    if level is None:
        raise ValueError(f"unknown generalization {generalization!r}")
    if published.empty:
        return None
    generalized = generalize(records, level)
    keys = published[list(QUASI_IDENTIFIERS)].astype(str).drop_duplicates()
    behind = generalized.astype({c: str for c in QUASI_IDENTIFIERS}).merge(keys, on=list(QUASI_IDENTIFIERS))
    sizes = behind.groupby(list(QUASI_IDENTIFIERS))["subject"].nunique()
    # A published group with no records behind it at all is as bad as a tiny one.
    missing = len(keys) - len(sizes)
    return 0 if missing else int(np.min(sizes.to_numpy()))
