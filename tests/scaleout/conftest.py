"""The scale-out setting: a production Dagster instance on PostgreSQL and Celery workers on RabbitMQ.

Everything a worker on another machine would share is a real service here: PostgreSQL (one
database for Dagster's instance, another for the platform), moto's S3 server for objects and
step outputs, Redis for the cache, RabbitMQ as the broker. Only LanceDB is a local directory,
which the workers on this machine share as they would share the durable copy on S3.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import throwaway_postgres_database

REPO = Path(__file__).resolve().parents[2]
PRODUCTION_DAGSTER_YAML = REPO / "deploy" / "production" / "dagster.yaml"
BROKER_URL = os.environ.get("ENCAPTIO_TEST_CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


def dagster_pg_url(sqlalchemy_url: str) -> str:
    """dagster-postgres needs psycopg2, named explicitly: SQLAlchemy 2.1 maps postgresql:// to psycopg 3."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1)


@pytest.fixture
def broker_url() -> str:
    parts = urlsplit(BROKER_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            pass
    except OSError as exc:
        pytest.skip(f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672} ({exc}); "
                    "start it with `rabbitmq-server -detached`")
    return BROKER_URL


@pytest.fixture
def platform_database_url() -> Iterator[str]:
    """The platform's own database, apart from Dagster's (both keep an alembic_version table)."""
    with throwaway_postgres_database("encaptio_scaleout") as url:
        yield url


@dataclass
class Cluster:
    """The environment a worker machine would have, and the DAGSTER_HOME of the instance."""

    env: dict[str, str]
    dagster_home: Path
    log_dir: Path
    queue_prefix: str

    def queue(self, name: str) -> str:
        return f"{self.queue_prefix}-{name}"


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_url: str, platform_database_url: str,
            s3_endpoint: str, s3_bucket: str, redis_url: str, broker_url: str) -> Cluster:
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(PRODUCTION_DAGSTER_YAML, home / "dagster.yaml")
    settings = {
        "ENCAPTIO_DATA_DIR": str(tmp_path / "data"),
        "ENCAPTIO_DATABASE_URL": platform_database_url,
        "ENCAPTIO_OBJECT_STORE": f"s3://{s3_bucket}/objects",
        "ENCAPTIO_S3_ENDPOINT_URL": s3_endpoint,
        "ENCAPTIO_LANCEDB_URI": str(tmp_path / "lancedb"),
        "ENCAPTIO_REDIS_URL": redis_url,
        "ENCAPTIO_CACHE_NAMESPACE": f"scaleout-{uuid.uuid4().hex[:12]}",
        "ENCAPTIO_DAGSTER_PG_URL": dagster_pg_url(postgres_url),
        "ENCAPTIO_CELERY_BROKER_URL": broker_url,
        "DAGSTER_HOME": str(home),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    # Queues of their own: a worker of another test run on the same broker never takes these steps.
    return Cluster(env=dict(os.environ), dagster_home=home, log_dir=tmp_path / "workers",
                   queue_prefix=f"encaptio-test-{uuid.uuid4().hex[:8]}")
