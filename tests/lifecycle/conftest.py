"""Fixtures for backup tests: SQLite platforms on both object stores, and a real throwaway
PostgreSQL cluster (initdb --data-checksums as postgres, spare loopback port, WAL archived by
pgBackRest into two encrypted repositories) shared by the PostgreSQL tests of one worker."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.bootstrap import initialize
from encaptio_data.keys import KeyStore
from encaptio_data.lifecycle import pgbackrest as pgb
from encaptio_data.lifecycle.backup import setup_postgres_backups
from encaptio_data.platform import Platform
from encaptio_data.settings import get_settings

REPOSITORY = Path(__file__).resolve().parents[2]
# The PostgreSQL tests share one cluster: they run on one xdist worker, one after the other.
PG_GROUP = pytest.mark.xdist_group("pgbackrest")


def _pgbackrest_available() -> str | None:
    """None when pgBackRest can be used; else why not (after trying to install it, as `make test` does)."""
    if shutil.which("pgbackrest") is None:
        subprocess.run(["bash", str(REPOSITORY / "scripts" / "install-pgbackrest")], capture_output=True, timeout=600)
    if shutil.which("pgbackrest") is None:
        return "pgbackrest is not installed and scripts/install-pgbackrest could not install it"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres OS user to run the throwaway cluster as"
    if not (pgb.DEFAULT_PG_BIN / "initdb").exists():
        return f"no PostgreSQL 15 server binaries in {pgb.DEFAULT_PG_BIN}"
    return None


@pytest.fixture(params=["local", "s3"])
def sqlite_platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """The embedded database (SQLite) with backups going to a local store or to moto's S3."""
    overrides: dict[str, object] = {"data_dir": tmp_path / "data"}
    if request.param == "s3":
        overrides |= {"object_store": f"s3://{request.getfixturevalue('s3_bucket')}/objects",
                      "s3_endpoint_url": request.getfixturevalue("s3_endpoint")}
    platform = Platform(get_settings(**overrides))
    initialize(platform)
    yield platform
    platform.close()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(get_settings(data_dir=tmp_path / "data"))
    initialize(platform)
    yield platform
    platform.close()


@dataclass
class Stanza:
    root: Path
    stanza: pgb.PgBackRest
    cluster: pgb.Cluster

    def env(self) -> dict[str, str]:
        s = self.stanza
        return {"ENCAPTIO_PGBACKREST_STANZA": s.stanza, "ENCAPTIO_PGBACKREST_PG_PATH": str(s.pg_path),
                "ENCAPTIO_PGBACKREST_PG_PORT": str(s.pg_port),
                "ENCAPTIO_PGBACKREST_PG_SOCKET_PATH": str(s.pg_socket_path),
                "ENCAPTIO_PGBACKREST_REPO1_PATH": str(s.repo1_path),
                "ENCAPTIO_PGBACKREST_REPO2_PATH": str(s.repo2_path),
                "ENCAPTIO_PGBACKREST_CONFIG_DIR": str(s.config_dir), "ENCAPTIO_PGBACKREST_JOB_RETRY": str(s.job_retry)}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def pg_stanza() -> Iterator[Stanza]:
    reason = _pgbackrest_available()
    if reason:
        pytest.skip(reason)
    owner = pwd.getpwnam("postgres")
    # Not under pytest's tmp_path: that is root's 0700 tree, which the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="encaptio-pgbackrest-test-"))
    os.chown(root, owner.pw_uid, owner.pw_gid)
    port = pgb.free_port()
    stanza = pgb.PgBackRest(stanza="encaptio_test", pg_path=root / "data", repo1_path=root / "repo1",
                            repo2_path=root / "repo2", config_dir=root / "conf", pg_port=port, pg_socket_path=root,
                            job_retry=0)
    cluster = None
    try:
        stanza.write_config(KeyStore(root / "keys"))
        # Scratch restores (verify, drill) go here rather than the system temp: all under root.
        pgb.make_owned_dir(stanza.config_dir / "scratch", "postgres")
        cluster = pgb.Cluster.create(root / "data", port=port, socket_dir=root)
        cluster.start()
        # The operator's path: setup reports the restart archive_mode needs, then finishes.
        with _environment(Stanza(root=root, stanza=stanza, cluster=cluster).env()):
            platform = Platform(get_settings(data_dir=root / "setup", database_url=cluster.url()))
            try:
                first = setup_postgres_backups(platform)
                assert first["status"] == "restart_required" and "archive_mode" in first["restart_required"]
                platform.db.dispose()
                cluster.stop()
                cluster.start()
                assert setup_postgres_backups(platform)["status"] == "ready"
            finally:
                platform.close()
        yield Stanza(root=root, stanza=stanza, cluster=cluster)
    finally:
        if cluster is not None:
            cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_platform(pg_stanza: Stanza, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """A fresh database in the throwaway cluster, with the stanza's ENCAPTIO_PGBACKREST_* set."""
    for name, value in pg_stanza.env().items():
        monkeypatch.setenv(name, value)
    name = f"encaptio_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_stanza.cluster.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    platform = Platform(get_settings(data_dir=tmp_path / "data", database_url=pg_stanza.cluster.url(name)))
    initialize(platform)
    yield platform
    platform.close()
    if pg_stanza.cluster.is_running():
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
