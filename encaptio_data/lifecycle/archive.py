"""Archival: cold rows leave the database for Parquet files under ``archive/`` in the object store.

Layout, per dataset and calendar month (UTC)::

    archive/<dataset>/month=YYYY-MM/part-<first 16 hex of the file's sha256>.parquet
    archive/<dataset>/month=YYYY-MM/manifest.json

The manifest lists every file of the partition with its sha256, size, row count and time
range, and the dataset's schema; ``read_archive`` reads through it and checks each file
against it, so an archived row stays readable (as a pyarrow table) and provably unchanged.

Rows leave the database only once their file is safe, in this order:

1. write the file (named by its bytes' digest, so writing the same rows again is the same file);
2. read it back from the store and compare it with the table that was meant to be written;
3. record it in the manifest: the commit point (a file the manifest does not list is an
   orphan from a crash, removed by the next pass over the partition);
4. delete the rows. A crash before this leaves rows that are already archived: the next
   run finds their keys in the partition and deletes them without writing them twice.

What gets archived: interaction events once their month is older than
``ARCHIVE_EVENTS_AFTER_DAYS`` (and their days are aggregated, since the aggregates can never
be rebuilt afterwards), and analytics aggregates past their retention when the
organization's analytics policy says ``archive``. The retention clock keeps running in
the archive: the purge removes archived raw events at the raw-event retention like the
rows they were. One writer per partition at a time (the nightly job) is assumed: a second
concurrent writer could take the other's uncommitted file for an orphan.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from encaptio_data import audit
from encaptio_data.analytics.aggregate import raw_event_counts
from encaptio_data.db.enums import HoldScope, RetentionAction
from encaptio_data.db.models import (
    Capsule,
    DailyEngagement,
    DailyEngagementRun,
    DailyTopQuery,
    InteractionEvent,
    JSONType,
    utcnow,
)
from encaptio_data.errors import IntegrityError, InvalidInputError, ObjectNotFoundError
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle.retention import DataClass, Holds, Policies, Tally
from encaptio_data.platform import Platform
from encaptio_data.stores.objects import ObjectStore

ARCHIVE_PREFIX = "archive/"
ARCHIVE_EVENTS_AFTER_DAYS = 30
PARQUET_TYPE = "application/vnd.apache.parquet"
_COMPRESSION = "zstd"
_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Dataset:
    name: str
    schema: pa.Schema
    time_column: str
    key_columns: tuple[str, ...]


def _counts(*names: str) -> list[tuple[str, pa.DataType]]:
    return [(name, pa.int64()) for name in names]


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("interaction_events", pa.schema([
        pa.field("id", pa.string(), nullable=False), pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("capsule_id", pa.string(), nullable=False), pa.field("organization_id", pa.string(), nullable=False),
        ("user_id", pa.string()), pa.field("session_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False), ("payload", pa.string()),  # JSON text
        pa.field("occurred_at", _TS, nullable=False),
    ]), "occurred_at", ("id",)),
    Dataset("daily_engagement", pa.schema([
        pa.field("day", pa.date32(), nullable=False), pa.field("capsule_id", pa.string(), nullable=False),
        pa.field("organization_id", pa.string(), nullable=False),
        *_counts("events", "views", "unique_sessions", "searches", "chat_turns", "dwell_events", "completions"),
        ("total_dwell_seconds", pa.float64()), ("median_dwell_seconds", pa.float64()),
        *_counts("unique_users"), ("computed_at", _TS),
    ]), "day", ("day", "capsule_id")),
    Dataset("daily_top_queries", pa.schema([
        pa.field("day", pa.date32(), nullable=False), pa.field("capsule_id", pa.string(), nullable=False),
        pa.field("organization_id", pa.string(), nullable=False), pa.field("query_norm", pa.string(), nullable=False),
        *_counts("count", "subjects", "rank"),
    ]), "day", ("day", "capsule_id", "query_norm")),
)}
EVENTS, ENGAGEMENT, TOP_QUERIES = (DATASETS[n] for n in ("interaction_events", "daily_engagement", "daily_top_queries"))


def _dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise InvalidInputError(f"unknown archive dataset {name!r} (known: {', '.join(sorted(DATASETS))})") from None


def partition_prefix(dataset: str, month: str) -> str:
    return f"{ARCHIVE_PREFIX}{dataset}/month={month}/"


def manifest_key(dataset: str, month: str) -> str:
    return partition_prefix(dataset, month) + "manifest.json"


def month_of(value: date | datetime) -> str:
    return f"{value.year:04d}-{value.month:02d}"


def _month_start(value: datetime) -> datetime:
    return datetime(value.year, value.month, 1, tzinfo=UTC)


# -- the partition store ----------------------------------------------------------------------


def partitions(objects: ObjectStore, dataset: str) -> list[str]:
    """The months of a dataset that have a manifest, oldest first."""
    prefix = f"{ARCHIVE_PREFIX}{_dataset(dataset).name}/"
    return sorted(v.key[len(prefix):].split("/")[0].removeprefix("month=")
                  for v in objects.list(prefix) if v.key.endswith("/manifest.json"))


def read_manifest(objects: ObjectStore, dataset: str, month: str) -> dict[str, Any] | None:
    try:
        return json.loads(objects.get(manifest_key(dataset, month)))
    except ObjectNotFoundError:
        return None


def _encode(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=_COMPRESSION)
    return sink.getvalue().to_pybytes()


def _read_file(objects: ObjectStore, entry: dict[str, Any], columns: list[str] | None = None) -> pa.Table:
    # The store checks the bytes against its own sha256; the manifest's is checked too, so a
    # file swapped in whole (with a matching store checksum) is caught as well.
    data = objects.get(entry["key"])
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry["sha256"]:
        raise IntegrityError(f"archive file {entry['key']} has sha256 {actual}, its manifest says {entry['sha256']}")
    return pq.read_table(pa.BufferReader(data), columns=columns)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _write_file(objects: ObjectStore, spec: Dataset, month: str, table: pa.Table) -> dict[str, Any]:
    """Steps 1 and 2: the file is in the store and reads back as exactly ``table``."""
    table = table.select(spec.schema.names).cast(spec.schema)
    table = table.sort_by([(c, "ascending") for c in spec.key_columns])
    data = _encode(table)
    sha256 = hashlib.sha256(data).hexdigest()
    key = f"{partition_prefix(spec.name, month)}part-{sha256[:16]}.parquet"
    version = objects.put(key, data, content_type=PARQUET_TYPE, expected_sha256=sha256,
                          metadata={"dataset": spec.name, "rows": str(table.num_rows)})
    back = objects.get(key, version.version_id)
    if hashlib.sha256(back).hexdigest() != sha256 or not pq.read_table(pa.BufferReader(back)).equals(table):
        raise IntegrityError(f"archive file {key} did not read back as written: the rows stay in the database")
    times = pc.min_max(table.column(spec.time_column))
    return {"key": key, "version_id": version.version_id, "sha256": sha256, "bytes": len(data),
            "rows": table.num_rows, "min": _iso(times["min"].as_py()), "max": _iso(times["max"].as_py()),
            "written_at": utcnow().isoformat()}


def _commit(objects: ObjectStore, spec: Dataset, month: str, files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Step 3: the manifest now says which files make up the partition."""
    key = manifest_key(spec.name, month)
    if not files:
        objects.delete_all_versions(key)
        return None
    manifest = {
        "dataset": spec.name, "partition": f"month={month}", "format": "parquet", "compression": _COMPRESSION,
        "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in spec.schema],
        "time_column": spec.time_column, "key_columns": list(spec.key_columns),
        "files": sorted(files, key=lambda f: f["key"]), "rows": sum(f["rows"] for f in files),
        "time_range": {"min": min(f["min"] for f in files), "max": max(f["max"] for f in files)},
        "updated_at": utcnow().isoformat(),
    }
    objects.put(key, json.dumps(manifest, indent=2, sort_keys=True).encode(), content_type="application/json")
    return manifest


