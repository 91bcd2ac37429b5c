"""k-anonymous analytics exports: event counts by capsule, period, geography and event type.

Every export goes through ``k_anonymous_engagement``: usable events only (excluded subjects
and quarantined events never reach it), then ``anonymize.k_anonymize`` over the declared
quasi-identifiers, then an independent recount of the smallest published group. The answer
names the quasi-identifiers, the k enforced, the generalization chosen and the achieved
minimum, so whoever receives the file knows what protection it carries.

Exports hold no identifiers and no free text, only grouped counts, so they are written in
the clear; exports of personal data (access requests) are a different thing, encrypted by
the privacy package.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from encaptio_data import authz
from encaptio_data.accounts import parse_uuid
from encaptio_data.analytics.aggregate import DEFAULT_K, capsule_organizations, day_bounds, read_usable_events
from encaptio_data.analytics.anonymize import QUASI_IDENTIFIERS, k_anonymize, measure_min_group_size
from encaptio_data.analytics.retention import RAW_EVENT_RETENTION_DAYS
from encaptio_data.authz import Permission, Principal
from encaptio_data.errors import InvalidInputError, NotFoundError
from encaptio_data.platform import Platform

FORMATS = ("csv", "parquet", "json")
DEFAULT_WINDOW_DAYS = 28
COLUMNS = [*QUASI_IDENTIFIERS, "events", "subjects", "dwell_seconds"]


def _as_date(value: date | str | None, name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be a date as YYYY-MM-DD, not {value!r}") from None


def _as_capsule(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInputError(f"capsule id {value!r} is not a uuid") from None


def k_anonymous_engagement(platform: Platform, *, date_from: date, date_to: date, capsule_id: uuid.UUID | None = None,
                           k: int = DEFAULT_K, now: datetime | None = None,
                           organization_id: uuid.UUID | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The published table and the facts about it, for the inclusive day range."""
    if date_to < date_from:
        raise InvalidInputError(f"date_from {date_from} is after date_to {date_to}")
    now = now or datetime.now(UTC)
    usable = read_usable_events(platform, day_bounds(date_from)[0], day_bounds(date_to)[1], now=now,
                                with_country=True)
    valid = usable.valid
    if capsule_id is not None:
        valid = valid.filter(pc.equal(valid["capsule_id"], capsule_id.hex))
    if organization_id is not None:
        own = [c for c, o in capsule_organizations(platform.db).items() if o == organization_id.hex]
        valid = valid.filter(pc.is_in(valid["capsule_id"], value_set=pa.array(own, pa.string())))
    records = pd.DataFrame({
        "capsule_id": [str(uuid.UUID(hex=c)) for c in valid["capsule_id"].to_pylist()],
        "day": valid["occurred_at"].to_pandas().dt.tz_convert(None).dt.normalize(),
        "country": valid["country"].to_pandas(),
        "event_type": valid["event_type"].to_pandas(),
        "subject": valid["subject"].to_pandas(),
        "dwell_seconds": pc.fill_null(valid["seconds"], 0.0).to_pandas(),
    })
    published, report = k_anonymize(records, k=k)
    measured = measure_min_group_size(records, published, report.generalization)
    published = published[COLUMNS].astype({"events": "int64", "subjects": "int64"})
    published["dwell_seconds"] = published["dwell_seconds"].round(1)
    facts: dict[str, Any] = {
        "quasi_identifiers": list(QUASI_IDENTIFIERS), "k": k, "min_group_size": measured,
        "generalization": report.generalization, "rows": len(published), "suppressed": report.suppressed_groups,
        "suppressed_events": report.suppressed_records, "events": report.records,
        "excluded_events": usable.excluded_events, "quarantined_events": usable.quarantined.num_rows,
        "date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
        "capsule_id": str(capsule_id) if capsule_id else None, "ladder_tried": report.ladder_tried,
        "organization_id": str(organization_id) if organization_id else None,
    }
    if date_from < now.date() - timedelta(days=RAW_EVENT_RETENTION_DAYS):
        facts["note"] = (f"raw events are kept {RAW_EVENT_RETENTION_DAYS} days; earlier days contribute only "
                         "events kept under a legal hold")
    return published, facts


def render(published: pd.DataFrame, facts: dict[str, Any], fmt: str) -> bytes:
    if fmt == "csv":
        return published.to_csv(index=False).encode()
    if fmt == "json":
        return json.dumps({**{k: v for k, v in facts.items() if k != "ladder_tried"},
                           "rows": published.to_dict(orient="records")}, indent=1).encode()
    table = pa.Table.from_pandas(published, preserve_index=False)
    table = table.replace_schema_metadata({b"encaptio.export": json.dumps(facts).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def export_analytics(platform: Platform, fmt: str, out: Path | str, capsule_id: uuid.UUID | str | None = None,
                     date_from: date | str | None = None, date_to: date | str | None = None, k: int = DEFAULT_K,
                     *, operator: Principal | str | None, organization_id: uuid.UUID | str | None = None,
                     now: datetime | None = None) -> dict[str, Any]:
    """Write a k-anonymous export to ``out`` (csv | parquet | json); returns what was enforced and achieved.

    Defaults: the 28 days up to yesterday (UTC), every capsule, k = 5. The export covers one
    organization (``organization_id``, or the capsule's) for operators of that organization;
    every organization at once needs a platform-wide grant.
    """
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if k < 2:
        raise InvalidInputError(f"k must be at least 2, not {k}")
    capsule = _as_capsule(capsule_id)
    org = parse_uuid(organization_id, "organization") if organization_id is not None else None
    if capsule is not None:
        owner = capsule_organizations(platform.db).get(capsule.hex)
        if owner is None:
            raise NotFoundError(f"capsule {capsule} does not exist")
        if org is not None and owner != org.hex:
            raise InvalidInputError(f"capsule {capsule} does not belong to organization {org}")
        scope = uuid.UUID(hex=owner)
    else:
        scope = org
    authz.authorize(platform, operator, Permission.EXPORT_ANALYTICS, scope)
    now = now or datetime.now(UTC)
    date_to = _as_date(date_to, "date_to") or now.date() - timedelta(days=1)
    date_from = _as_date(date_from, "date_from") or date_to - timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    published, facts = k_anonymous_engagement(platform, date_from=date_from, date_to=date_to,
                                              capsule_id=capsule, k=k, now=now, organization_id=org)
    data = render(published, facts, fmt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Write beside, then rename: a reader never sees half an export.
    temporary = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, out)
    return {"path": str(out), "format": fmt, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            **{key: value for key, value in facts.items() if key != "ladder_tried"},
            "generalizations_tried": facts["ladder_tried"]}
