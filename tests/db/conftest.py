from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from encaptio_data.db import migrate
from encaptio_data.db.session import Database
from encaptio_data.keys import KeyStore


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database on each engine the platform supports."""
    url = f"sqlite:///{tmp_path / 'test.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url, keys=KeyStore(tmp_path / "keys"))
    yield database
    database.dispose()


@pytest.fixture
def database(empty_database: Database) -> Database:
    migrate.upgrade(empty_database)
    return empty_database
