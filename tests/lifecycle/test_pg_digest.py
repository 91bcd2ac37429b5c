"""The per-table digests of a PostgreSQL restore point's manifest (pgbackrest.table_digests):
the per-column hash is the default, a table with a type that has no hash function falls back to
the row's text, any changed row is caught either way, verification recomputes what each entry
names (entries from before the per-column hash included), and an unknown method is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from encaptio_data.errors import IntegrityError
from encaptio_data.lifecycle import pgbackrest as pgb

TABLES = ["public.hashed", "public.texted"]


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE hashed (id bigint PRIMARY KEY, uid uuid, at timestamptz, doc jsonb, "
                             "body text, amount numeric, blob bytea)"))
        conn.execute(sa.text(
            "INSERT INTO hashed SELECT g, md5(g::text)::uuid, '2026-01-01'::timestamptz + g * interval '1 s', "
            "jsonb_build_object('k', g, 'v', md5(g::text)), repeat('x', g % 7), g / 3.0, "
            "decode(md5(g::text), 'hex') FROM generate_series(1, 500) g"))
        # json and point have no hash function: this table is digested by the row's text.
        conn.execute(sa.text("CREATE TABLE texted (id int PRIMARY KEY, doc json, p point)"))
        conn.execute(sa.text("INSERT INTO texted SELECT g, json_build_object('g', g), point(g, g) "
                             "FROM generate_series(1, 50) g"))
    yield engine
    engine.dispose()


def _digests(engine: sa.Engine, methods: dict | None = None) -> dict:
    with engine.connect() as conn, conn.begin():
        return pgb.table_digests(conn, TABLES, methods=methods)


def test_new_manifests_hash_columns_and_fall_back_per_table(engine: sa.Engine) -> None:
    digests = _digests(engine)
    assert digests["public.hashed"]["digest"] == pgb.ROW_HASH and digests["public.hashed"]["rows"] == 500
    assert digests["public.texted"]["digest"] == pgb.ROW_TEXT and digests["public.texted"]["rows"] == 50
    assert _digests(engine, digests) == digests  # verification recomputes the same

    changes = ["UPDATE hashed SET doc = doc || '{\"k\": 0}' WHERE id = 7", "UPDATE hashed SET body = 'y' WHERE id = 9",
               "UPDATE hashed SET at = at + interval '1 microsecond' WHERE id = 3",
               "UPDATE hashed SET blob = NULL WHERE id = 4", "DELETE FROM hashed WHERE id = 500",
               "UPDATE hashed SET uid = md5('other')::uuid WHERE id = 1",
               "UPDATE texted SET p = point(1, 2) WHERE id = 1"]
    for statement in changes:
        with engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(sa.text(statement))
            changed = pgb.table_digests(conn, TABLES, methods=digests)
            transaction.rollback()
        assert pgb.compare_tables(digests, changed), f"not detected: {statement}"


def test_a_manifest_from_before_the_column_hash_verifies_by_the_row_text(engine: sa.Engine) -> None:
    with engine.connect() as conn, conn.begin():
        for name, value in pgb._RENDER_SETTINGS.items():
            conn.execute(sa.text(f"SET LOCAL {name} = '{value}'"))
        # What older versions wrote: the row-text sum, and no `digest` field.
        old = {}
        for table in TABLES:
            count, total = conn.execute(sa.text(
                f"SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text FROM {table} t")
            ).one()
            old[table] = {"rows": count, "sha256": hashlib.sha256(f"{count}:{total}".encode()).hexdigest()}
    assert pgb.compare_tables(old, _digests(engine, old)) == []
    assert all(entry["digest"] == pgb.ROW_TEXT for entry in _digests(engine, old).values())
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hashed SET body = body || '!' WHERE id = 10"))
    assert pgb.compare_tables(old, _digests(engine, old)) == [
        "table public.hashed rows differ from the manifest (digest mismatch)"]


def test_an_unknown_row_hash_is_refused_by_name(engine: sa.Engine) -> None:
    future = {table: {**entry, "digest": "record-hash/9"} for table, entry in _digests(engine).items()}
    with pytest.raises(IntegrityError, match="public.hashed with 'record-hash/9', which this version"):
        _digests(engine, future)
