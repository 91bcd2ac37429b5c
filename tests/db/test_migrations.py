from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from encaptio_data.db import migrate
from encaptio_data.db.models import Base
from encaptio_data.db.session import Database

CORE_TABLES = {
    "content_extractions", "chunks",
    "analytics_quarantine", "daily_engagement", "daily_engagement_runs", "daily_top_queries", "pii_findings",
    "pii_scan_state", "privacy_budget",
    "organizations", "users", "capsules", "content", "interactions", "interaction_events", "consents",
    "processing_restrictions", "data_subject_requests", "audit_log", "retention_policies", "legal_holds",
    "backups", "erasure_ledger",
}


def test_one_head() -> None:
    assert migrate.head_revision()


def test_upgrade_creates_every_table_and_matches_the_model(empty_database: Database) -> None:
    migrate.upgrade(empty_database)
    assert set(migrate.table_names(empty_database)) == CORE_TABLES
    assert migrate.current_revision(empty_database) == migrate.head_revision()
    with empty_database.engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert drift == [], "the model and the migrations disagree: generate a new revision"


def test_upgrade_is_idempotent(empty_database: Database) -> None:
    migrate.upgrade(empty_database)
    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision()


def test_downgrade_to_base_and_back(empty_database: Database) -> None:
    migrate.upgrade(empty_database)
    migrate.downgrade(empty_database, "base")
    assert migrate.table_names(empty_database) == []
    migrate.upgrade(empty_database)
    assert set(migrate.table_names(empty_database)) == CORE_TABLES
