"""Schema migrations through Alembic, driven from code so the CLI, Dagster and tests share one path."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from encaptio_data.db.session import Database
from encaptio_data.errors import IntegrityError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _with_connection(database: Database, action: str, revision: str) -> None:
    config = alembic_config(database.url)
    sqlite = database.dialect == "sqlite"
    with database.engine.connect() as conn:
        if sqlite:
            # Batch mode rebuilds a SQLite table by copy, drop and rename; with foreign keys on,
            # the drop cascades (ON DELETE CASCADE / SET NULL) into every child table and the
            # children's rows are gone. The pragma is ignored inside a transaction, so it is set
            # before one begins; every key is checked again before the migration commits.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            # One connection and one transaction for the whole run: on PostgreSQL a failed
            # migration rolls back completely (DDL is transactional there).
            with conn.begin():
                config.attributes["connection"] = conn
                # Migrations that seal personal columns (0005) need the instance's key store.
                config.attributes["keys"] = database.keys
                getattr(command, action)(config, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise IntegrityError(f"migration to {revision} would leave {len(broken)} rows with a "
                                             f"dangling foreign key (first: {tuple(broken[0])}): rolled back")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


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
