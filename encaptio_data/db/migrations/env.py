"""Alembic environment: the URL comes from the caller (encaptio_data.db.migrate), never from alembic.ini."""

from __future__ import annotations

from alembic import context

import sqlalchemy as sa

from encaptio_data.db.models import Base, UTCDateTime
from encaptio_data.db.session import create_db_engine

config = context.config
connection = config.attributes.get("connection")


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    # Migrations must not import the live model: render our column types as plain SQLAlchemy.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(conn) -> None:  # type: ignore[no-untyped-def]
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the
    # table, so one migration script runs unchanged on both engines.
    context.configure(
        connection=conn,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        transactional_ddl=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = create_db_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