def _sweep_orphans(objects: ObjectStore, spec: Dataset, month: str, files: list[dict[str, Any]]) -> int:
    listed = {f["key"] for f in files} | {manifest_key(spec.name, month)}
    removed = 0
    for version in list(objects.list(partition_prefix(spec.name, month))):
        if version.key not in listed:
            removed += objects.delete_all_versions(version.key)
    return removed


def append(objects: ObjectStore, dataset: str, month: str, table: pa.Table) -> dict[str, Any]:
    """Add rows to a partition (steps 1 to 3); returns the file's manifest entry."""
    spec = _dataset(dataset)
    manifest = read_manifest(objects, spec.name, month)
    files = list(manifest["files"]) if manifest else []
    _sweep_orphans(objects, spec, month, files)
    entry = _write_file(objects, spec, month, table)
    committed = next((f for f in files if f["key"] == entry["key"]), None)
    if committed is not None:  # the same rows were committed by a run that crashed before deleting them
        return committed
    _commit(objects, spec, month, [*files, entry])
    return entry


def archived_keys(objects: ObjectStore, dataset: str, month: str) -> set[tuple[Any, ...]]:
    """The key of every row the partition holds, so rows already archived are never written twice."""
    spec = _dataset(dataset)
    manifest = read_manifest(objects, spec.name, month)
    keys: set[tuple[Any, ...]] = set()
    for entry in manifest["files"] if manifest else []:
        table = _read_file(objects, entry, list(spec.key_columns))
        keys |= set(zip(*(table.column(c).to_pylist() for c in spec.key_columns), strict=True))
    return keys


