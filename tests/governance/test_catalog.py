"""The data catalog: complete for the model and the code location, and its PII check catches
personal data in a column that is not classified personal."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typer.testing import CliRunner

from encaptio_data.bootstrap import initialize
from encaptio_data.cli import app
from encaptio_data.db.enums import DataClassification
from encaptio_data.db.models import Base, Capsule, ColumnGroup, catalogued, personal, personal_columns
from encaptio_data.db.session import Database
from encaptio_data.governance.catalog import (
    ASSETS,
    RETENTION_CLASSES,
    build_catalog,
    catalog_problems,
    check_catalog,
    unclassified_pii,
)
from encaptio_data.platform import Platform
from encaptio_data.settings import get_settings


def test_every_table_and_column_is_catalogued() -> None:
    catalog = build_catalog()
    assert catalog["problems"] == [] and catalog["complete"]
    assert {t["name"] for t in catalog["tables"]} == set(Base.metadata.tables)
    for table in catalog["tables"]:
        assert table["catalogued"], table["name"]
        assert table["owner"].startswith("team:") and table["description"]
        assert table["classification"] in {c.value for c in DataClassification}
        assert table["retention"] in RETENTION_CLASSES
        for column in table["columns"]:
            assert column["classification"] is not None and column["group"] in table["groups"], \
                f"{table['name']}.{column['name']} is unclassified"
            assert column["description"]
    # The catalog's personal columns about subjects are exactly the model's personal(...) declarations.
    about_subjects = {(t["name"], c["name"]) for t in catalog["tables"] for c in t["columns"]
                      if c["classification"] in {"personal", "sensitive"}
                      and t["groups"][c["group"]]["subject_data"]}
    assert about_subjects == {(t, c) for t, columns in personal_columns().items() for c in columns}


def test_a_new_unclassified_column_makes_the_catalog_incomplete() -> None:
    copy = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(copy)
    copy.tables["users"].append_column(sa.Column("nickname", sa.String(100)))
    assert catalog_problems(copy) == ["column users.nickname is unclassified: add it to a column group"]
    sa.Table("gov_scratch", copy, sa.Column("id", sa.Integer, primary_key=True))
    assert "table gov_scratch has no catalog entry (@catalogued in db/models.py)" in catalog_problems(copy)


class _ScratchBase(DeclarativeBase):
    pass


def test_a_catalog_that_contradicts_the_personal_declarations_fails_at_import() -> None:
    groups = {"keys": ColumnGroup("ids", DataClassification.INTERNAL, ("id",)),
              "contact": ColumnGroup("contact", DataClassification.INTERNAL, ("email",))}
    with pytest.raises(ValueError, match="declared personal but sits in the internal group 'contact'"):
        @catalogued(owner="team:x", description="x", classification=DataClassification.PERSONAL,
                    retention="account", groups=groups)
        class Contradiction(_ScratchBase):
            __tablename__ = "gov_contradiction"
            id: Mapped[int] = mapped_column(primary_key=True)
            email: Mapped[str] = personal(mapped_column(sa.String(100)))
    with pytest.raises(ValueError, match="names unknown column 'nmae'"):
        @catalogued(owner="team:x", description="x", classification=DataClassification.INTERNAL,
                    retention="account", groups={"k": ColumnGroup("ids", DataClassification.INTERNAL, ("id", "nmae"))})
        class Typo(_ScratchBase):
            __tablename__ = "gov_typo"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(sa.String(100))


def test_every_asset_of_the_code_location_is_catalogued() -> None:
    from encaptio_data.assets.governance import code_location, governance_assets

    asset_keys, _ = code_location()
    assert catalog_problems(asset_keys=asset_keys) == []
    governance_keys = {key.to_user_string() for asset in governance_assets for key in asset.keys}
    assert set(ASSETS) <= set(asset_keys) | governance_keys, "catalog entries that name no asset"
    assert catalog_problems(asset_keys=[*asset_keys, "brand_new_asset"]) == [
        "asset brand_new_asset has no catalog entry (governance.catalog.ASSETS)"]


def _scratch_table(db_platform: Platform) -> sa.Table:
    """A test-only table, outside the model: one unclassified text column that will hold emails."""
    metadata = sa.MetaData()
    table = sa.Table("gov_test_notes", metadata, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("note", sa.String(300)), sa.Column("topic", sa.String(50)))
    metadata.create_all(db_platform.db.engine)
    with db_platform.db.session() as session:
        session.execute(table.insert(), [
            {"id": 1, "note": "call back jane.roe@example.com about the invoice", "topic": "billing"},
            {"id": 2, "note": "meeting moved to Tuesday", "topic": "calendar"},
            {"id": 3, "note": "new address: j.doe@example.org", "topic": "contact"},
        ])
    return table


def test_pii_check_flags_an_unclassified_column_holding_emails(platform: Platform) -> None:
    table = _scratch_table(platform)
    try:
        result = unclassified_pii(platform.db, table.metadata)
        assert result["columns_scanned"] == 2 and result["values_sampled"] == 6
        assert result["alerts"] == [{"table": "gov_test_notes", "column": "note", "entity_type": "EMAIL_ADDRESS",
                                     "rows": 2, "sampled": 3, "classification": "unclassified",
                                     "example_rows": result["alerts"][0]["example_rows"]}]
        assert sorted(result["alerts"][0]["example_rows"]) == ["1", "3"]
        assert "jane.roe" not in json.dumps(result), "an alert names the place, never the value"
        assert catalog_problems(table.metadata, assets={}) == [
            "table gov_test_notes has no catalog entry (@catalogued in db/models.py)"]
    finally:
        table.drop(platform.db.engine)


def test_pii_check_flags_a_column_classified_internal_and_ignores_personal_ones(platform: Platform) -> None:
    from encaptio_data.accounts import add_user, ensure_organization

    with platform.db.session() as session:
        org = ensure_organization(session, name="Acme", slug="acme")
        user = add_user(session, email="ada@example.com", name="Ada", organization_id=org.id, role="creator")
        session.add(Capsule(organization_id=org.id, owner_id=user.id, title="Support",
                            description="questions to support-desk@example.com"))
    clean = check_catalog(platform)
    alerts = {(a["table"], a["column"], a["classification"]) for a in clean["alerts"]}
    assert alerts == {("capsules", "description", "internal")}
    assert not clean["passed"] and clean["problems"] == []
    # users.email holds an email too, but it is declared personal: not sampled, not an alert.
    assert not any(a["table"] == "users" for a in clean["alerts"])


def _invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


def test_catalog_command_prints_the_catalog_as_json() -> None:
    initialize(Platform(get_settings()))
    result = _invoke("catalog", "--json")
    assert result.exit_code == 0, result.output
    catalog = json.loads(result.stdout)
    users = next(t for t in catalog["tables"] if t["name"] == "users")
    assert users["groups"]["identity"] == {
        "description": "Who the person is: email address and display name.", "classification": "personal",
        "columns": ["email", "name"], "retention": "account", "subject_data": True, "scanned_by": None}
    assert {a["key"] for a in catalog["assets"]} == set(ASSETS)
    assert catalog["complete"] and catalog["problems"] == []

    checked = _invoke("catalog", "--check", "--json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)["check"]
    assert report["passed"] and report["columns_scanned"] > 0


def test_catalog_metadata_reaches_the_assets() -> None:
    from encaptio_data.assets.content import content, uploads
    from encaptio_data.assets.governance import with_catalog

    by_key = {spec.key.to_user_string(): spec for asset in with_catalog([content, uploads]) for spec in asset.specs}
    spec = by_key["content"]
    assert spec.tags["classification"] == "internal" and spec.tags["retention_class"] == "soft_deleted"
    assert spec.metadata["catalog/owner"] == "team:data-platform"
    schema = spec.metadata["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchema)
    columns = {c.name: c for c in schema.columns}
    assert set(columns) == set(Base.metadata.tables["content"].c.keys())
    assert columns["filename"].description.startswith("[internal] What the file is")
    assert columns["id"].constraints.unique and columns["deleted_at"].constraints.nullable
    assert "dagster/column_schema" not in by_key["uploads"].metadata  # objects, no table
    assert by_key["uploads"].tags["classification"] == "internal"


def test_digests_are_not_sampled_but_numbers_that_look_like_them_are(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'scratch.sqlite3'}")
    metadata = sa.MetaData()
    table = sa.Table("gov_values", metadata, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("value", sa.String(100)))
    metadata.create_all(database.engine)
    values = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)]
    values += [str(uuid.uuid4()), "k1:" + hashlib.sha256(b"x").hexdigest(),
               "card 4111-1111-1111-1111 on file", "4111-1111-1111-1111", "DE89370400440532013000"]
    with database.session() as session:
        session.execute(table.insert(), [{"id": i, "value": v} for i, v in enumerate(values)])
    try:
        alerts = unclassified_pii(database, metadata)["alerts"]
        assert {(a["entity_type"], a["rows"]) for a in alerts} == {("CREDIT_CARD", 2), ("IBAN_CODE", 1)}
    finally:
        database.dispose()
