"""Small corpora for the quality checks, and the helpers that damage them one way at a time.

Most tests need data shaped like the pipeline's output, not the model's vectors: they use
the bench's synthetic builder (real objects and rows, random unit vectors), which takes well
under a second. Only the demo test runs the real pipeline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from great_expectations.data_context import AbstractDataContext
from sqlalchemy.orm import Session

from bench.quality import SyntheticStores, build_synthetic_stores
from encaptio_data.integrity import CheckOutcome
from encaptio_data.platform import Platform
from encaptio_data.quality.catalog import CHECKS_BY_NAME, CheckRun
from encaptio_data.quality.suites import ephemeral_context
from encaptio_data.settings import get_settings

SMALL = {"capsules": 2, "content_per_capsule": 3, "chunks_per_content": 3, "events_per_capsule": 4}


@pytest.fixture(scope="session")
def gx_context() -> AbstractDataContext:
    return ephemeral_context()


@pytest.fixture
def corpus(platform: Platform) -> SyntheticStores:
    """Two capsules of three embedded documents, three chunks each, on the parametrized platform."""
    return build_synthetic_stores(platform, **SMALL)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Platform]:
    """The embedded default only: for tests about LanceDB, which is a local directory in both profiles."""
    platform = Platform(get_settings(data_dir=tmp_path / "embedded"))
    yield platform
    platform.close()


@pytest.fixture
def embedded_corpus(embedded: Platform) -> SyntheticStores:
    return build_synthetic_stores(embedded, **SMALL)


def evaluate(platform: Platform, name: str, gx: AbstractDataContext, *, capsule_id: uuid.UUID | None = None,
             history: list[dict[str, int]] | None = None) -> CheckOutcome:
    """One catalog check, as runner and Dagster run it."""
    run = CheckRun(platform, capsule_id=capsule_id, gx_context=lambda: gx, volume_history=lambda: list(history or []))
    return CHECKS_BY_NAME[name].evaluate(run)


@contextmanager
def unchecked(platform: Platform, table: str, constraint: str) -> Iterator[Session]:
    """A session in which one CHECK constraint is not enforced, to write what the engine would refuse.

    The suites are the second line of defence (for data restored from elsewhere, or written by
    another tool); to prove they hold, the first line has to be stepped over: SQLite can stop
    enforcing CHECKs per connection, PostgreSQL has to lose the constraint.
    """
    with platform.db.session() as session:
        if platform.db.dialect == "sqlite":
            session.execute(sa.text("PRAGMA ignore_check_constraints = ON"))
        else:
            session.execute(sa.text(f'ALTER TABLE "{table}" DROP CONSTRAINT "{constraint}"'))
        yield session
        if platform.db.dialect == "sqlite":
            session.execute(sa.text("PRAGMA ignore_check_constraints = OFF"))
