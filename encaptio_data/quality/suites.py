"""Great Expectations suites as code: one per core table or derived asset, over pandas frames.

GX 1.x has no maintained Dagster integration, and none is needed: an ephemeral context
(nothing on disk) holds one pandas datasource, one dataframe asset, one suite and one
validation definition per suite below, and each check hands its frame to ``validate``.
The frames are read from the stores by the loaders here, scoped to one capsule when the
check runs for a partition. Columns the model declares personal never leave in an example.

Analytics aggregates (daily engagement and what is derived from it) get their suite here
when those assets exist: a ``Suite`` with its expectations, a loader returning the
aggregate's frame, and an entry in ``catalog.CHECKS`` attaching it to its asset.
"""

from __future__ import annotations

import math
import re
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import sqlalchemy as sa
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from encaptio_data.accounts import _EMAIL
from encaptio_data.content.chunking import MODEL_MAX_TOKENS
from encaptio_data.content.embedding import DIMENSION
from encaptio_data.content.uploads import _EXACT_MIME_TYPES
from encaptio_data.db.enums import CapsuleStatus, ContentType, EventType, UserRole
from encaptio_data.db.models import Capsule, Chunk, Content, InteractionEvent, User, personal_columns
from encaptio_data.db.session import Database
from encaptio_data.errors import NotFoundError
from encaptio_data.integrity import CheckOutcome, VectorScan

DATASOURCE = "encaptio"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# What registration accepts: its exact types, and any image/* or video/* (metadata-only content).
KNOWN_MIME_PATTERN = ("^(?:" + "|".join(re.escape(m) for m in sorted(_EXACT_MIME_TYPES))
                      + r"|image/[\w.+-]+|video/[\w.+-]+)$")
NORM_TOLERANCE = 1e-3
# Clocks of the event producers drift; an event a few minutes ahead of ours is not from the future.
CLOCK_SKEW = timedelta(minutes=5)
# trim() alone strips only spaces on SQLite and PostgreSQL; a chunk of newlines is blank too.
WHITESPACE = " \t\n\r\f\v"
# A few rows for each failing expectation, so one with many failures does not hide the others.
ROWS_PER_EXPECTATION = 5
_PERSONAL = {table: frozenset(columns) for table, columns in personal_columns().items()}


@dataclass(frozen=True)
class Suite:
    name: str
    expectations: Callable[[], list[gxe.Expectation]]  # fresh objects: a GX suite owns the ones it is given
    personal: frozenset[str] = frozenset()
    # Values a check passes at validation time, e.g. "now" for expectations about the future.
    parameters: Callable[[], dict[str, Any]] = field(default=dict)


USERS = Suite(
    "users",
    lambda: [
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToMatchRegex(column="email", regex=_EMAIL.pattern),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["organization_id", "email"]),
        gxe.ExpectColumnValuesToBeInSet(column="role", value_set=[r.value for r in UserRole]),
    ],
    personal=_PERSONAL.get("users", frozenset()),
)

CAPSULES = Suite(
    "capsules",
    lambda: [
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=[s.value for s in CapsuleStatus]),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="updated_at", column_B="created_at", or_equal=True),
    ],
)

CONTENT = Suite(
    "content",
    lambda: [
        gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=SHA256_PATTERN),
        gxe.ExpectColumnValuesToBeBetween(column="size_bytes", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToMatchRegex(column="mime_type", regex=KNOWN_MIME_PATTERN),
        gxe.ExpectColumnValuesToBeInSet(column="type", value_set=[t.value for t in ContentType]),
    ],
)

# The columns analytics reads; the live table must still have every one of them.
EVENT_COLUMNS = [column.name for column in InteractionEvent.__table__.columns
                 if column.name not in _PERSONAL.get(InteractionEvent.__tablename__, ())]

INTERACTION_EVENTS = Suite(
    "interaction_events",
    lambda: [
        gxe.ExpectTableColumnsToMatchSet(column_set=EVENT_COLUMNS, exact_match=False),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=[e.value for e in EventType]),
        gxe.ExpectColumnValuesToNotBeNull(column="occurred_at"),
        gxe.ExpectColumnValuesToBeBetween(column="occurred_at", max_value={"$PARAMETER": "latest_allowed"}),
    ],
    parameters=lambda: {"latest_allowed": datetime.now(UTC) + CLOCK_SKEW},
)

