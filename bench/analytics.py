"""Analytics benchmark: one daily partition of N interaction events (default 10M) aggregated.

Target: a day of 10M events aggregated within 60 s on the 2-core machine, with peak memory.

Generating the events is not what is measured. They are generated vectorized (numpy/Arrow)
in the real read schema, written once as Parquet and bulk-loaded once into the embedded
SQLite store (executemany in large batches, indexes built after the load, foreign keys off
for the load only: the events point at capsules that exist but at interactions that were
never created). The stored payloads are what the product's writes store: a signed-in user's
query or question sealed under that user's key, each text with its blind index. Those load times are reported separately and excluded from the target.

Two measurements, each in a fresh process so its peak RSS is its own:

* ``from_sqlite``: ``materialize_day`` exactly as the daily asset runs it: the SQL read with
  payload extraction from the store, consent exclusion, validation and quarantine,
  pseudonymization, aggregation, top queries (with the PII filter, whose first use loads
  spaCy and Presidio), and the transactional write.
* ``from_parquet``: the same with the events read from the Parquet file instead, the path
  for events that arrive as Arrow batches rather than rows.

The data: 200 capsules in 20 organizations, 50k users (20 % of sessions anonymous), 2 % of
users with withdrawn analytics consent, sessions of about seven events, a Zipf-distributed
query vocabulary, and 0.1 % malformed events (negative dwell, unknown capsule).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sqlite3
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from bench._common import ProgressCallback, default_data_dir, finish_machine_info, machine_info, peak_rss_mib, say

DAY = date(2026, 10, 7)
TARGET_SECONDS = 60.0
ORGANIZATIONS, CAPSULES, USERS = 20, 200, 50_000
EVENTS_PER_SESSION = 7
ANONYMOUS_SHARE, WITHDRAWN_SHARE, BAD_SHARE = 0.2, 0.02, 0.001
_TYPES = np.array(["view", "search", "chat_turn", "dwell", "completion"])
_TYPE_WEIGHTS = np.array([0.15, 0.3, 0.3, 0.15, 0.1])
# Bumped when the stored form of events changes (2: free text sealed), so older data is rebuilt.
LAYOUT = 2
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_WORDS = ("budget savings tax retirement index fund loan credit score mortgage rent insurance invoice pension "
          "interest inflation bond stock dividend crypto account transfer payroll expense audit").split()


def _hex_ids(prefix: str, start: int, count: int) -> pa.Array:
    """``count`` 32-hex-digit ids: a 16-digit prefix and a 16-digit counter, built without a Python loop."""
    numbers = np.arange(start, start + count, dtype=np.uint64)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = _HEX[((numbers[:, None] >> shifts) & np.uint64(15)).astype(np.intp)]
    head = np.broadcast_to(np.frombuffer(prefix.encode(), dtype=np.uint8), (count, 16))
    raw = np.ascontiguousarray(np.concatenate([head, digits], axis=1)).view("S32").ravel()
    return pa.array(raw, pa.binary(32)).cast(pa.string())


def _vocabulary(rng: np.random.Generator, size: int, words: int) -> pa.Array:
    """Texts of a few words; one in ten carries a number ("2026 tax budget"), as real queries do."""
    picks = rng.integers(0, len(_WORDS), size=(size, words))
    years = rng.integers(2015, 2030, size)
    return pa.array([" ".join(_WORDS[i] for i in row) + (f" {years[n]}" if n % 10 == 0 else "")
                     for n, row in enumerate(picks)], pa.string())


def generate_events(count: int, capsules: list[str], users: list[str], seed: int = 0) -> pa.Table:
    """``count`` events of DAY in the read schema (``EVENT_SCHEMA``), with a sprinkle of bad ones."""
    from encaptio_data.analytics.aggregate import EVENT_SCHEMA

    rng = np.random.default_rng(seed)
    sessions = max(1, count // EVENTS_PER_SESSION)
    session_of = np.sort(rng.integers(0, sessions, count))
    session_user = rng.integers(0, len(users), sessions)
    session_anonymous = rng.random(sessions) < ANONYMOUS_SHARE
    session_capsule = rng.integers(0, len(capsules), sessions)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    micros = np.sort(rng.integers(0, 86_400_000_000, count)).astype("int64")
    types = _TYPES[rng.choice(len(_TYPES), size=count, p=_TYPE_WEIGHTS)]
    queries, questions = _vocabulary(rng, 5_000, 2), _vocabulary(rng, 2_000, 5)
    query_rank = np.minimum(rng.zipf(1.3, count) - 1, len(queries) - 1)
    question_rank = np.minimum(rng.zipf(1.3, count) - 1, len(questions) - 1)
    seconds = rng.gamma(2.0, 60.0, count)
    bad = rng.random(count) < BAD_SHARE
    seconds = np.where(bad & (types == "dwell"), -1.0, seconds)

    user_ids = pc.take(pa.array(users, pa.string()), pa.array(session_user[session_of]))
    user_ids = pc.if_else(pa.array(session_anonymous[session_of]), pa.scalar(None, pa.string()), user_ids)
    capsule_ids = pc.take(pa.array(capsules, pa.string()), pa.array(session_capsule[session_of]))
    unknown = uuid.uuid4().hex
    capsule_ids = pc.if_else(pa.array(bad & (types == "view")), pa.scalar(unknown), capsule_ids)
    type_array = pa.array(types, pa.string())
    columns = {
        "event_id": _hex_ids(uuid.uuid4().hex[:16], 0, count),
        "capsule_id": capsule_ids,
        "user_id": user_ids,
        "session_id": pc.binary_join_element_wise("sess_", pc.cast(pa.array(session_of), pa.string()), ""),
        "event_type": type_array,
        "payload_kind": pa.repeat(pa.scalar("object"), count),
        "seconds": pc.if_else(pc.equal(type_array, "dwell"), pa.array(seconds), pa.scalar(None, pa.float64())),
        "query": pc.if_else(pc.equal(type_array, "search"), pc.take(queries, pa.array(query_rank)),
                            pa.scalar(None, pa.string())),
        "question": pc.if_else(pc.equal(type_array, "chat_turn"), pc.take(questions, pa.array(question_rank)),
                               pa.scalar(None, pa.string())),
    }
    # Events arriving as Arrow batches carry plain text and no blind index: the aggregation
    # indexes each distinct text itself.
    columns["text_index"] = pa.nulls(count, pa.string())
    epoch_micros = int((start - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    columns["occurred_at"] = pa.array(micros + epoch_micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(columns).select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)


def _world(platform: Any) -> tuple[list[str], list[str]]:
    """Organizations, capsules and users in the store; a few users have withdrawn analytics consent."""
    from encaptio_data.db.enums import CapsuleStatus, ConsentPurpose, UserRole
    from encaptio_data.db import sealing
    from encaptio_data.db.models import Capsule, Consent, Organization, User

    created = datetime(2026, 1, 1, tzinfo=UTC)
    organizations = [{"id": uuid.uuid4(), "name": f"Org {i}", "slug": f"org-{i}"} for i in range(ORGANIZATIONS)]
    owners = [{"id": uuid.uuid4(), "organization_id": o["id"], "email": f"owner@org-{i}.test", "name": "Owner",
               "role": UserRole.CREATOR, "metadata_": {"locale": "en_US"}, "created_at": created,
               "updated_at": created} for i, o in enumerate(organizations)]
    users = [{"id": uuid.uuid4(), "organization_id": organizations[i % ORGANIZATIONS]["id"],
              "email": f"user{i}@bench.test", "name": f"User {i}", "role": UserRole.VIEWER,
              "metadata_": {"locale": ("en_US", "de_DE", "fr_FR", "en_GB")[i % 4]}, "created_at": created,
              "updated_at": created} for i in range(USERS)]
    capsules = [{"id": uuid.uuid4(), "organization_id": organizations[i % ORGANIZATIONS]["id"],
                 "owner_id": owners[i % ORGANIZATIONS]["id"], "title": f"Capsule {i}", "description": "",
                 "status": CapsuleStatus.PUBLISHED, "settings": {}, "created_at": created, "updated_at": created,
                 "published_at": created} for i in range(CAPSULES)]
    withdrawn = [{"id": uuid.uuid4(), "user_id": u["id"], "purpose": ConsentPurpose.ANALYTICS, "granted": False,
                  "version": "2026-01", "source": "bench", "recorded_at": created}
                 for u in users[: int(USERS * WITHDRAWN_SHARE)]]
    for model, rows in ((Organization, organizations), (User, owners + users), (Capsule, capsules),
                        (Consent, withdrawn)):
        with platform.db.session() as session:
            for offset in range(0, len(rows), 10_000):
                sealing.insert_rows(session, model, rows[offset:offset + 10_000])
    return [c["id"].hex for c in capsules], [u["id"].hex for u in users]


def _payloads(batch: pa.Table, keys: Any) -> list[str]:
    """The stored JSON payload of each event, as the product's writes leave it: a signed-in user's
    query or question sealed under their key, every text with its blind index (db/sealing.py)."""
    from encaptio_data.db.models import InteractionEvent
    from encaptio_data.db.sealing import text_indexer

    sealed_fields = InteractionEvent.__table__.c.payload.type
    indexer = text_indexer(keys)
    subjects: dict[str, str] = {}
    payloads = []
    for user, kind, seconds, query, question in zip(
            batch["user_id"].to_pylist(), batch["event_type"].to_pylist(), batch["seconds"].to_pylist(),
            batch["query"].to_pylist(), batch["question"].to_pylist(), strict=True):
        if kind == "dwell":
            payload: dict[str, Any] = {"seconds": seconds}
        elif kind == "search":
            payload = {"query": query, "result_count": 3}
        elif kind == "chat_turn":
            payload = {"question": question, "turn": 1}
        else:
            payload = {"device": "desktop"}
        # The ORM's subject is str(uuid): the form the erasure destroys keys by.
        subject = None if user is None else subjects.setdefault(user, str(uuid.UUID(hex=user)))
        payloads.append(json.dumps(sealed_fields.seal_with(keys, subject, payload, indexer=indexer)))
    return payloads


def load_sqlite(database_path: Path, events: pa.Table, keys: Any, progress: ProgressCallback,
                batch: int = 500_000) -> None:
    """Bulk-load events into interaction_events: indexes dropped during the load, rebuilt after."""
    connection = sqlite3.connect(database_path)
    connection.execute("PRAGMA foreign_keys=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    indexes = connection.execute("SELECT name, sql FROM sqlite_master WHERE type='index' "
                                 "AND tbl_name='interaction_events' AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    interaction = uuid.uuid4().hex
    insert = ("INSERT INTO interaction_events (id, interaction_id, capsule_id, user_id, session_id, event_type, "
              "payload, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    for offset in range(0, events.num_rows, batch):
        part = events.slice(offset, batch)
        columns = [part["event_id"].to_pylist(), [interaction] * part.num_rows, part["capsule_id"].to_pylist(),
                   part["user_id"].to_pylist(), part["session_id"].to_pylist(), part["event_type"].to_pylist(),
                   _payloads(part, keys),
                   pc.strftime(part["occurred_at"], "%Y-%m-%d %H:%M:%S").to_pylist()]
        with connection:
            connection.executemany(insert, zip(*columns, strict=True))
        say(progress, f"loaded {min(offset + batch, events.num_rows):,} / {events.num_rows:,} events into SQLite")
    for _, sql in indexes:
        connection.execute(sql)
    connection.execute("ANALYZE")
    connection.commit()
    connection.close()


def _measure(data_dir: str, source: str, parquet_path: str | None) -> dict[str, Any]:
    """One aggregation in this (fresh) process; returns its timings and peak RSS."""
    from encaptio_data.analytics.aggregate import materialize_day
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    platform = Platform(get_settings(data_dir=Path(data_dir)))
    now = datetime(2026, 10, 20, tzinfo=UTC)
    started = time.perf_counter()
    events = None
    read_parquet_s = 0.0
    if parquet_path is not None:
        events = pq.read_table(parquet_path)
        read_parquet_s = time.perf_counter() - started
    report = materialize_day(platform, DAY, now=now, events=events)
    total = time.perf_counter() - started
    platform.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"source": source, "seconds": round(total, 2),
            # CPU seconds do not depend on what else the machine runs; wall seconds do.
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "read_s": round(read_parquet_s if parquet_path else report.timings["read_s"], 2),
            "aggregate_s": report.timings["aggregate_s"], "write_s": report.timings["write_s"],
            "peak_rss_mib": peak_rss_mib(), "events_read": report.events_read,
            "events_aggregated": report.events_aggregated, "events_quarantined": report.events_quarantined,
            "events_excluded": report.events_excluded, "quarantine_reasons": report.quarantine_reasons,
            "capsules": report.capsules, "top_queries": report.top_queries}


def _prepare(root: Path, events: int, seed: int, progress: ProgressCallback) -> dict[str, Any]:
    """Generate the events, write them as Parquet and bulk-load them into SQLite; returns the load timings."""
    from encaptio_data.bootstrap import initialize
    from encaptio_data.keys import KeyStore
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    if root.exists():
        shutil.rmtree(root)
    platform = Platform(get_settings(data_dir=root))
    initialize(platform)
    load: dict[str, Any] = {}
    say(progress, "creating organizations, capsules and users")
    started = time.perf_counter()
    capsules, users = _world(platform)
    platform.close()
    say(progress, f"generating {events:,} events")
    table = generate_events(events, capsules, users, seed=seed)
    load["generate_s"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    pq.write_table(table, root / "events.parquet")
    load["parquet_write_s"] = round(time.perf_counter() - started, 2)
    load["parquet_mib"] = round((root / "events.parquet").stat().st_size / 2**20, 1)

    started = time.perf_counter()
    database_path = Path(platform.settings.resolved_database_url.removeprefix("sqlite:///"))
    load_sqlite(database_path, table, KeyStore(platform.settings.keys_dir), progress)
    load["sqlite_load_s"] = round(time.perf_counter() - started, 2)
    load["sqlite_mib"] = round(database_path.stat().st_size / 2**20, 1)
    load["generator_peak_rss_mib"] = peak_rss_mib()
    (root / "manifest.json").write_text(json.dumps({"events": events, "seed": seed, "layout": LAYOUT, "load": load}))
    return load


def run_analytics_bench(events: int = 10_000_000, data_dir: Path | None = None, *,
                        progress: ProgressCallback = None, seed: int = 0, rebuild: bool = False) -> dict[str, Any]:
    """Prepare the data (or reuse the prepared data of the same size and seed), then measure both paths.

    Each measurement aggregates the same day from scratch: ``materialize_day`` deletes the
    day's previous results first, so repeated runs measure the same work.
    """
    machine = machine_info()
    root = Path(data_dir or default_data_dir()) / "analytics"
    manifest = root / "manifest.json"
    prepared = json.loads(manifest.read_text()) if manifest.exists() else {}
    if rebuild or (prepared.get("events"), prepared.get("seed"), prepared.get("layout")) != (events, seed, LAYOUT):
        load = _prepare(root, events, seed, progress)
    else:
        say(progress, f"reusing the {events:,} events prepared in {root}")
        load = {**prepared["load"], "reused": True}
    parquet_path = root / "events.parquet"

    results = {}
    spawn = multiprocessing.get_context("spawn")
    for source, path in (("from_sqlite", None), ("from_parquet", str(parquet_path))):
        say(progress, f"aggregating the day {source.replace('_', ' ')}")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            results[source] = pool.submit(_measure, str(root), source, path).result()
    passed = all(r["seconds"] <= TARGET_SECONDS for r in results.values())
    return {
        "benchmark": "analytics_daily_partition", "events": events, "day": DAY.isoformat(),
        "target_seconds": TARGET_SECONDS, "passed": passed, "load_excluded_from_target": load, **results,
        "command": f"python -m bench.analytics --events {events}",
        "machine": finish_machine_info(machine),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rebuild", action="store_true", help="regenerate and reload the events even if prepared")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run_analytics_bench(args.events, args.data_dir, rebuild=args.rebuild,
                                 progress=lambda m: print(f"{time.strftime('%H:%M:%S')} {m}", file=sys.stderr,
                                                          flush=True))
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