def _bound(value: date | datetime | None, column_type: pa.DataType) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInputError(f"{value.isoformat()} has no timezone: archive bounds must be timezone-aware")
        # UTC, so bounds and the manifest's ISO times compare as text too.
        value = value.astimezone(UTC)
    if pa.types.is_date(column_type):
        return value.date() if isinstance(value, datetime) else value
    return value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time(), UTC)


def read_archive(platform: Platform, dataset: str, *, start: date | datetime | None = None,
                 end: date | datetime | None = None, columns: list[str] | None = None,
                 open_sealed: bool = True) -> pa.Table:
    """Archived rows of a dataset with ``start <= time < end``, every file checked against its manifest.

    Event payloads are archived with their free text sealed; ``open_sealed`` opens it with the
    key store (``[erased]`` once the subject was erased), or leaves it as stored.
    """
    spec = _dataset(dataset)
    time_type = spec.schema.field(spec.time_column).type
    low, high = _bound(start, time_type), _bound(end, time_type)
    wanted = columns or spec.schema.names
    read = list(dict.fromkeys([*wanted, spec.time_column]))
    tables = []
    for month in partitions(platform.objects, spec.name):
        manifest = read_manifest(platform.objects, spec.name, month) or {"files": []}
        for entry in manifest["files"]:
            if (high is not None and entry["min"] >= _iso(high)) or (low is not None and entry["max"] < _iso(low)):
                continue
            tables.append(_read_file(platform.objects, entry, read))
    table = pa.concat_tables(tables) if tables else spec.schema.empty_table().select(read)
    if low is not None:
        table = table.filter(pc.greater_equal(table.column(spec.time_column), pa.scalar(low, time_type)))
    if high is not None:
        table = table.filter(pc.less(table.column(spec.time_column), pa.scalar(high, time_type)))
    table = table.select(wanted)
    if open_sealed and spec is EVENTS and "payload" in wanted:
        table = table.set_column(wanted.index("payload"), "payload", _opened_payloads(platform, table["payload"]))
    return table


def _opened_payloads(platform: Platform, payloads: pa.ChunkedArray) -> pa.Array:
    keys = KeyStore(platform.settings.keys_dir)
    sealed_fields = InteractionEvent.__table__.c.payload.type
    opened = []
    for text in payloads.to_pylist():
        value = json.loads(text) if text is not None else None
        opened.append(text if value is None else json.dumps(sealed_fields.open_with(keys, value), sort_keys=True))
    return pa.array(opened, pa.string())