CHUNKS = Suite(
    "chunks",
    lambda: [
        gxe.ExpectColumnValuesToBeBetween(column="text_chars", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="token_count", min_value=1, max_value=MODEL_MAX_TOKENS),
        gxe.ExpectColumnValuesToBeBetween(column="start_char", min_value=0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_char", column_B="start_char"),
    ],
)

EMBEDDINGS = Suite(
    "embeddings",
    lambda: [
        gxe.ExpectColumnValuesToBeInSet(column="dimension", value_set=[DIMENSION]),
        gxe.ExpectColumnValuesToBeInSet(column="nan_count", value_set=[0]),
        gxe.ExpectColumnValuesToBeBetween(column="norm", min_value=1 - NORM_TOLERANCE, max_value=1 + NORM_TOLERANCE),
    ],
)

ENGAGEMENT_COUNTS = ("events", "views", "unique_sessions", "searches", "chat_turns", "dwell_events", "completions",
                     "total_dwell_seconds")

DAILY_ENGAGEMENT = Suite(
    "daily_engagement",
    lambda: [
        gxe.ExpectColumnValuesToNotBeNull(column="capsule_id"),
        *(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0) for column in ENGAGEMENT_COUNTS),
        # Every view, search, chat turn, dwell and completion is an event of the day.
        *(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="events", column_B=column, or_equal=True)
          for column in ("views", "searches", "chat_turns", "dwell_events", "completions")),
    ],
)

SUITES = (USERS, CAPSULES, CONTENT, INTERACTION_EVENTS, CHUNKS, EMBEDDINGS, DAILY_ENGAGEMENT)


def ephemeral_context() -> AbstractDataContext:
    """A GX context in memory with every suite and its validation definition registered."""
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(),
                               progress_bars=ProgressBarsConfig(globally=False), analytics_enabled=False)
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = context.data_sources.add_pandas(DATASOURCE)
    for suite in SUITES:
        batch = source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe("whole")
        expectations = context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=suite.expectations()))
        context.validation_definitions.add(gx.ValidationDefinition(name=suite.name, data=batch, suite=expectations))
    return context


def validate(context: AbstractDataContext, suite: Suite, frame: pd.DataFrame) -> CheckOutcome:
    """Run the suite's validation definition on ``frame``; GX statistics plus the first failing rows."""
    with warnings.catch_warnings():
        # GX reads timezone-aware columns through Series.values, which pandas 3 deprecates; the
        # values it gets are UTC either way, and the fix is GX's to make.
        warnings.filterwarnings("ignore", category=getattr(pd.errors, "Pandas4Warning", FutureWarning),
                                message="Series.values")
        result = context.validation_definitions.get(suite.name).run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=suite.parameters(),
            result_format={"result_format": "SUMMARY", "unexpected_index_column_names": ["id"],
                           "partial_unexpected_count": ROWS_PER_EXPECTATION},
        )
    statistics: dict[str, int | float] = {"rows": len(frame)}
    statistics |= {name: _plain(value) for name, value in result.statistics.items()}
    examples: list[dict[str, Any]] = []
    for outcome in result.results:
        if outcome.success:
            continue
        config = outcome.expectation_config
        pair = [config.kwargs[name] for name in ("column_A", "column_B") if config.kwargs.get(name)]
        where = config.kwargs.get("column") or ", ".join(config.kwargs.get("column_list") or pair)
        head = {"expectation": config.type, "column": where or "(table)",
                "unexpected": _plain(outcome.result.get("unexpected_count", ""))}
        rows = outcome.result.get("partial_unexpected_index_list") or []
        if rows:
            examples += [head | {k: "(personal)" if k in suite.personal else _plain(v) for k, v in row.items()}
                         for row in rows[:ROWS_PER_EXPECTATION]]
        elif error := _exception_message(outcome.exception_info):
            examples.append(head | {"error": error})
        else:
            examples.append(head | {"observed": _plain(outcome.result.get("observed_value")),
                                    "details": _plain(outcome.result.get("details"))})
    return CheckOutcome(passed=bool(result.success), statistics=statistics, examples=examples)


def _exception_message(info: Mapping[str, Any] | None) -> str | None:
    """GX reports an expectation that could not run (a missing column) as nested exception info."""
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and (message := _exception_message(value)):
            return message
    return None


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a value GX hands back (numpy scalars, Timestamps, tuples)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


