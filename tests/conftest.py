"""Fixtures for the real services the suite runs against.

PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379) run on every
developer machine and in CI; `make test` starts them when they are down. S3 is moto's
server, started here on a free loopback port: it is a real HTTP endpoint speaking the
S3 protocol (versioning included), not an in-process mock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from encaptio_data.platform import Platform

POSTGRES_ADMIN_URL = os.environ.get("ENCAPTIO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("ENCAPTIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


LOADGROUP_BROKEN = ("--dist loadgroup is not grouping this test: this pytest and pytest-xdist do not work "
                    "together (pytest-xdist#1386); install the pinned versions (constraints.txt)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a grouped test, before its fixtures start anything, when --dist loadgroup has stopped grouping.

    Tests marked xdist_group share something expensive or exclusive (a Dagster web UI, a
    PostgreSQL cluster for pgBackRest, a daemon) and count on running on one worker, one after
    another. xdist groups them by adding the group to each test's node id on the worker; with
    pytest 9.2 that no longer takes effect (pytest-xdist#1386) and the tests are spread over
    workers without a word: each worker then starts its own copy, twice the time and, for
    shared resources, races.
    """
    if (getattr(item.config.option, "loadgroup", False) and item.get_closest_marker("xdist_group")
            and "@" not in item.nodeid):
        pytest.fail(LOADGROUP_BROKEN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(scope="session", autouse=True)
def _session_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module fixtures run before _isolated_environment: give them a data dir of their own too
    (the int8 model is exported into the first data dir a process uses, never the developer's)."""
    patch = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("ENCAPTIO_") and not name.startswith("ENCAPTIO_TEST_"):
            patch.delenv(name)
    patch.setenv("ENCAPTIO_DATA_DIR", str(tmp_path_factory.mktemp("session") / "data"))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's own ENCAPTIO_* settings or data dir."""
    for name in list(os.environ):
        if name.startswith("ENCAPTIO_") and not name.startswith("ENCAPTIO_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ENCAPTIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    moto_server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def _aws_test_credentials() -> None:
    # moto accepts any credentials; boto3 and LanceDB only need some to sign requests.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh versioned bucket per test, so tests never see each other's objects."""
    import boto3

    name = f"encaptio-test-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@contextmanager
def throwaway_postgres_database(prefix: str = "encaptio_test") -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the test server, dropped afterwards (even if in use)."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc.orig}")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database per test, dropped afterwards."""
    with throwaway_postgres_database() as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_TEST_URL}: {exc}")
    yield REDIS_TEST_URL
    client.close()


@pytest.fixture(params=["embedded", "production"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator["Platform"]:
    """An initialized platform on the embedded default and on the production stores.

    Production here means PostgreSQL, moto's S3 server and Redis, with LanceDB in a local
    directory (its S3 copy is exercised by the vector store contract tests).
    """
    from encaptio_data.bootstrap import initialize
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    overrides: dict[str, object] = {"data_dir": tmp_path / "data"}
    if request.param == "production":
        bucket = request.getfixturevalue("s3_bucket")
        overrides |= {
            "database_url": request.getfixturevalue("postgres_url"),
            "object_store": f"s3://{bucket}/objects",
            "s3_endpoint_url": request.getfixturevalue("s3_endpoint"),
            "redis_url": request.getfixturevalue("redis_url"),
            "cache_namespace": f"test-{uuid.uuid4().hex[:12]}",
        }
    instance = Platform(get_settings(**overrides))
    initialize(instance)
    yield instance
    if request.param == "production":
        instance.cache.clear()
    instance.close()