def remove_rows(objects: ObjectStore, dataset: str, select: Callable[[pa.Table], pa.Array | pa.ChunkedArray], *,
                dry_run: bool = False) -> int:
    """Delete archived rows ``select`` marks (retention, purged capsules, erasure): every file holding
    one is rewritten without it, the manifest switched over, then the old file's versions erased."""
    spec = _dataset(dataset)
    removed = 0
    for month in partitions(objects, spec.name):
        manifest = read_manifest(objects, spec.name, month)
        if manifest is None:
            continue
        if not dry_run:
            _sweep_orphans(objects, spec, month, manifest["files"])
        kept, doomed = [], []
        for entry in manifest["files"]:
            table = _read_file(objects, entry)
            mask = pc.fill_null(select(table), False)
            count = pc.sum(mask).as_py() or 0
            removed += count
            if not count or dry_run:
                kept.append(entry)
                continue
            rest = table.filter(pc.invert(mask))
            if rest.num_rows:
                kept.append(_write_file(objects, spec, month, rest))
            doomed.append(entry["key"])
        if doomed:
            _commit(objects, spec, month, kept)
            for key in doomed:
                objects.delete_all_versions(key)
    return removed


def _referencing(table: pa.Table, *, users: pa.Array | None, capsules: pa.Array) -> pa.Array:
    mask = pc.is_in(table.column("capsule_id"), value_set=capsules)
    return mask if users is None else pc.or_(mask, pc.is_in(table.column("user_id"), value_set=users))


def erase_from_archive(objects: ObjectStore, *, user_ids: Iterable[uuid.UUID] = (),
                       capsule_ids: Iterable[uuid.UUID] = (), dry_run: bool = False) -> int:
    """Remove every archived row of these users (their events) or capsules (all datasets): what a purged
    capsule or an erased subject leaves behind in the archive. Returns how many rows went (or would)."""
    users = pa.array(sorted({str(u) for u in user_ids}), pa.string())
    capsules = pa.array(sorted({str(c) for c in capsule_ids}), pa.string())
    removed = 0
    for spec in DATASETS.values():
        by_user = len(users) > 0 and "user_id" in spec.schema.names
        if by_user or len(capsules):
            select = functools.partial(_referencing, users=users if by_user else None, capsules=capsules)
            removed += remove_rows(objects, spec.name, select, dry_run=dry_run)
    return removed


def verify_archive(objects: ObjectStore) -> dict[str, Any]:
    """Every manifest's files exist with the recorded sha256 and add up to its row count (no bytes read)."""
    problems: list[str] = []
    checked = 0
    for name in DATASETS:
        for month in partitions(objects, name):
            manifest = read_manifest(objects, name, month) or {"files": [], "rows": 0}
            for entry in manifest["files"]:
                checked += 1
                try:
                    recorded = objects.head(entry["key"]).sha256
                except ObjectNotFoundError:
                    problems.append(f"{entry['key']} is listed in its manifest but missing")
                    continue
                if recorded != entry["sha256"]:
                    problems.append(f"{entry['key']} has sha256 {recorded}, its manifest says {entry['sha256']}")
            if sum(f["rows"] for f in manifest["files"]) != manifest["rows"]:
                problems.append(f"{manifest_key(name, month)}: files do not add up to its row count")
    return {"passed": not problems, "files_checked": checked, "problems": problems}


# -- what gets archived ----------------------------------------------------------------------


@dataclass
class DatasetReport(Tally):
    dataset: str
    rows_archived: int = 0
    rows_deleted: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rows_archived": self.rows_archived, "rows_deleted": self.rows_deleted,
                "partitions": sorted({f["key"].split("/")[2] for f in self.files}), "files": self.files,
                "held": self.held, "skipped": self.skipped}