# --- loaders: the frames each suite validates -----------------------------------------------


def _frame(db: Database, query: sa.Select[Any]) -> pd.DataFrame:
    """Rows as a frame; ids and enums as plain strings, so GX compares them like any text."""
    with db.session() as session:
        result = session.execute(query)
        names = list(result.keys())
        rows = result.all()
    # Column by column: building a frame from a million Row objects directly takes seconds longer.
    columns = zip(*rows, strict=True) if rows else ([] for _ in names)
    frame = pd.DataFrame(dict(zip(names, columns, strict=True)), columns=names)
    for column in frame.columns:
        sample = next((v for v in frame[column] if v is not None), None)
        if isinstance(sample, uuid.UUID):
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
        elif isinstance(sample, Enum):
            frame[column] = frame[column].map(lambda v: None if v is None else v.value)
    return frame


def organization_of(db: Database, capsule_id: uuid.UUID) -> uuid.UUID:
    with db.session() as session:
        organization_id = session.scalar(sa.select(Capsule.organization_id).where(Capsule.id == capsule_id))
    if organization_id is None:
        raise NotFoundError(f"capsule {capsule_id} does not exist")
    return organization_id


def users_frame(db: Database, capsule_id: uuid.UUID | None = None) -> pd.DataFrame:
    """The users of the capsule's organization (email uniqueness is per organization), or everyone."""
    query = sa.select(User.id, User.organization_id, User.email, User.role)
    if capsule_id:
        query = query.where(User.organization_id == organization_of(db, capsule_id))
    return _frame(db, query)


def capsules_frame(db: Database, capsule_id: uuid.UUID | None = None) -> pd.DataFrame:
    query = sa.select(Capsule.id, Capsule.status, Capsule.created_at, Capsule.updated_at)
    return _frame(db, query.where(Capsule.id == capsule_id) if capsule_id else query)


def content_frame(db: Database, capsule_id: uuid.UUID | None = None) -> pd.DataFrame:
    query = sa.select(Content.id, Content.sha256, Content.size_bytes, Content.mime_type, Content.type)
    return _frame(db, query.where(Content.capsule_id == capsule_id) if capsule_id else query)


def interaction_events_frame(db: Database, capsule_id: uuid.UUID | None = None) -> pd.DataFrame:
    """The events' non-personal columns that the live table actually has.

    Reading the live table's columns (not the model's) is what lets the suite notice a
    migration that dropped or renamed one; the personal payload is never read.
    """
    live = {column["name"] for column in sa.inspect(db.engine).get_columns(InteractionEvent.__tablename__)}
    table = InteractionEvent.__table__
    query = sa.select(*(table.c[name] for name in EVENT_COLUMNS if name in live))
    if capsule_id and "capsule_id" in live:
        query = query.where(table.c.capsule_id == capsule_id)
    return _frame(db, query)


def chunks_frame(db: Database, capsule_id: uuid.UUID | None = None) -> pd.DataFrame:
    """Chunk shape without the text itself: its length after trimming is what "not empty" needs."""
    text_chars = sa.func.length(sa.func.trim(Chunk.text, WHITESPACE)).label("text_chars")
    query = sa.select(Chunk.id, text_chars, Chunk.token_count, Chunk.start_char, Chunk.end_char)
    return _frame(db, query.where(Chunk.capsule_id == capsule_id) if capsule_id else query)


def embeddings_frame(scan: VectorScan) -> pd.DataFrame:
    """One row per LanceDB vector: its dimension, L2 norm and NaN count, computed by the scan."""
    return pd.DataFrame({"id": scan.ids, "content_id": scan.content_ids, "dimension": scan.dimensions,
                         "norm": scan.norms, "nan_count": scan.nan_counts})


def daily_engagement_frame(db: Database, day: date | None = None) -> pd.DataFrame:
    """One day's aggregates (every day's when `day` is None); `id` names a row (day/capsule) for examples."""
    from encaptio_data.db.models import DailyEngagement

    query = sa.select(DailyEngagement.day, DailyEngagement.capsule_id,
                      *(getattr(DailyEngagement, c) for c in ENGAGEMENT_COUNTS))
    frame = _frame(db, query.where(DailyEngagement.day == day) if day else query)
    frame.insert(0, "id", [f"{d}/{capsule}" for d, capsule in zip(frame["day"], frame["capsule_id"], strict=True)])
    return frame.drop(columns=["day"])
