"""Interaction events → validated, consent-filtered daily aggregates, rebuilt one UTC day at a time.

Reading is columnar: the database extracts the few payload fields analytics uses with its
own JSON functions (a malformed payload becomes a typed NULL, not a Python exception) and
each hour of events reaches Arrow without a Python object per row (ADBC on SQLite, COPY as CSV
on PostgreSQL); every step after that is an Arrow or pandas vector operation. The same functions accept an Arrow table in the same schema
(``EVENT_SCHEMA``), which is how events arriving outside the database, and the benchmark's
Parquet path, are aggregated.

Every event read is accounted for exactly once: aggregated, excluded (its subject may not be
processed for analytics) or quarantined with a reason. ``daily_engagement_runs`` records
the three counts, and the asset check reconciles them with the raw table.

A day is owned by its materialization: re-running it deletes the day's aggregates, top
queries and quarantine rows, then writes them again in one transaction, so backfills,
retries and late events converge to the same result. Once retention has deleted a day's raw
events, the day is final and a re-run leaves it untouched (it would otherwise write zeros).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from adbc_driver_sqlite import dbapi as adbc_sqlite

from encaptio_data.analytics.anonymize import country_of_locale, pseudonym_key, pseudonymize
from encaptio_data.db.enums import ConsentPurpose, EventType
from encaptio_data.db.models import (
    EVENT_FREE_TEXT,
    AnalyticsQuarantine,
    Capsule,
    DailyEngagement,
    DailyEngagementRun,
    DailyTopQuery,
    InteractionEvent,
    User,
)
from encaptio_data.db.sealing import SealedFields, is_sealed, normalize_text, text_indexer
from encaptio_data.db.session import SQLITE_BUSY_TIMEOUT_MS, Database
from encaptio_data.errors import IntegrityError
from encaptio_data.keys import KeyDestroyedError, KeyStore
from encaptio_data.platform import Platform
from encaptio_data.privacy.consent import excluded_users

log = logging.getLogger(__name__)

# The columns analytics reads from an event; JSON kinds use PostgreSQL's vocabulary
# (object, array, string, number, boolean, null) on both engines, plus "invalid".
EVENT_SCHEMA = pa.schema([
    ("event_id", pa.string()),  # uuid as 32 lower-case hex digits
    ("capsule_id", pa.string()),
    ("user_id", pa.string()),  # null for anonymous visitors
    ("session_id", pa.string()),
    ("event_type", pa.string()),
    ("occurred_at", pa.timestamp("us", tz="UTC")),
    ("payload_kind", pa.string()),
    ("seconds", pa.float64()),  # payload.seconds of dwell events, when a number
    # The free text of an event (db/sealing.py) is counted by its blind index, ``text_index``;
    # the text itself (sealed under the user's key, or plain for an anonymous session) stays in
    # the database and is fetched only for the few events whose text is needed. ``query`` and
    # ``question`` are read only where no index was stored (a row written around the sealing
    # path), to be indexed here.
    ("query", pa.string()),  # payload.query of a search without query_index, when a string
    ("question", pa.string()),  # payload.question of a chat turn without question_index, when a string
    ("text_index", pa.string()),
])

# Clock skew we tolerate from clients before calling a timestamp "in the future".
FUTURE_SKEW = timedelta(minutes=5)
# Older than this is a broken clock or a replayed archive, not usage to report.
MAX_AGE = timedelta(days=730)
# A dwell longer than a day is a stuck client, not attention.
MAX_DWELL_SECONDS = 86_400.0
TOP_QUERIES_PER_CAPSULE = 20
DEFAULT_K = 5
PURPOSE = ConsentPurpose.ANALYTICS

_EVENT_TYPES = pa.array([e.value for e in EventType])
_EVENT_PAYLOAD: SealedFields = InteractionEvent.__table__.c.payload.type


# -- reading ------------------------------------------------------------------------------
#
# Fetching events through a Python driver would create ten Python objects per event, which at
# 10M events costs more than everything else put together, so neither engine does. SQLite is
# read through Arrow's ADBC driver, which builds Arrow arrays in C straight from the result (and
# carries a SQLite with JSON parse caching, so the guarded extractions below parse a payload
# about once); PostgreSQL renders each window as CSV (COPY ... TO STDOUT) for Arrow's CSV
# reader. Either way the database extracts the few payload fields with its own JSON functions,
# so a malformed payload becomes a typed NULL, not a Python exception. Free text has its line
# breaks turned into spaces (same length, so PII offsets into it stay valid). A stored time
# that is not one becomes NULL, and its event is quarantined.


def _sqlite_kind(expression: str) -> str:
    return (f"CASE {expression} WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' "
            f"WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' ELSE {expression} END")


# SQLite's json functions raise on invalid JSON (a NaN written by a careless client is enough),
# so every extraction is guarded by json_valid; CASE evaluates lazily.
_SQLITE_PAYLOAD_FIELDS = f"""
  CASE WHEN json_valid(payload) THEN {_sqlite_kind('json_type(payload)')} ELSE 'invalid' END,
  CASE WHEN event_type = 'dwell' AND json_valid(payload) AND json_type(payload, '$.seconds') IN ('integer', 'real')
       THEN CAST(json_extract(payload, '$.seconds') AS REAL) END,
  CASE WHEN event_type = 'search' AND json_valid(payload) AND json_type(payload, '$.query') = 'text'
            AND json_type(payload, '$.query_index') IS NOT 'text'
       THEN json_extract(payload, '$.query') END,
  CASE WHEN event_type = 'chat_turn' AND json_valid(payload) AND json_type(payload, '$.question') = 'text'
            AND json_type(payload, '$.question_index') IS NOT 'text'
       THEN json_extract(payload, '$.question') END,
  CASE WHEN event_type = 'search' AND json_valid(payload) AND json_type(payload, '$.query_index') = 'text'
       THEN json_extract(payload, '$.query_index')
       WHEN event_type = 'chat_turn' AND json_valid(payload) AND json_type(payload, '$.question_index') = 'text'
       THEN json_extract(payload, '$.question_index') END