def batched(items: list[Any], size: int = 1000) -> Iterable[list[Any]]:
    """Slices small enough for an IN (...) list on either engine."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def archive_events(platform: Platform, policies: Policies, holds: Holds, *, now: datetime, after_days: int,
                   dry_run: bool) -> DatasetReport:
    """Interaction events of whole months older than ``after_days``, day by aggregated day."""
    report = DatasetReport(EVENTS.name)
    db, objects = platform.db, platform.objects
    boundary = _month_start(now - timedelta(days=after_days))
    with db.session() as session:
        organization_of = {k: v for k, v in session.execute(sa.select(Capsule.id, Capsule.organization_id))}
        runs = {r.day: r for r in session.scalars(sa.select(DailyEngagementRun))}
    totals = raw_event_counts(db, end=boundary.date())
    months = sorted({month_of(day) for day in totals})
    raw_cutoff = {org: policies.get(DataClass.RAW_EVENTS, org).day_cutoff(now) for org in set(organization_of.values())}
    held_users, held_capsules = holds.ids(HoldScope.USER), holds.ids(HoldScope.CAPSULE)
    held_orgs = holds.ids(HoldScope.ORGANIZATION)
    columns = [InteractionEvent.id, InteractionEvent.interaction_id, InteractionEvent.capsule_id,
               InteractionEvent.user_id, InteractionEvent.session_id, InteractionEvent.event_type,
               # Archived as stored: its free text stays sealed under each user's key, so an
               # erasure still reaches archived copies by destroying the key.
               sa.type_coerce(InteractionEvent.payload, JSONType).label("payload"), InteractionEvent.occurred_at]
    for month in months:
        start = datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
        end = min(_month_start(start + timedelta(days=32)), boundary)
        with db.session() as session:
            rows = session.execute(sa.select(*columns).where(InteractionEvent.occurred_at >= start,
                                                             InteractionEvent.occurred_at < end)).all()
        eligible = []
        for row in rows:
            day, org = row.occurred_at.date(), organization_of[row.capsule_id]
            run = runs.get(day)
            if run is None or (run.raw_purged_at is None and run.events_read != totals.get(day)):
                report.skip("day not aggregated (or its aggregate is stale): the aggregates could not be rebuilt "
                            "once the raw events left the database", 1)
            elif row.occurred_at < raw_cutoff[org]:
                report.skip("past the raw-event retention: the purge deletes it", 1)
            elif row.user_id in held_users or row.capsule_id in held_capsules or org in held_orgs:
                hold = holds.find(user=[row.user_id], capsule=[row.capsule_id], organization=[org])
                report.hold(f"interaction_events:{month}", hold, 1)
            else:
                eligible.append((row, org))
        if not eligible:
            continue
        already = archived_keys(objects, EVENTS.name, month)
        fresh = [(row, org) for row, org in eligible if (str(row.id),) not in already]
        report.rows_archived += len(fresh)
        report.rows_deleted += len(eligible)
        if dry_run:
            continue
        if fresh:
            table = pa.table({
                "id": [str(r.id) for r, _ in fresh], "interaction_id": [str(r.interaction_id) for r, _ in fresh],
                "capsule_id": [str(r.capsule_id) for r, _ in fresh], "organization_id": [str(o) for _, o in fresh],
                "user_id": [str(r.user_id) if r.user_id else None for r, _ in fresh],
                "session_id": [r.session_id for r, _ in fresh], "event_type": [r.event_type.value for r, _ in fresh],
                "payload": [json.dumps(r.payload, sort_keys=True) for r, _ in fresh],
                "occurred_at": [r.occurred_at for r, _ in fresh],
            }, schema=EVENTS.schema)
            report.files.append(append(objects, EVENTS.name, month, table))
        days = sorted({row.occurred_at.date() for row, _ in eligible})
        with db.session() as session:
            for ids in batched([row.id for row, _ in eligible]):
                session.execute(sa.delete(InteractionEvent).where(InteractionEvent.id.in_(ids)))
            for day in days:
                run = session.get(DailyEngagementRun, day)
                # The raw rows are gone from the database: the day's aggregates are final from now on.
                if run is not None and run.raw_purged_at is None:
                    run.raw_purged_at = now
                    run.details = {**run.details, "raw_archived_to": partition_prefix(EVENTS.name, month)}
    return report


def archive_analytics(platform: Platform, policies: Policies, holds: Holds, *, now: datetime,
                      dry_run: bool) -> list[DatasetReport]:
    """Aggregates past the analytics retention of organizations whose policy action is ``archive``."""
    engagement, top = DatasetReport(ENGAGEMENT.name), DatasetReport(TOP_QUERIES.name)
    db, objects = platform.db, platform.objects
    with db.session() as session:
        capsules = session.execute(sa.select(Capsule.id, Capsule.organization_id)).all()
    organization_of = {c.id: c.organization_id for c in capsules}
    cutoffs = {}
    for org in set(organization_of.values()):
        policy = policies.get(DataClass.ANALYTICS, org)
        if policy.action == RetentionAction.ARCHIVE.value:
            cutoffs[org] = policy.cutoff(now).date()
    eligible: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    engagement_columns = [c for c in ENGAGEMENT.schema.names if c != "organization_id"]
    with db.session() as session:
        for org, cutoff in sorted(cutoffs.items()):
            rows = session.execute(sa.select(DailyEngagement).where(DailyEngagement.organization_id == org,
                                                                    DailyEngagement.day < cutoff)).scalars().all()
            org_capsules = [c for c, o in organization_of.items() if o == org]
            queries = session.execute(sa.select(DailyTopQuery).where(DailyTopQuery.capsule_id.in_(org_capsules),
                                                                     DailyTopQuery.day < cutoff)).scalars().all()
            for report, dataset, items in ((engagement, ENGAGEMENT.name, rows), (top, TOP_QUERIES.name, queries)):
                for row in items:
                    hold = holds.find(capsule=[row.capsule_id], organization=[org]) if holds else None
                    if hold is not None:
                        report.hold(f"{dataset}:{month_of(row.day)}", hold, 1)
                        continue
                    values = {c: getattr(row, c) for c in (engagement_columns if dataset == ENGAGEMENT.name
                                                           else ["day", "capsule_id", "query_norm", "count",
                                                                 "subjects", "rank"])}
                    values["capsule_id"], values["organization_id"] = str(row.capsule_id), str(org)
                    eligible[dataset][month_of(row.day)].append(values)
    for report, spec in ((engagement, ENGAGEMENT), (top, TOP_QUERIES)):
        model = DailyEngagement if spec is ENGAGEMENT else DailyTopQuery
        for month, rows in sorted(eligible[spec.name].items()):
            already = archived_keys(objects, spec.name, month)
            fresh = [r for r in rows if tuple(r[c] for c in spec.key_columns) not in already]
            report.rows_archived += len(fresh)
            report.rows_deleted += len(rows)
            if dry_run:
                continue
            if fresh:
                table = pa.Table.from_pylist(fresh, schema=spec.schema)
                report.files.append(append(objects, spec.name, month, table))
            by_day: dict[date, list[uuid.UUID]] = defaultdict(list)
            for r in rows:
                by_day[r["day"]].append(uuid.UUID(r["capsule_id"]))
            with db.session() as session:
                for day, capsule_ids in by_day.items():
                    condition = [model.day == day, model.capsule_id.in_(capsule_ids)]
                    if model is DailyTopQuery:
                        condition.append(DailyTopQuery.query_norm.in_(
                            [r["query_norm"] for r in rows if r["day"] == day]))
                    session.execute(sa.delete(model).where(*condition))
    return [engagement, top]


def archive(platform: Platform, *, now: datetime | None = None, dry_run: bool = False,
            events_after_days: int = ARCHIVE_EVENTS_AFTER_DAYS, actor: str = "retention") -> dict[str, Any]:
    """Move every cold dataset to the archive; ``dry_run`` reports what would move and changes nothing."""
    now = now or utcnow()
    with platform.db.session() as session:
        policies, holds = Policies.load(session), Holds.load(session)
    reports = [archive_events(platform, policies, holds, now=now, after_days=events_after_days, dry_run=dry_run),
               *archive_analytics(platform, policies, holds, now=now, dry_run=dry_run)]
    result = {"now": now.isoformat(), "dry_run": dry_run, "events_after_days": events_after_days,
              "datasets": {r.dataset: r.as_dict() for r in reports}}
    if not dry_run and any(r.rows_deleted for r in reports):
        audit.append(platform.db, actor=actor, action="retention.archived", details={
            r.dataset: {"rows_archived": r.rows_archived, "rows_deleted": r.rows_deleted, "files": len(r.files)}
            for r in reports})
    return result
