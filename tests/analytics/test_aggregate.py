"""Events → daily aggregates on both profiles: exact counts, idempotence, late events, quarantine."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from encaptio_data.analytics import aggregate
from encaptio_data.analytics.aggregate import (
    QUARANTINE_REASONS,
    load_events,
    materialize_day,
    reconcile_day,
    split_events,
    stale_days,
    top_queries,
)
from encaptio_data.db.models import (
    AnalyticsQuarantine,
    DailyEngagement,
    DailyEngagementRun,
    DailyTopQuery,
    InteractionEvent,
)
from encaptio_data.db.sealing import is_sealed, normalize_text, text_indexer
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform
from tests.analytics.world import DAY, NOW, World, arrow_events, at, build_world


def _engagement(platform: Platform, day=DAY) -> dict[uuid.UUID, dict]:
    with platform.db.session() as s:
        rows = s.scalars(sa.select(DailyEngagement).where(DailyEngagement.day == day)).all()
        return {r.capsule_id: {c: getattr(r, c) for c in (
            "organization_id", "events", "views", "unique_sessions", "searches", "chat_turns", "dwell_events",
            "completions", "total_dwell_seconds", "median_dwell_seconds", "unique_users")} for r in rows}


def _hand_built_day(world: World) -> None:
    c1, c2 = world.capsules
    u = world.users
    # Capsule 1: two signed-in people and one anonymous visitor.
    world.event(c1, u[0], "s-a", "view", at(DAY, 0, 0, 0))  # the first instant of the day belongs to it
    world.event(c1, u[0], "s-a", "search", at(DAY, 0, 1), {"query": "Budget  Basics", "result_count": 2})
    world.event(c1, u[0], "s-a", "dwell", at(DAY, 0, 2), {"seconds": 10})
    world.event(c1, u[1], "s-b", "view", at(DAY, 9))
    world.event(c1, u[1], "s-b", "chat_turn", at(DAY, 9, 1))
    world.event(c1, u[1], "s-b", "dwell", at(DAY, 9, 5), {"seconds": 30.5})
    world.event(c1, u[1], "s-b", "completion", at(DAY, 9, 6))
    world.event(c1, u[0], "s-c", "view", at(DAY, 15))  # the same person again, in a new session
    world.event(c1, None, "s-anon", "view", at(DAY, 23, 59, 59, 999_999))  # the last instant of the day
    world.event(c1, None, "s-anon", "dwell", at(DAY, 23, 59, 59, 999_999), {"seconds": 50})
    # Capsule 2: one view.
    world.event(c2, u[2], "s-d", "view", at(DAY, 12))
    # Neighbouring days must not leak in.
    world.event(c1, u[3], "s-e", "view", at(DAY - timedelta(days=1), 23, 59, 59, 999_999))
    world.event(c1, u[3], "s-f", "view", at(DAY + timedelta(days=1), 0, 0, 0))


def test_aggregates_a_hand_built_day_exactly(platform: Platform) -> None:
    world = build_world(platform)
    _hand_built_day(world)
    report = materialize_day(platform, DAY, now=NOW)
    assert (report.events_read, report.events_aggregated, report.events_quarantined, report.events_excluded) == (
        11, 11, 0, 0)
    c1, c2 = world.capsules
    assert _engagement(platform) == {
        c1: {"organization_id": world.organization, "events": 10, "views": 4, "unique_sessions": 4, "searches": 1,
             "chat_turns": 1, "dwell_events": 3, "completions": 1, "total_dwell_seconds": 90.5,
             "median_dwell_seconds": 30.5, "unique_users": 2},
        c2: {"organization_id": world.organization, "events": 1, "views": 1, "unique_sessions": 1, "searches": 0,
             "chat_turns": 0, "dwell_events": 0, "completions": 0, "total_dwell_seconds": 0.0,
             "median_dwell_seconds": None, "unique_users": 1},
    }
    assert reconcile_day(platform.db, DAY)["passed"]


def test_rematerializing_is_idempotent_and_late_events_rebuild_the_day(platform: Platform) -> None:
    world = build_world(platform)
    _hand_built_day(world)
    materialize_day(platform, DAY, now=NOW)
    first = _engagement(platform)
    materialize_day(platform, DAY, now=NOW)
    assert _engagement(platform) == first
    with platform.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(DailyEngagementRun)) == 1

    # A late event arrives for the day: the day is reported stale and the check fails until re-run.
    world.event(world.capsules[1], world.users[5], "s-late", "view", at(DAY, 18))
    assert DAY.isoformat() in stale_days(platform.db, now=NOW)
    assert not reconcile_day(platform.db, DAY)["passed"]
    materialize_day(platform, DAY, now=NOW)
    assert _engagement(platform)[world.capsules[1]]["views"] == 2
    assert reconcile_day(platform.db, DAY)["passed"]
    assert DAY.isoformat() not in stale_days(platform.db, now=NOW)


def test_bad_events_are_quarantined_with_a_reason_never_dropped(platform: Platform) -> None:
    world = build_world(platform)
    c1 = world.capsules[0]
    u = world.users
    world.event(c1, u[0], "s-ok", "view", at(DAY, 8))
    bad = {
        world.event(c1, u[0], "s-ok", "dwell", at(DAY, 8, 1), {"seconds": "a while"}): "malformed_payload",
        world.event(c1, u[0], "s-ok", "dwell", at(DAY, 8, 2), {"seconds": -5}): "malformed_payload",
        world.event(c1, u[0], "s-ok", "dwell", at(DAY, 8, 3), {}): "malformed_payload",
        world.event(c1, u[0], "s-ok", "dwell", at(DAY, 8, 4), {"seconds": 10**9}): "malformed_payload",
        world.event(c1, u[1], "s-2", "search", at(DAY, 9), {"query": 42}): "malformed_payload",
        world.event(c1, u[1], "s-2", "chat_turn", at(DAY, 9, 1), {"turn": 1}): "malformed_payload",
        world.event(c1, u[1], "s-2", "view", at(DAY, 9, 2), ["not", "an", "object"]): "malformed_payload",
        world.event(c1, u[1], "s-2", "view", at(DAY, 9, 3), "just a string"): "malformed_payload",
        world.event(c1, u[2], "s-3", "view", at(DAY, 23)): "future_timestamp",
    }
    now = at(DAY, 20)  # the day is still running: an event stamped 23:00 is from the future
    report = materialize_day(platform, DAY, now=now)
    assert report.events_read == 10 and report.events_aggregated == 1
    assert report.quarantine_reasons == {"malformed_payload": 8, "future_timestamp": 1}
    with platform.db.session() as s:
        rows = {r.event_id: r for r in s.scalars(sa.select(AnalyticsQuarantine))}
    assert {event_id: r.reason for event_id, r in rows.items()} == bad
    details = {r.detail for r in rows.values()}
    assert {"dwell seconds missing or not a number", "dwell seconds outside [0, 86400]",
            "search without a text query", "chat turn without a text question", "payload is not a JSON object",
            "occurred more than 5 minutes after the run's clock"} <= details
    assert all("a while" not in r.detail for r in rows.values())  # no payload is copied into the quarantine
    assert reconcile_day(platform.db, DAY)["passed"]

    # Far past: the same day, read by a clock more than two years later.
    later = materialize_day(platform, DAY, now=at(DAY, 12) + timedelta(days=800))
    assert later.quarantine_reasons == {"stale_timestamp": 10}
    assert later.events_aggregated == 0


def test_invalid_json_on_sqlite_is_quarantined_not_a_crash(embedded_platform: Platform) -> None:
    # Only SQLite can hold it (PostgreSQL's jsonb refuses NaN), and its json functions raise on it.
    world = build_world(embedded_platform)
    world.event(world.capsules[0], None, "s-nan", "dwell", at(DAY, 8), {"seconds": float("nan")})
    report = materialize_day(embedded_platform, DAY, now=NOW)
    assert report.quarantine_reasons == {"malformed_payload": 1}


def test_arrow_input_quarantines_unknown_capsules_types_sessions_and_duplicates(platform: Platform) -> None:
    world = build_world(platform)
    c1 = world.capsules[0].hex
    base = {"capsule_id": c1, "session_id": "s1", "event_type": "view", "occurred_at": at(DAY, 10),
            "payload_kind": "object"}
    ids = [uuid.uuid4().hex for _ in range(6)]
    table = arrow_events([
        {**base, "event_id": ids[0]},
        {**base, "event_id": ids[0]},  # delivered twice
        {**base, "event_id": ids[1], "capsule_id": uuid.uuid4().hex},
        {**base, "event_id": ids[2], "event_type": "teleport"},
        {**base, "event_id": ids[3], "session_id": ""},
        {**base, "event_id": ids[4], "occurred_at": None},
        {**base, "event_id": "not-a-uuid", "capsule_id": "nor-this"},
    ])
    report = materialize_day(platform, DAY, now=NOW, events=table)
    assert report.events_aggregated == 1
    assert report.quarantine_reasons == {"duplicate_event": 1, "unknown_capsule": 2, "unknown_event_type": 1,
                                         "missing_session": 1, "stale_timestamp": 1}
    assert set(report.quarantine_reasons) < set(QUARANTINE_REASONS)
    assert reconcile_day(platform.db, DAY)["events_quarantined"] == 6


def _write_around_the_path(platform: Platform, world, user, session: str, event_type: str, when, payload) -> None:
    """An event stored with plain SQL, as a service bypassing record_events would: no blind index."""
    if session not in world.sessions:
        world.event(world.capsules[0], user, session, "view", when - timedelta(seconds=1))
    with platform.db.engine.begin() as conn:
        conn.execute(sa.insert(InteractionEvent.__table__).values(
            id=uuid.uuid4(), interaction_id=world.sessions[session], capsule_id=world.capsules[0], user_id=user,
            session_id=session, event_type=event_type, payload=payload, occurred_at=when))


def test_load_events_reads_the_index_and_only_unindexed_text(platform: Platform) -> None:
    world = build_world(platform)
    world.event(world.capsules[0], world.users[0], "s1", "search", at(DAY, 1), {"query": "Ünïcode  query"})
    world.event(world.capsules[0], None, "s1", "dwell", at(DAY, 2), {"seconds": 12.25})
    world.event(world.capsules[0], None, "s2", "search", at(DAY, 3), {"query": "anonymous QUERY"})
    _write_around_the_path(platform, world, world.users[1], "s3", "search", at(DAY, 4), {"query": "Raw  text"})
    table = load_events(platform.db, at(DAY, 0), at(DAY, 0) + timedelta(days=1))
    table = table.filter(pc.not_equal(table["event_type"], "view")).sort_by("occurred_at")
    keys = KeyStore(platform.settings.keys_dir)
    index = text_indexer(keys)
    # Indexed texts stay in the database (sealed for the signed-in user, plain for the anonymous
    # session); only the text stored without an index is read, to be indexed by the aggregation.
    assert table.column("query").to_pylist() == [None, None, None, "Raw  text"]
    assert table.column("text_index").to_pylist() == [index("ünïcode query"), None, index("Anonymous query"), None]
    assert table.column("seconds").to_pylist() == [None, 12.25, None, None]
    assert table.column("user_id").to_pylist() == [world.users[0].hex, None, None, world.users[1].hex]
    assert table.column("occurred_at").to_pylist() == [at(DAY, 1), at(DAY, 2), at(DAY, 3), at(DAY, 4)]
    stored = aggregate.stored_texts(platform.db)(table.column("event_id").to_pylist())
    signed_in, anonymous = stored[table["event_id"][0].as_py()], stored[table["event_id"][2].as_py()]
    assert signed_in[0] == "query" and is_sealed(signed_in[1])
    assert aggregate.opened_text(keys, "query", signed_in[1]) == "Ünïcode  query"
    assert anonymous == ("query", "anonymous QUERY")


def test_free_text_survives_the_columnar_read(platform: Platform) -> None:
    world = build_world(platform)
    tricky = 'say "hi", then\nleave, \\ ; \r done ,,"'
    # Written around the path (no index), so the text itself is read, through PostgreSQL's CSV too.
    _write_around_the_path(platform, world, None, 'sess,"odd"', "search", at(DAY, 1), {"query": tricky})
    _write_around_the_path(platform, world, None, 'sess,"odd"', "chat_turn", at(DAY, 2), {"question": ""})
    table = load_events(platform.db, at(DAY, 0), at(DAY, 0) + timedelta(days=1))
    table = table.filter(pc.not_equal(table["event_type"], "view")).sort_by("occurred_at")
    # Line breaks become spaces of the same length, so PII offsets into the text stay valid.
    assert table.column("query").to_pylist() == [tricky.replace("\n", " ").replace("\r", " "), None]
    assert table.column("question").to_pylist() == [None, ""]  # an empty string is not a missing one
    assert table.column("session_id").to_pylist() == ['sess,"odd"', 'sess,"odd"']


def test_rows_written_around_the_orm_cannot_break_the_read(embedded_platform: Platform) -> None:
    # Raw SQL can store what the ORM never would: an id with quotes and a line break, a time
    # that is not one. Each becomes a quarantined event, and the rest of the day is unaffected.
    world = build_world(embedded_platform)
    world.event(world.capsules[0], None, "s1", "view", at(DAY, 9))
    interaction = world.sessions["s1"].hex
    with embedded_platform.db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO interaction_events (id, interaction_id, capsule_id, user_id, session_id, event_type, payload,"
            " occurred_at) VALUES (?, ?, ?, NULL, 's1', 'view', '{}', ?)",
            [("it's,\nodd", interaction, world.capsules[0].hex, "2026-10-07 10:00:00.000000"),
             (uuid.uuid4().hex, interaction, world.capsules[0].hex, "2026-10-07 99:99:99")])
    report = materialize_day(embedded_platform, DAY, now=NOW)
    assert report.events_read == 3 and report.events_aggregated == 2
    assert report.quarantine_reasons == {"stale_timestamp": 1}

    # Both reads agree on every hour, the odd one included: the odd id is kept as text, and the
    # time that is not one is NULL in each.
    for hour in (9, 10, 23):  # the time that is not one sorts into the day's last hour
        window = (at(DAY, hour), at(DAY, hour) + timedelta(hours=1))
        assert aggregate._sqlite_arrow_window(embedded_platform.db, *window).equals(
            aggregate._rows_window(embedded_platform.db, *window))
    odd = aggregate._read_window(embedded_platform.db, at(DAY, 10), at(DAY, 11))
    assert odd.column("event_id").to_pylist() == ["it's,\nodd"]
    late = aggregate._read_window(embedded_platform.db, at(DAY, 23), at(DAY, 23) + timedelta(hours=1))
    assert late.num_rows == 1 and late.column("occurred_at").to_pylist() == [None]


def test_bytes_that_are_not_text_fall_back_to_the_row_read(embedded_platform: Platform) -> None:
    world = build_world(embedded_platform)
    world.event(world.capsules[0], None, "s1", "view", at(DAY, 9))
    interaction = world.sessions["s1"].hex
    with embedded_platform.db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO interaction_events (id, interaction_id, capsule_id, user_id, session_id, event_type, payload,"
            " occurred_at) VALUES (?, ?, ?, NULL, ?, 'view', '{}', ?)",
            (uuid.uuid4().hex, interaction, world.capsules[0].hex, b"\xff\xfe", "2026-10-07 09:30:00.000000"))
    with pytest.raises(pa.ArrowInvalid):
        aggregate._sqlite_arrow_window(embedded_platform.db, at(DAY, 9), at(DAY, 10))
    table = aggregate._read_window(embedded_platform.db, at(DAY, 9), at(DAY, 10))
    assert table.num_rows == 2 and table.column("occurred_at").null_count == 0
    report = materialize_day(embedded_platform, DAY, now=NOW)
    assert report.events_read == 2


def test_top_queries_need_k_distinct_subjects(tmp_path: Path) -> None:
    rows = []
    for i in range(5):  # five people: published
        rows.append({"event_id": uuid.uuid4().hex, "user_id": f"{i:032x}", "session_id": f"a{i}",
                     "query": "Tax  Forms "})
    for i in range(4):  # four people: not published
        rows.append({"event_id": uuid.uuid4().hex, "user_id": f"{i:032x}", "session_id": f"b{i}", "query": "my name"})
    for i in range(6):  # one person in six sessions: one subject, not published
        rows.append({"event_id": uuid.uuid4().hex, "user_id": f"{99:032x}", "session_id": f"c{i}", "query": "alone"})
    capsule = uuid.uuid4().hex
    table = arrow_events([{**r, "capsule_id": capsule, "event_type": "search", "occurred_at": at(DAY, 3),
                           "payload_kind": "object"} for r in rows])
    usable = split_events(table, known_capsules=[capsule], excluded=[], keys_dir=tmp_path, now=NOW)
    top = top_queries(usable.valid, KeyStore(tmp_path), k=5)
    assert top.to_dict(orient="records") == [
        {"capsule_id": capsule, "query_norm": "tax forms", "count": 5, "subjects": 5, "rank": 1}]
    assert normalize_text("  A\tb  C ") == "a b c"


def test_top_queries_are_stored_only_above_k(platform: Platform) -> None:
    world = build_world(platform)
    for i in range(6):
        world.event(world.capsules[0], world.users[i], f"q{i}", "search", at(DAY, 10, i), {"query": "Savings plan"})
    world.event(world.capsules[0], world.users[7], "q7", "search", at(DAY, 11), {"query": "rare personal words"})
    materialize_day(platform, DAY, now=NOW)
    with platform.db.session() as s:
        stored = [(r.query_norm, r.count, r.subjects, r.rank) for r in s.scalars(sa.select(DailyTopQuery))]
    assert stored == [("savings plan", 6, 6, 1)]


def test_sealed_queries_are_counted_by_their_index_and_only_the_winners_are_opened(platform: Platform) -> None:
    """Signed-in users' queries are stored sealed: equal texts still meet (by blind index, any
    case or spacing), anonymous plain ones join them, and an erased subject's text is never
    what gets published."""
    world = build_world(platform, users=12)
    c1 = world.capsules[0]
    spellings = ["Savings plan", "savings  PLAN", " SAVINGS plan"]
    for i in range(5):
        world.event(c1, world.users[i], f"a{i}", "search", at(DAY, 10, i), {"query": spellings[i % 3]})
    world.event(c1, None, "anon", "search", at(DAY, 10, 30), {"query": "savings plan"})
    for i in range(5, 10):  # five people whose keys are then destroyed (their rows not yet deleted)
        world.event(c1, world.users[i], f"b{i}", "search", at(DAY, 11, i), {"query": "Tax secrets"})
    keys = KeyStore(platform.settings.keys_dir)
    keys.destroy_data_key(str(world.users[0]))  # one of the savings people too: another copy is read
    for i in range(5, 10):
        keys.destroy_data_key(str(world.users[i]))
    with platform.db.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.cast(sa.text("payload"), sa.Text)).select_from(
            sa.table("interaction_events"))).scalars().all()
    assert not any("Tax secrets" in text or "Savings plan" in text for text in stored)

    report = materialize_day(platform, DAY, now=NOW)
    with platform.db.session() as s:
        published = [(r.query_norm, r.count, r.subjects) for r in s.scalars(sa.select(DailyTopQuery))]
    # Six searches by six subjects (five people and one anonymous session); the "tax secrets"
    # group had five subjects but no readable copy left, so it is not published.
    assert published == [("savings plan", 6, 6)]
    assert report.top_queries == 1