FROM interaction_events WHERE occurred_at >= ? AND occurred_at < ?
"""
# Every column is cast to the type it is read as: SQLite columns hold whatever was written, and
# a row written around the ORM must not change a column's type for its whole window.
_SQLITE_ARROW = ("SELECT CAST(id AS TEXT), CAST(capsule_id AS TEXT), CAST(user_id AS TEXT), "
                 "CAST(session_id AS TEXT), CAST(event_type AS TEXT), CAST(occurred_at AS TEXT),"
                 + _SQLITE_PAYLOAD_FIELDS)
# The same fields through Python's sqlite3, for a window the ADBC read cannot take (stored
# bytes that are not UTF-8, say).
_SQLITE_ROWS = ("SELECT id, capsule_id, user_id, session_id, event_type, "
                # strftime gives NULL for text that is not a time, and rounds fractional seconds, so
                # it gets the whole seconds only; characters 21-26 are the microseconds.
                "strftime('%s', substr(occurred_at, 1, 19)) * 1000000 + CAST(substr(occurred_at, 21, 6) AS INTEGER),"
                + _SQLITE_PAYLOAD_FIELDS)
# ADBC's SQLite driver infers each column's type from the first batch: one batch per window lets
# it see every value (an hour holds about 420k events at 10M a day).
_ADBC_BATCH_ROWS = 1 << 22
# The format SQLAlchemy stores times in on SQLite ('YYYY-MM-DD HH:MM:SS.ffffff', UTC).
_SQLITE_TIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$"
_FREE_TEXT = ("session_id", "query", "question")


def _postgres_text(expression: str) -> str:
    return f"translate({expression}, E'\\n\\r', '  ')"


_POSTGRES_WINDOW = f"""
COPY (SELECT replace(id::text, '-', ''), replace(capsule_id::text, '-', ''), replace(user_id::text, '-', ''),
  {_postgres_text("session_id")}, event_type,
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
  jsonb_typeof(payload::jsonb),
  CASE WHEN event_type = 'dwell' AND jsonb_typeof(payload::jsonb -> 'seconds') = 'number'
       THEN (payload::jsonb ->> 'seconds')::float8 END,
  CASE WHEN event_type = 'search' AND jsonb_typeof(payload::jsonb -> 'query') = 'string'
            AND jsonb_typeof(payload::jsonb -> 'query_index') IS DISTINCT FROM 'string'
       THEN {_postgres_text("payload::jsonb ->> 'query'")} END,
  CASE WHEN event_type = 'chat_turn' AND jsonb_typeof(payload::jsonb -> 'question') = 'string'
            AND jsonb_typeof(payload::jsonb -> 'question_index') IS DISTINCT FROM 'string'
       THEN {_postgres_text("payload::jsonb ->> 'question'")} END,
  CASE WHEN event_type = 'search' AND jsonb_typeof(payload::jsonb -> 'query_index') = 'string'
       THEN payload::jsonb ->> 'query_index'
       WHEN event_type = 'chat_turn' AND jsonb_typeof(payload::jsonb -> 'question_index') = 'string'
       THEN payload::jsonb ->> 'question_index' END
FROM interaction_events WHERE occurred_at >= %s AND occurred_at < %s) TO STDOUT (FORMAT csv, QUOTE '''')
"""

# NULL is an unquoted empty field, the empty string a quoted one.
_CSV_READ = pa_csv.ReadOptions(column_names=EVENT_SCHEMA.names, block_size=16 << 20)
_CSV_PARSE = pa_csv.ParseOptions(quote_char="'", double_quote=True)
_CSV_CONVERT = pa_csv.ConvertOptions(
    column_types={f.name: pa.timestamp("us") if f.name == "occurred_at" else f.type for f in EVENT_SCHEMA},
    null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False)
# Windows of an hour keep each window's result to tens of megabytes at 10M events a day, and
# give the two readers something to share.
_WINDOW = timedelta(hours=1)
_READERS = 2


def _sqlite_bounds(start: datetime, end: datetime) -> list[str]:
    # Compared as text, in the exact format SQLAlchemy stores.
    return [t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") for t in (start, end)]


def _without_line_breaks(text: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return pc.replace_substring_regex(text, "[\r\n]", " ")


def _sqlite_times(text: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Stored time text → UTC timestamps; anything not in the stored format → NULL."""
    well_formed = _false_if_null(pc.match_substring_regex(text, _SQLITE_TIME))
    text = pc.if_else(well_formed, text, pa.scalar(None, pa.string()))
    seconds = pc.strptime(pc.utf8_slice_codeunits(text, 0, 19), format="%Y-%m-%d %H:%M:%S", unit="us",
                          error_is_null=True)
    micros = pc.cast(pc.utf8_slice_codeunits(text, 20, 26), pa.int64()).cast(pa.duration("us"))
    return pc.add(seconds, micros).cast(pa.timestamp("us", tz="UTC"))


def _sqlite_arrow_window(db: Database, start: datetime, end: datetime) -> pa.Table:
    path = quote(str(sa.make_url(db.url).database))
    with adbc_sqlite.connect(f"file:{path}?mode=ro") as conn, conn.cursor() as cursor:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(_ADBC_BATCH_ROWS)})
        cursor.execute(_SQLITE_ARROW, _sqlite_bounds(start, end))
        raw = cursor.fetch_arrow_table()
    # SQLite casts stored bytes to TEXT unchecked: invalid UTF-8 must fail here (and send the
    # window to the row read), not somewhere downstream.
    raw.validate(full=True)
    columns = []
    for column, field in zip(raw.columns, EVENT_SCHEMA, strict=True):
        if field.name == "occurred_at":
            column = _sqlite_times(column.cast(pa.string()))
        else:
            column = column.cast(field.type)  # a window where a column is all NULL reads it as int64
        columns.append(_without_line_breaks(column) if field.name in _FREE_TEXT else column)
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA)


def _rows_window(db: Database, start: datetime, end: datetime) -> pa.Table:
    with db.engine.connect() as conn:
        rows = conn.connection.driver_connection.execute(_SQLITE_ROWS, _sqlite_bounds(start, end)).fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(EVENT_SCHEMA)

    def array(values: tuple[Any, ...], field: pa.Field) -> pa.Array:
        if field.type == pa.string():  # whatever was stored there, as text
            text = pa.array([None if v is None else str(v) for v in values], pa.string())
            return _without_line_breaks(text) if field.name in _FREE_TEXT else text
        return pa.array(values, pa.float64() if field.name == "seconds" else pa.int64())

    arrays = [array(values, field) for values, field in zip(columns, EVENT_SCHEMA, strict=True)]
    return _with_timestamps(pa.Table.from_arrays(arrays, names=EVENT_SCHEMA.names))


def _with_timestamps(table: pa.Table) -> pa.Table:
    return table.set_column(EVENT_SCHEMA.get_field_index("occurred_at"), "occurred_at",
                            table["occurred_at"].cast(pa.timestamp("us", tz="UTC")))


def _postgres_window(db: Database, start: datetime, end: datetime) -> pa.Table:
    buffer = bytearray()
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(_POSTGRES_WINDOW, (start, end)) as copy:
            for block in copy:
                buffer += block
        raw.rollback()  # COPY opened a transaction; nothing was written
    if not buffer:
        return EVENT_SCHEMA.empty_table()
    # PostgreSQL quotes every field itself: a parse failure is a real bug, and is raised.
    return _with_timestamps(pa_csv.read_csv(pa.py_buffer(bytes(buffer)), read_options=_CSV_READ,
                                            parse_options=_CSV_PARSE, convert_options=_CSV_CONVERT))


def _read_window(db: Database, start: datetime, end: datetime) -> pa.Table:
    if db.dialect != "sqlite":
        return _postgres_window(db, start, end)
    try:
        return _sqlite_arrow_window(db, start, end)
    except (pa.ArrowInvalid, adbc_sqlite.Error) as exc:
        log.warning("analytics: reading the events of %s to %s row by row: %s", start, end,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return _rows_window(db, start, end)


def load_events(db: Database, start: datetime, end: datetime) -> pa.Table:
    """Raw events with ``start <= occurred_at < end`` in ``EVENT_SCHEMA``, read window by window.

    Two windows are read at a time: the database renders one while Arrow parses another, and
    both release the GIL, so the two cores are used.
    """
    windows = []
    cursor = start
    while cursor < end:
        windows.append((cursor, min(cursor + _WINDOW, end)))
        cursor += _WINDOW
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        tables = list(pool.map(lambda w: _read_window(db, *w), windows))
    return pa.concat_tables([EVENT_SCHEMA.empty_table(), *tables]).cast(EVENT_SCHEMA)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def capsule_organizations(db: Database) -> dict[str, str]:
    """Capsule id (hex) → organization id (hex) for every capsule, deleted ones included.

    A capsule soft-deleted today still had real visitors last week: its events are valid
    history, not unknown capsules.
    """
    with db.session() as session:
        return {c.hex: o.hex for c, o in session.execute(sa.select(Capsule.id, Capsule.organization_id))}


# -- validation and consent ---------------------------------------------------------------

# Reasons in priority order: an event is quarantined under the first that applies.
QUARANTINE_REASONS = ("duplicate_event", "unknown_event_type", "unknown_capsule", "missing_session",
                      "future_timestamp", "stale_timestamp", "malformed_payload")


@dataclass
class UsableEvents:
    """The outcome of reading a window: what analytics may use, and the account of the rest.

    ``valid`` has no user ids: ``user_ref`` is the keyed pseudonym (null for anonymous
    visitors) and ``subject`` the unit of privacy (the pseudonym, or the session of an
    anonymous visitor), so nothing downstream can leak or join on a raw id.
    """

    valid: pa.Table
    quarantined: pa.Table  # event_id, capsule_id, event_type, occurred_at, reason, detail
    events_read: int
    excluded_events: int
    excluded_subjects: int
    excluded_views: int
    key_id: str

    def quarantine_counts(self) -> dict[str, int]:
        if self.quarantined.num_rows == 0:
            return {}
        counts = pc.value_counts(self.quarantined["reason"])
        return {row["values"]: row["counts"] for row in counts.to_pylist()}

    def quarantined_views(self) -> int:
        return int(pc.sum(pc.equal(self.quarantined["event_type"], "view")).as_py() or 0)


def _false_if_null(mask: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return pc.fill_null(mask, False)


def _duplicates(event_ids: pa.ChunkedArray) -> pa.Array:
    """True for every repeat of an event id after its first occurrence (at-least-once delivery)."""
    if pc.count_distinct(event_ids).as_py() == len(event_ids):  # the usual case, decided without pandas
        return pa.array(np.zeros(len(event_ids), dtype=bool))
    return pa.array(pd.Series(event_ids.to_numpy(zero_copy_only=False)).duplicated(keep="first").to_numpy())


_MALFORMED_DETAILS = ("payload is not valid JSON", "payload is not a JSON object",
                      "dwell seconds missing or not a number", f"dwell seconds outside [0, {int(MAX_DWELL_SECONDS)}]",
                      "search without a text query", "chat turn without a text question")
_DETAILS = {
    "duplicate_event": "event id already seen in this batch",
    "unknown_event_type": "event type is not one of " + ", ".join(e.value for e in EventType),
    "unknown_capsule": "no such capsule",
    "missing_session": "no session id",
    "future_timestamp": f"occurred more than {int(FUTURE_SKEW.total_seconds() // 60)} minutes after the run's clock",
    "stale_timestamp": f"occurred more than {MAX_AGE.days} days before the run's clock",
}


def _malformed_masks(events: pa.Table) -> list[pa.ChunkedArray]:
    """One mask per entry of ``_MALFORMED_DETAILS``, in that order."""
    event_type = events["event_type"]
    payload_kind = pc.fill_null(events["payload_kind"], "missing")
    seconds = events["seconds"]
    is_dwell = _false_if_null(pc.equal(event_type, "dwell"))
    # A stored index stands for a text the writer checked; otherwise the text itself must be there.
    without_text = pc.and_(pc.is_null(_event_text(events)), pc.is_null(events["text_index"]))
    return [
        pc.equal(payload_kind, "invalid"),
        pc.not_equal(payload_kind, "object"),
        pc.and_(is_dwell, pc.is_null(seconds, nan_is_null=True)),
        pc.and_(is_dwell, _false_if_null(pc.or_(pc.less(seconds, 0.0), pc.greater(seconds, MAX_DWELL_SECONDS)))),
        pc.and_(_false_if_null(pc.equal(event_type, "search")), without_text),
        pc.and_(_false_if_null(pc.equal(event_type, "chat_turn")), without_text),
    ]


def _quarantine_masks(events: pa.Table, known_capsules: pa.Array, now: datetime, *,
                      unique_ids: bool = False) -> list[tuple[str, pa.ChunkedArray]]:
    """(reason, mask) per reason, in ``QUARANTINE_REASONS`` order.

    ``unique_ids``: the events come from the database, whose primary key already rules out
    duplicates, so the (costly) duplicate search is skipped.
    """
    event_type = events["event_type"]
    occurred = events["occurred_at"]
    session = events["session_id"]
    malformed = _malformed_masks(events)
    any_malformed = malformed[0]
    for mask in malformed[1:]:
        any_malformed = pc.or_(any_malformed, mask)
    no_duplicates = pa.array(np.zeros(events.num_rows, dtype=bool))
    return [
        ("duplicate_event", no_duplicates if unique_ids else _duplicates(events["event_id"])),
        ("unknown_event_type", pc.invert(_false_if_null(pc.is_in(event_type, value_set=_EVENT_TYPES)))),
        ("unknown_capsule", pc.invert(_false_if_null(pc.is_in(events["capsule_id"], value_set=known_capsules)))),
        ("missing_session", pc.or_(pc.is_null(session), _false_if_null(pc.equal(pc.utf8_length(session), 0)))),
        ("future_timestamp", _false_if_null(pc.greater(occurred, pa.scalar(now + FUTURE_SKEW, occurred.type)))),
        ("stale_timestamp", pc.or_(pc.is_null(occurred),
                                   _false_if_null(pc.less(occurred, pa.scalar(now - MAX_AGE, occurred.type))))),
        ("malformed_payload", any_malformed),
    ]


def _first_true(masks: list[pa.ChunkedArray | pa.Array], labels: Iterable[str]) -> pa.Array:
    """Per row, the label of the first mask that is true (rows where none is true get null)."""
    labels = list(labels)
    rows = len(masks[0])
    return pc.case_when(pc.make_struct(*masks, field_names=[str(i) for i in range(len(masks))]),
                        *[pa.repeat(pa.scalar(label), rows) for label in labels])


def _quarantine_table(events: pa.Table, checks: list[tuple[str, pa.ChunkedArray]],
                      selected: pa.ChunkedArray) -> pa.Table:
    """The ``selected`` rows with their reason and detail, labelled on that (small) subset only."""
    bad = events.filter(selected)
    masks = [pc.filter(mask, selected) for _, mask in checks]
    reason = _first_true(masks, [r for r, _ in checks])
    if bad.num_rows:
        malformed_detail = _first_true(_malformed_masks(bad), _MALFORMED_DETAILS)
        detail = pc.if_else(pc.equal(reason, "malformed_payload"), malformed_detail,
                            pc.fill_null(_first_true(masks, [_DETAILS.get(r, r) for r, _ in checks]), ""))
    else:
        detail = pa.array([], pa.string())
    return pa.table({"event_id": bad["event_id"], "capsule_id": bad["capsule_id"], "event_type": bad["event_type"],
                     "occurred_at": bad["occurred_at"], "reason": reason, "detail": detail})


def split_events(events: pa.Table, *, known_capsules: Iterable[str], excluded: Iterable[str], keys_dir: Path,
                 now: datetime, user_countries: dict[str, str] | None = None,
                 unique_ids: bool = False) -> UsableEvents:
    """Exclude, validate and pseudonymize: the one path from raw events to usable ones.

    Events of excluded subjects are only counted: never quarantined (a record about them is
    still processing) and never aggregated. ``user_countries`` (user id hex → country) adds a
    ``country`` column, the only attribute of a user that survives into analytics.
    """
    if "text_index" not in events.column_names:  # a table from before the index (an archive, a test)
        events = events.append_column("text_index", pa.nulls(events.num_rows, pa.string()))
    events = events.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)
    read = events.num_rows
    excluded_ids = pa.array(list(excluded), pa.string())
    is_excluded = _false_if_null(pc.is_in(events["user_id"], value_set=excluded_ids))
    excluded_rows = events.select(["user_id", "event_type"]).filter(is_excluded)
    kept = pc.invert(is_excluded)

    # Masks over every row, then one filter for each outcome: copying 10M rows once per step
    # (exclude, then validate) would cost more than the checks themselves.
    checks = _quarantine_masks(events, pa.array(list(known_capsules), pa.string()), now, unique_ids=unique_ids)
    any_bad = checks[0][1]
    for _, mask in checks[1:]:
        any_bad = pc.or_(any_bad, mask)
    quarantined = _quarantine_table(events, checks, pc.and_(any_bad, kept))
    events = events.filter(pc.and_(kept, pc.invert(any_bad)))

    valid = _with_text_index(events, KeyStore(keys_dir))
    key = pseudonym_key(keys_dir)
    user_ref = pseudonymize(valid["user_id"], key)
    subject = pc.coalesce(user_ref, pc.binary_join_element_wise("s", valid["session_id"], ":"))
    if user_countries is not None:
        known = pa.array(list(user_countries), pa.string())
        countries = pa.array(list(user_countries.values()), pa.string())
        country = pc.fill_null(pc.take(countries, pc.index_in(valid["user_id"], value_set=known)), "unknown")
        valid = valid.append_column("country", country)
    valid = valid.drop_columns(["user_id"]).append_column("user_ref", user_ref).append_column("subject", subject)
    return UsableEvents(
        valid=valid, quarantined=quarantined, events_read=read, excluded_events=excluded_rows.num_rows,
        excluded_subjects=len(pc.unique(excluded_rows["user_id"])),
        excluded_views=int(pc.sum(pc.equal(excluded_rows["event_type"], "view")).as_py() or 0), key_id=key.key_id)


def excluded_subject_ids(db: Database, purpose: ConsentPurpose = PURPOSE) -> set[str]:
    """Hex ids of users whose data may not be processed for ``purpose`` right now."""
    with db.session() as session:
        return {user_id.hex for user_id in excluded_users(session, purpose.value)}


def user_countries(db: Database, excluded: set[str]) -> dict[str, str]:
    """User id (hex) → country from the locale in the user's metadata, for users not excluded."""
    with db.session() as session:
        rows = session.execute(sa.select(User.id, User.metadata_)).all()
    return {user_id.hex: country_of_locale((metadata or {}).get("locale"))
            for user_id, metadata in rows if user_id.hex not in excluded}


def read_usable_events(platform: Platform, start: datetime, end: datetime, *, now: datetime | None = None,
                       events: pa.Table | None = None, with_country: bool = False) -> UsableEvents:
    """Events in [start, end) ready for analytics: read (or given), excluded, validated, pseudonymized."""
    now = now or datetime.now(UTC)
    unique_ids = events is None
    events = load_events(platform.db, start, end) if events is None else events
    excluded = excluded_subject_ids(platform.db)
    return split_events(events, known_capsules=capsule_organizations(platform.db).keys(), excluded=excluded,
                        keys_dir=platform.settings.keys_dir, now=now, unique_ids=unique_ids,
                        user_countries=user_countries(platform.db, excluded) if with_country else None)


# -- aggregation --------------------------------------------------------------------------


def _flag(valid: pa.Table, event_type: EventType) -> pa.ChunkedArray:
    return pc.equal(valid["event_type"], event_type.value).cast(pa.int64())


def aggregate_engagement(valid: pa.Table) -> pd.DataFrame:
    """One row per capsule: counts, distinct sessions and users, dwell total and median."""
    if valid.num_rows == 0:
        return pd.DataFrame(columns=["capsule_id", "events", "views", "unique_sessions", "searches", "chat_turns",
                                     "dwell_events", "completions", "total_dwell_seconds", "median_dwell_seconds",
                                     "unique_users"])
    is_dwell = pc.equal(valid["event_type"], EventType.DWELL.value)
    table = pa.table({
        "capsule_id": valid["capsule_id"], "session_id": valid["session_id"], "user_ref": valid["user_ref"],
        "view": _flag(valid, EventType.VIEW), "search": _flag(valid, EventType.SEARCH),
        "chat": _flag(valid, EventType.CHAT_TURN), "dwell": _flag(valid, EventType.DWELL),
        "completion": _flag(valid, EventType.COMPLETION),
        "dwell_seconds": pc.if_else(is_dwell, pc.fill_null(valid["seconds"], 0.0), 0.0),
    })
    grouped = table.group_by("capsule_id").aggregate([
        ("capsule_id", "count"), ("view", "sum"), ("session_id", "count_distinct"), ("search", "sum"),
        ("chat", "sum"), ("dwell", "sum"), ("completion", "sum"), ("dwell_seconds", "sum"),
        ("user_ref", "count_distinct"),
    ]).to_pandas()
    frame = grouped.rename(columns={
        "capsule_id_count": "events", "view_sum": "views", "session_id_count_distinct": "unique_sessions",
        "search_sum": "searches", "chat_sum": "chat_turns", "dwell_sum": "dwell_events",
        "completion_sum": "completions", "dwell_seconds_sum": "total_dwell_seconds",
        "user_ref_count_distinct": "unique_users"})
    dwell = valid.filter(is_dwell).select(["capsule_id", "seconds"]).to_pandas()
    medians = dwell.groupby("capsule_id")["seconds"].median().rename("median_dwell_seconds")
    frame = frame.merge(medians, how="left", left_on="capsule_id", right_index=True)
    return frame.sort_values("capsule_id").reset_index(drop=True)


def _event_text(events: pa.Table) -> pa.ChunkedArray:
    """The query of a search or the question of a chat turn (the read leaves the other NULL)."""
    return pc.coalesce(events["query"], events["question"])


def opened_text(keys: KeyStore, field_name: str, value: str | None) -> str | None:
    """An event's free text (``field_name``: query or question) in the clear; None once its
    subject's key is destroyed (or the value is damaged, or not text)."""
    try:
        text = _EVENT_PAYLOAD.open_field(keys, field_name, value)
    except (KeyDestroyedError, IntegrityError):
        return None
    return text if isinstance(text, str) else None


def _with_text_index(events: pa.Table, keys: KeyStore) -> pa.Table:
    """Fill in the blind index of texts written around the sealing path, once per distinct text."""
    text = _event_text(events)
    missing = pc.and_(pc.is_null(events["text_index"]), pc.is_valid(text))
    if not pc.any(missing).as_py():
        return events
    indexer = text_indexer(keys)
    distinct = pc.unique(text.filter(missing))
    indexes = []
    for value in distinct.to_pylist():
        # A sealed text without its index is opened for it; its field name is in the value's
        # associated data, so either field is tried.
        plain = value if not is_sealed(value) else next(
            (t for name in EVENT_FREE_TEXT if (t := opened_text(keys, name, value)) is not None), None)
        indexes.append(None if plain is None else indexer(plain))
    filled = pc.take(pa.array(indexes, pa.string()), pc.index_in(text, value_set=distinct))
    column = events.schema.get_field_index("text_index")
    return events.set_column(column, "text_index", pc.coalesce(events["text_index"], filled))


StoredTexts = Callable[[list[str]], dict[str, tuple[str, Any]]]


def stored_texts(db: Database) -> StoredTexts:
    """Event id (hex) → (field, stored value) of the query or question, read from the database
    for the few events whose text is needed (the day's read carries only the blind index)."""
    table = InteractionEvent.__table__

    def fetch(event_ids: list[str]) -> dict[str, tuple[str, Any]]:
        ids = []
        for value in event_ids:
            try:
                ids.append(uuid.UUID(hex=value))
            except (TypeError, ValueError):  # an id written around the ORM: nothing to fetch by
                continue
        found: dict[str, tuple[str, Any]] = {}
        with db.engine.connect() as conn:
            for offset in range(0, len(ids), 1_000):
                rows = conn.execute(sa.select(table.c.id, sa.cast(table.c.payload, sa.Text))
                                    .where(table.c.id.in_(ids[offset:offset + 1_000])))
                for event_id, text in rows:
                    try:
                        payload = json.loads(text)
                    except (TypeError, ValueError):
                        continue
                    name = next((n for n in EVENT_FREE_TEXT if isinstance(payload, dict) and n in payload), None)
                    if name is not None:
                        found[event_id.hex] = (name, payload[name])
        return found
    return fetch


def readable_texts(events: pa.Table, keys: KeyStore, indexes: Iterable[str], *,
                   stored: StoredTexts | None = None, tries: int = 8) -> dict[str, str]:
    """Blind index → the text behind it, opened from one of the events carrying it.

    One event per index is read (from ``events`` when it carries the text, else through
    ``stored``) and opened; a few more for an index whose first event belongs to a subject
    erased since. Never the day's millions.
    """
    wanted = pa.array(sorted(set(indexes)), pa.string())
    if len(wanted) == 0:
        return {}
    carrying = events.filter(_false_if_null(pc.is_in(events["text_index"], value_set=wanted)))
    carrying = pa.table({"event_id": carrying["event_id"], "text_index": carrying["text_index"],
                         "text": _event_text(carrying),
                         "field": pc.if_else(pc.is_valid(carrying["query"]), "query", "question"),
                         "row": pa.array(np.arange(carrying.num_rows))})
    texts: dict[str, str] = {}

    def read(rows: pa.Table) -> None:
        in_table = {i: (f, t) for i, t, f in zip(rows["event_id"].to_pylist(), rows["text"].to_pylist(),
                                                rows["field"].to_pylist(), strict=True) if t is not None}
        missing = [i for i in rows["event_id"].to_pylist() if i not in in_table]
        found = {**(stored(missing) if stored is not None and missing else {}), **in_table}
        for event_id, index in zip(rows["event_id"].to_pylist(), rows["text_index"].to_pylist(), strict=True):
            if index in texts or event_id not in found:
                continue
            name, value = found[event_id]
            plain = opened_text(keys, name, value) if is_sealed(value) else value
            if isinstance(plain, str):
                texts[index] = plain

    first = carrying.group_by("text_index").aggregate([("row", "min")])
    read(carrying.take(first["row_min"]))
    unread = pa.array([i for i in wanted.to_pylist() if i not in texts], pa.string())
    if len(unread):
        rest = carrying.filter(pc.is_in(carrying["text_index"], value_set=unread)).to_pandas()
        read(pa.Table.from_pandas(rest.groupby("text_index", sort=False).head(tries), preserve_index=False))
    return texts


def top_queries(valid: pa.Table, keys: KeyStore, *, stored: StoredTexts | None = None, k: int = DEFAULT_K,
                limit: int = TOP_QUERIES_PER_CAPSULE) -> pd.DataFrame:
    """Per capsule, the most frequent normalised queries issued by at least ``k`` distinct subjects.

    Subjects, not sessions: one signed-in person opening five sessions is still one person.
    Queries are counted by their blind index; only the texts that make a capsule's list (and
    those tied with its last entry) are opened.
    """
    searches = valid.filter(pc.and_(pc.equal(valid["event_type"], EventType.SEARCH.value),
                                    pc.is_valid(valid["text_index"])))
    columns = ["capsule_id", "query_norm", "count", "subjects", "rank"]
    if searches.num_rows == 0:
        return pd.DataFrame(columns=columns)
    table = pa.table({"capsule_id": searches["capsule_id"], "text_index": searches["text_index"],
                      "subject": searches["subject"]})
    grouped = table.group_by(["capsule_id", "text_index"]).aggregate([("subject", "count"),
                                                                      ("subject", "count_distinct")])
    grouped = grouped.filter(pc.greater_equal(grouped["subject_count_distinct"], k)).to_pandas()
    grouped = grouped.rename(columns={"subject_count": "count", "subject_count_distinct": "subjects"})
    if grouped.empty:
        return pd.DataFrame(columns=columns)
    grouped = grouped.sort_values(["capsule_id", "count"], ascending=[True, False], kind="stable")
    position = grouped.groupby("capsule_id").cumcount()
    last_count = grouped["count"].where(position == limit - 1).groupby(grouped["capsule_id"]).transform("max")
    grouped = grouped.loc[last_count.isna() | (grouped["count"] >= last_count)]
    texts = readable_texts(searches, keys, grouped["text_index"], stored=stored)
    grouped = grouped.assign(query_norm=grouped["text_index"].map(
        lambda index: normalize_text(texts[index]) if index in texts else ""))
    grouped = grouped.loc[grouped["query_norm"] != ""]
    grouped = grouped.sort_values(["capsule_id", "count", "query_norm"], ascending=[True, False, True])
    grouped["rank"] = grouped.groupby("capsule_id").cumcount() + 1
    return grouped.loc[grouped["rank"] <= limit, columns].reset_index(drop=True)


def _without_pii(queries: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop published queries that contain PII: a k-threshold protects the searchers, not whoever
    a query names (ten people searching one person's phone number is still that person's number)."""
    if queries.empty:
        return queries, 0
    from encaptio_data.analytics.pii import contains_pii

    verdicts = {query: not contains_pii(query) for query in queries["query_norm"].unique()}
    keep = queries["query_norm"].map(verdicts)
    return queries.loc[keep].reset_index(drop=True), int((~keep).sum())


# -- one day ------------------------------------------------------------------------------


@dataclass
class DayReport:
    day: str
    events_read: int = 0
    events_aggregated: int = 0
    events_quarantined: int = 0
    events_excluded: int = 0
    subjects_excluded: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    capsules: int = 0
    views: int = 0
    top_queries: int = 0
    top_queries_withheld_pii: int = 0
    pseudonym_key_id: str = ""
    frozen: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    preview: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _uuid(hex_value: str | None) -> uuid.UUID | None:
    return uuid.UUID(hex=hex_value) if hex_value else None


def _quarantine_rows(quarantined: pa.Table, day: date, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for row in quarantined.to_pylist():
        try:
            capsule = _uuid(row["capsule_id"])
        except ValueError:  # not even a uuid: keep the record, lose only the unusable reference
            capsule = None
        try:
            event_id = uuid.UUID(hex=row["event_id"])
        except (TypeError, ValueError):
            event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"encaptio:malformed-event-id:{row['event_id']}")
        rows.append({"id": uuid.uuid4(), "event_id": event_id, "day": day, "capsule_id": capsule,
                     "event_type": str(row["event_type"] or "")[:32], "reason": row["reason"],
                     "detail": row["detail"][:300], "occurred_at": row["occurred_at"], "quarantined_at": now})
    return rows


def materialize_day(platform: Platform, day: date, *, now: datetime | None = None, k: int = DEFAULT_K,
                    events: pa.Table | None = None) -> DayReport:
    """Rebuild one day's aggregates, top queries and quarantine (delete, then write, in one transaction).

    ``events`` replaces the database read with an Arrow table in ``EVENT_SCHEMA``.
    """
    now = now or datetime.now(UTC)
    report = DayReport(day=day.isoformat())
    db = platform.db
    with db.session() as session:
        run = session.get(DailyEngagementRun, day)
        if run is not None and run.raw_purged_at is not None:
            report.frozen = True
            _fill_from_run(report, run)
            return report

    started = time.perf_counter()
    start, end = day_bounds(day)
    raw = load_events(db, start, end) if events is None else events
    report.timings["read_s"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    organizations = capsule_organizations(db)
    usable = split_events(raw, known_capsules=organizations.keys(), excluded=excluded_subject_ids(db),
                          keys_dir=platform.settings.keys_dir, now=now, unique_ids=events is None)
    del raw  # the usable copy is all that is needed from here: halve the peak memory
    engagement = aggregate_engagement(usable.valid)
    queries, withheld = _without_pii(top_queries(usable.valid, KeyStore(platform.settings.keys_dir),
                                                 stored=stored_texts(db), k=k))
    report.timings["aggregate_s"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    engagement_rows = [{
        "day": day, "capsule_id": uuid.UUID(hex=r.capsule_id),
        "organization_id": uuid.UUID(hex=organizations[r.capsule_id]),
        "events": int(r.events), "views": int(r.views), "unique_sessions": int(r.unique_sessions),
        "searches": int(r.searches), "chat_turns": int(r.chat_turns), "dwell_events": int(r.dwell_events),
        "completions": int(r.completions), "total_dwell_seconds": float(r.total_dwell_seconds),
        "median_dwell_seconds": None if pd.isna(r.median_dwell_seconds) else float(r.median_dwell_seconds),
        "unique_users": int(r.unique_users), "computed_at": now,
    } for r in engagement.itertuples(index=False)]
    query_rows = [{"day": day, "capsule_id": uuid.UUID(hex=r.capsule_id), "query_norm": r.query_norm,
                   "count": int(r.count), "subjects": int(r.subjects), "rank": int(r.rank)}
                  for r in queries.itertuples(index=False)]
    quarantine_rows = _quarantine_rows(usable.quarantined, day, now)
    reasons = usable.quarantine_counts()
    run_row = {
        "day": day, "materialized_at": now, "events_read": usable.events_read,
        "events_aggregated": usable.valid.num_rows, "events_quarantined": usable.quarantined.num_rows,
        "events_excluded": usable.excluded_events, "subjects_excluded": usable.excluded_subjects, "top_query_k": k,
        "details": {"quarantine_reasons": reasons, "views_excluded": usable.excluded_views,
                    "views_quarantined": usable.quarantined_views(), "top_queries_withheld_pii": withheld,
                    "pseudonym_key_id": usable.key_id},
        "raw_purged_at": None,
    }
    with db.session() as session:
        # For backfills and re-execution, delete everything this day owns before writing it again.
        for model in (DailyEngagement, DailyTopQuery, AnalyticsQuarantine, DailyEngagementRun):
            session.execute(sa.delete(model).where(model.day == day))
        for model, rows in ((DailyEngagement, engagement_rows), (DailyTopQuery, query_rows),
                            (AnalyticsQuarantine, quarantine_rows), (DailyEngagementRun, [run_row])):
            for offset in range(0, len(rows), 5_000):
                session.execute(sa.insert(model), rows[offset:offset + 5_000])
    report.timings["write_s"] = round(time.perf_counter() - started, 3)

    report.events_read = usable.events_read
    report.events_aggregated = usable.valid.num_rows
    report.events_quarantined = usable.quarantined.num_rows
    report.events_excluded = usable.excluded_events
    report.subjects_excluded = usable.excluded_subjects
    report.quarantine_reasons = reasons
    report.capsules = len(engagement_rows)
    report.views = sum(r["views"] for r in engagement_rows)
    report.top_queries = len(query_rows)
    report.top_queries_withheld_pii = withheld
    report.pseudonym_key_id = usable.key_id
    report.preview = [{k: (str(v) if isinstance(v, (uuid.UUID, date)) else v) for k, v in row.items()
                       if k in ("capsule_id", "events", "views", "unique_sessions", "searches", "chat_turns",
                                "completions", "unique_users")} for row in engagement_rows[:10]]
    return report


def _fill_from_run(report: DayReport, run: DailyEngagementRun) -> None:
    report.events_read = run.events_read
    report.events_aggregated = run.events_aggregated
    report.events_quarantined = run.events_quarantined
    report.events_excluded = run.events_excluded
    report.subjects_excluded = run.subjects_excluded
    report.quarantine_reasons = dict(run.details.get("quarantine_reasons", {}))


# -- bookkeeping over days ----------------------------------------------------------------


def day_expression(db: Database) -> sa.ColumnElement[str]:
    column = InteractionEvent.__table__.c.occurred_at
    if db.dialect == "sqlite":
        return sa.func.substr(column, 1, 10)
    return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")


def raw_event_counts(db: Database, start: date | None = None, end: date | None = None) -> dict[date, int]:
    """Raw events per UTC day in [start, end)."""
    day = day_expression(db).label("day")
    query = sa.select(day, sa.func.count()).select_from(InteractionEvent.__table__).group_by(day)
    if start is not None:
        query = query.where(InteractionEvent.occurred_at >= day_bounds(start)[0])
    if end is not None:
        query = query.where(InteractionEvent.occurred_at < day_bounds(end)[0])
    with db.engine.connect() as conn:
        return {date.fromisoformat(d): int(n) for d, n in conn.execute(query)}


def event_days(db: Database) -> list[str]:
    """The days (ISO) that have raw events or a materialized aggregate: the partitions worth running."""
    with db.session() as session:
        materialized = set(session.scalars(sa.select(DailyEngagementRun.day)))
    return sorted(d.isoformat() for d in set(raw_event_counts(db)) | materialized)


def stale_days(db: Database, *, now: datetime | None = None) -> list[str]:
    """Days whose raw events changed since their aggregates were built (late events, erasures),
    and past days with events that were never aggregated. Today is left to its schedule."""
    today = (now or datetime.now(UTC)).date()
    with db.session() as session:
        runs = {r.day: r for r in session.scalars(sa.select(DailyEngagementRun))}
    counts = raw_event_counts(db, end=today)
    stale = {d for d, n in counts.items()
             if d not in runs or (runs[d].raw_purged_at is None and runs[d].events_read != n)}
    stale |= {d for d, r in runs.items() if r.raw_purged_at is None and d < today and d not in counts and r.events_read}
    return sorted(d.isoformat() for d in stale)


def reconcile_day(db: Database, day: date) -> dict[str, Any]:
    """Do the day's aggregates add up? Non-negative, and read = aggregated + quarantined + excluded,
    with the aggregates, the quarantine and (until retention) the raw table all agreeing."""
    with db.session() as session:
        run = session.get(DailyEngagementRun, day)
        if run is None:
            return {"passed": False, "reason": "day not materialized"}
        table = DailyEngagement.__table__.c
        totals = session.execute(sa.select(
            sa.func.coalesce(sa.func.sum(table.events), 0), sa.func.count(),
            sa.func.min(sa.func.min(table.views, table.searches, table.chat_turns, table.completions,
                                    table.unique_sessions, table.unique_users, table.dwell_events)
                        if db.dialect == "sqlite" else
                        sa.func.least(table.views, table.searches, table.chat_turns, table.completions,
                                      table.unique_sessions, table.unique_users, table.dwell_events)),
            sa.func.min(table.total_dwell_seconds),
        ).where(table.day == day)).one()
        quarantined = session.scalar(sa.select(sa.func.count()).select_from(AnalyticsQuarantine)
                                     .where(AnalyticsQuarantine.day == day))
        purged = run.raw_purged_at is not None
    raw = None if purged else raw_event_counts(db, day, day + timedelta(days=1)).get(day, 0)
    aggregated, rows, min_count, min_dwell = int(totals[0]), int(totals[1]), totals[2], totals[3]
    problems = []
    if rows and (min_count < 0 or min_dwell < 0):
        problems.append("negative aggregate")
    if aggregated != run.events_aggregated:
        problems.append(f"aggregates sum to {aggregated} events, the run aggregated {run.events_aggregated}")
    if quarantined != run.events_quarantined:
        problems.append(f"{quarantined} quarantine rows, the run quarantined {run.events_quarantined}")
    if run.events_read != run.events_aggregated + run.events_quarantined + run.events_excluded:
        problems.append("read != aggregated + quarantined + excluded")
    if raw is not None and raw != run.events_read:
        problems.append(f"the raw table now holds {raw} events for the day, the run read {run.events_read}: "
                        "re-materialize the partition")
    return {"passed": not problems, "problems": problems, "events_read": run.events_read,
            "events_aggregated": run.events_aggregated, "events_quarantined": run.events_quarantined,
            "events_excluded": run.events_excluded, "raw_events_now": raw, "aggregate_rows": rows,
            "raw_purged": purged}


def views_by_day(db: Database, end: date, days: int = 28) -> list[tuple[date, int]]:
    """Aggregated views per day for the ``days`` days up to and including ``end``, zeros filled in."""
    first = end - timedelta(days=days - 1)
    with db.session() as session:
        found = dict(session.execute(
            sa.select(DailyEngagement.day, sa.func.sum(DailyEngagement.views))
            .where(DailyEngagement.day >= first, DailyEngagement.day <= end).group_by(DailyEngagement.day)).all())
    return [(first + timedelta(days=i), int(found.get(first + timedelta(days=i), 0) or 0)) for i in range(days)]
