"""Schema migrations through Alembic, driven from code so the CLI, Dagster and tests share one path."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from encaptio_data.db.session import Database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _with_connection(database: Database, action: str, revision: str) -> None:
    config = alembic_config(database.url)
    # One connection and one transaction for the whole run: on PostgreSQL a failed
    # migration rolls back completely (DDL is transactional there).
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


def upgrade(database: Database, revision: str = "head") -> None:
    database.check()
    _with_connection(database, "upgrade", revision)


def downgrade(database: Database, revision: str) -> None:
    database.check()
    _with_connection(database, "downgrade", revision)


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have exactly one head, found {heads}")
    return heads[0]


def table_names(database: Database) -> list[str]:
    return sorted(name for name in sa.inspect(database.engine).get_table_names() if name != "alembic_version")
