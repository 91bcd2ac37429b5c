"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from encaptio_data.db import sealing
from encaptio_data.errors import StoreUnavailableError
from encaptio_data.keys import KeyStore
from encaptio_data.settings import redact_url


# Writers queue behind each other for this long before SQLite reports "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores foreign keys unless told per connection; WAL lets the Dagster UI read
    # while a run writes; the busy timeout turns brief lock contention into waiting, not errors.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten with zeros, not left in free pages: an erasure must not
    # leave the subject's bytes in the database file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_db_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


class Database:
    """One engine and session factory per URL; ``session()`` commits or rolls back as a unit.

    ``keys`` seals and opens the personal columns (db/sealing.py); without it, reading or
    writing one fails with a clear error instead of touching plaintext.
    """

    def __init__(self, url: str, keys: KeyStore | None = None) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.keys = keys
        if keys is not None:
            sealing.attach(self.engine, keys)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreUnavailableError(
                f"database unreachable at ENCAPTIO_DATABASE_URL={redact_url(self.url)}: {reason}"
            ) from None

    def compact_deleted(self) -> None:
        """Make deletions physical: on SQLite fold the WAL (which holds old page images) back
        into the file and truncate it; on PostgreSQL vacuum so dead tuples are reclaimed."""
        if self.dialect == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM")

    def dispose(self) -> None:
        self.engine.dispose()
