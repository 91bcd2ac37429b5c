"""The data catalog: owner, description, classification and retention class of every table,
column group and asset, read from where each is declared once.

* Tables and column groups: ``@catalogued(...)`` on the model (``db/models.py``), which writes
  ``table.info["catalog"]`` and each column's ``info["catalog_group"]``; the personal columns
  keep their one declaration, ``personal(...)``.
* Assets: ``ASSETS`` below (classification, retention class, the tables an asset writes,
  owner and a one-line description), keyed by asset key; plain data, so the CLI and tests
  read it without Dagster, and ``assets/governance.py`` turns it into asset metadata.

Two checks keep the catalog honest:

* ``catalog_problems``: static completeness. Every column of every table sits in a column
  group (so it is classified), every classification and retention class is known, a table is
  classified at least as high as its most protected column, every asset is declared.
* ``unclassified_pii``: the PII scanner (``analytics.pii.detect``) over a sample of the values
  of every text column the catalog does not classify personal or sensitive. A hit means a
  column holds personal data the model does not declare, so it escapes access exports and
  erasure: a modelling bug. Document text is left to the ``pii_findings`` asset, which scans
  all of it (``scanned_by``). Alerts name table, column, row and entity kind, never the value.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from encaptio_data.db.enums import DataClassification
from encaptio_data.db.models import Base
from encaptio_data.db.session import Database
from encaptio_data.lifecycle.retention import DEFAULTS, DataClass
from encaptio_data.platform import Platform

RANK = {DataClassification.PUBLIC.value: 0, DataClassification.INTERNAL.value: 1,
        DataClassification.PERSONAL.value: 2, DataClassification.SENSITIVE.value: 3}
PROTECTED = frozenset({DataClassification.PERSONAL.value, DataClassification.SENSITIVE.value})
SAMPLE_ROWS = 200
# Machine-made tokens (UUIDs, digests and keyed hashes in lower-case hex, ISO 8601 and compact
# timestamps) hold no PII, but their digit runs fit patterns by chance: a medical licence number
# in a sha256, a phone number in the microseconds of a timestamp. They are blanked before
# detection; card numbers (digits, dashes) and IBANs (upper case) never look like them.
_MACHINE_TOKENS = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])[0-9a-f]{16,}(?![0-9A-Za-z])"
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{8}T\d{6}Z")


def _texts(value: Any) -> list[str]:
    """The strings worth scanning in a value: each string leaf of a JSON document on its own (a
    document's punctuation glues unrelated numbers together), machine-made tokens blanked."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _texts(item)]
    if not isinstance(value, str):
        return []
    text = _MACHINE_TOKENS.sub(" ", value)
    return [text] if text.strip() else []


# The retention classes a table, column group or asset may name, with what enforces each. The
# time-limited ones are the lifecycle's data classes (their days live in lifecycle.retention).
RETENTION_CLASSES: dict[str, str] = {
    **{c.value: f"{DEFAULTS[c].covers}; {DEFAULTS[c].enforced_by}" for c in DataClass},
    "account": "kept while the account exists; an approved erasure removes the subject's rows "
               "(privacy.erasure), deleting an organization removes everything below it",
    "derived": "rebuilt from its source by the pipelines and removed with it (purge, erasure)",
    "compliance_record": "kept as evidence while the platform runs; an erasure blanks its personal columns",
    "configuration": "kept until an operator changes or releases it",
    "operational": "bookkeeping of the platform's own processes, no personal data; not time-limited yet",
}


@dataclass(frozen=True)
class AssetEntry:
    owner: str
    description: str
    classification: str
    retention: str
    tables: tuple[str, ...] = ()


def _asset(owner: str, classification: DataClassification, retention: str, description: str,
           *tables: str) -> AssetEntry:
    return AssetEntry(owner, description, classification.value, retention, tables)


_P, _I, _U = DataClassification.PERSONAL, DataClassification.INTERNAL, DataClassification.PUBLIC
_PLATFORM, _PRIVACY, _ANALYTICS = "team:data-platform", "team:privacy", "team:analytics"

ASSETS: dict[str, AssetEntry] = {
    "uploads": _asset(_PLATFORM, _I, "soft_deleted", "Creators' original files in the versioned object store."),
    "content": _asset(_PLATFORM, _I, "soft_deleted", "One row per distinct uploaded file.", "content"),
    "extracted_text": _asset(_PLATFORM, _I, "derived", "Text and structure extracted from each file.",
                             "content_extractions"),
    "chunks": _asset(_PLATFORM, _I, "derived", "Token-aware passages of extracted text.", "chunks"),
    "chunk_embeddings": _asset(_PLATFORM, _I, "derived", "Chunk vectors in the LanceDB chunks table."),
    "search_indexes": _asset(_PLATFORM, _I, "derived", "Full-text, scalar and vector indexes of the chunks table."),
    "interaction_events": _asset(_ANALYTICS, _P, "raw_events", "Raw interaction events written by the product.",
                                 "interaction_events"),
    "daily_engagement": _asset(_ANALYTICS, _I, "analytics", "Daily engagement aggregates and top queries.",
                               "daily_engagement", "daily_top_queries"),
    "anonymized_analytics": _asset(_ANALYTICS, _U, "analytics", "Differentially private weekly releases.",
                                   "privacy_budget"),
    "engagement_export": _asset(_ANALYTICS, _I, "analytics", "k-anonymous engagement export (Parquet)."),
    "interaction_event_retention": _asset(_ANALYTICS, _P, "raw_events",
                                          "Raw event days made ready for retention (aggregated, quarantined)."),
    "pii_findings": _asset(_PRIVACY, _I, "derived", "Where PII was detected, by keyed hash.", "pii_findings"),
    "cold_archive": _asset(_PLATFORM, _P, "raw_events", "Cold Parquet archive of raw events and old aggregates."),
    "retention_purge": _asset(_PLATFORM, _I, "operational", "What retention said must go, gone from every store."),
    "database_backups": _asset(_PLATFORM, _P, "backups", "Encrypted backups of the relational store.", "backups"),
    "vector_snapshots": _asset(_PLATFORM, _I, "backups", "Encrypted snapshots of the LanceDB chunks table."),
    "restore_drill_evidence": _asset(_PLATFORM, _I, "backups", "Evidence that backups restore, with RTO and RPO."),
    "object_replica": _asset(_PLATFORM, _P, "backups", "Every object version copied to a second store."),
    "compliance_report": _asset(_PRIVACY, _I, "compliance_record",
                                "Weekly report on every promise: requests, retention, consent, backups, quality, "
                                "catalog, audit chain."),
}


def _metadata(source: Platform | sa.MetaData | None) -> sa.MetaData:
    return source if isinstance(source, sa.MetaData) else Base.metadata


def _type_name(column: sa.Column[Any]) -> str:
    try:
        return str(column.type)
    except Exception:  # a type that only compiles against a dialect
        return type(column.type).__name__


def column_classification(column: sa.Column[Any]) -> str | None:
    """The column's classification: its personal(...) declaration, else its group's; None when unclassified."""
    if column.info.get("classification"):
        return str(column.info["classification"])
    group = column.info.get("catalog_group")
    entry = column.table.info.get("catalog") if group else None
    return entry["groups"][group]["classification"] if entry else None


def _table_entry(table: sa.Table) -> dict[str, Any]:
    entry = table.info.get("catalog")
    columns = []
    for column in table.columns:
        group_name = column.info.get("catalog_group")
        group = entry["groups"][group_name] if entry and group_name else None
        columns.append({"name": column.name, "type": _type_name(column), "nullable": bool(column.nullable),
                        "group": group_name, "classification": column_classification(column),
                        "description": group["description"] if group else None,
                        "personal_declared": bool(column.info.get("classification"))})
    if entry is None:
        return {"name": table.name, "catalogued": False, "columns": columns}
    return {"name": table.name, "catalogued": True, "owner": entry["owner"], "description": entry["description"],
            "classification": entry["classification"], "retention": entry["retention"],
            "groups": entry["groups"], "columns": columns}


def build_catalog(source: Platform | sa.MetaData | None = None,
                  assets: Mapping[str, AssetEntry] = ASSETS) -> dict[str, Any]:
    """The whole catalog as plain data: tables with their column groups and columns, assets,
    the retention classes, and whatever makes it incomplete."""
    metadata = _metadata(source)
    tables = [_table_entry(t) for t in sorted(metadata.tables.values(), key=lambda t: t.name)]
    asset_entries = []
    for key, entry in sorted(assets.items()):
        asset_entries.append({"key": key, **asdict(entry), "tables": list(entry.tables)})
    problems = catalog_problems(metadata, assets)
    counts = Counter(c["classification"] or "unclassified" for t in tables for c in t["columns"])
    return {"tables": tables, "assets": asset_entries, "retention_classes": RETENTION_CLASSES,
            "classifications": list(RANK), "counts": {"tables": len(tables), "assets": len(asset_entries),
                                                      "columns_by_classification": dict(sorted(counts.items()))},
            "problems": problems, "complete": not problems}


def catalog_problems(metadata: sa.MetaData | None = None, assets: Mapping[str, AssetEntry] = ASSETS,
                     asset_keys: Iterable[str] | None = None) -> list[str]:
    """One line per gap: an uncatalogued table, an unclassified column, an unknown class, an
    undeclared asset (when the code location's asset keys are given; a code location may load
    a subset of the catalogued assets, so entries without an asset are not a gap)."""
    metadata = metadata or Base.metadata
    problems: list[str] = []
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        entry = table.info.get("catalog")
        if entry is None:
            problems.append(f"table {table.name} has no catalog entry (@catalogued in db/models.py)")
            continue
        if entry["classification"] not in RANK:
            problems.append(f"table {table.name}: unknown classification {entry['classification']!r}")
        for name, group in entry["groups"].items():
            if group["retention"] not in RETENTION_CLASSES:
                problems.append(f"table {table.name} group {name}: unknown retention class {group['retention']!r}")
        for column in table.columns:
            classification = column_classification(column)
            if classification is None:
                problems.append(f"column {table.name}.{column.name} is unclassified: add it to a column group")
            elif RANK.get(classification, -1) > RANK.get(entry["classification"], -1):
                problems.append(f"table {table.name} is classified {entry['classification']} but its column "
                                f"{column.name} is {classification}")
    for key, asset in sorted(assets.items()):
        if asset.classification not in RANK:
            problems.append(f"asset {key}: unknown classification {asset.classification!r}")
        if asset.retention not in RETENTION_CLASSES:
            problems.append(f"asset {key}: unknown retention class {asset.retention!r}")
        for table_name in asset.tables:
            if table_name not in metadata.tables:
                problems.append(f"asset {key} names unknown table {table_name}")
    if asset_keys is not None:
        undeclared = sorted(set(asset_keys) - set(assets))
        problems += [f"asset {key} has no catalog entry (governance.catalog.ASSETS)" for key in undeclared]
    return problems


def _is_text(column: sa.Column[Any]) -> bool:
    kind = column.type
    return isinstance(kind, (sa.String, sa.Text, sa.JSON)) and not isinstance(kind, sa.Enum)


def scanned_columns(metadata: sa.MetaData | None = None) -> list[tuple[str, str]]:
    """(table, column) of every text column the PII check samples: unclassified, or classified
    below personal, and not left to a dedicated scanner."""
    metadata = metadata or Base.metadata
    found = []
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        groups = (table.info.get("catalog") or {}).get("groups", {})
        for column in table.columns:
            if not _is_text(column) or column_classification(column) in PROTECTED:
                continue
            group = groups.get(column.info.get("catalog_group") or "")
            if group and group.get("scanned_by"):
                continue
            found.append((table.name, column.name))
    return found


def unclassified_pii(db: Database, metadata: sa.MetaData | None = None, *,
                     sample_rows: int = SAMPLE_ROWS) -> dict[str, Any]:
    """Sample every scanned column (random rows, at most ``sample_rows`` each) and run the PII
    detector on the values. Tables the database does not have (yet) are skipped and named."""
    from encaptio_data.analytics.pii import detect

    metadata = metadata or Base.metadata
    present = set(sa.inspect(db.engine).get_table_names())
    alerts: list[dict[str, Any]] = []
    sampled: dict[str, int] = {}
    missing: set[str] = set()
    with db.engine.connect() as conn:
        for table_name, column_name in scanned_columns(metadata):
            if table_name not in present:
                missing.add(table_name)
                continue
            table = metadata.tables[table_name]
            column = table.c[column_name]
            keys = list(table.primary_key.columns)
            rows = conn.execute(sa.select(*keys, column).where(column.is_not(None))
                                .order_by(sa.func.random()).limit(sample_rows)).all()
            sampled[f"{table_name}.{column_name}"] = len(rows)
            found: Counter[str] = Counter()
            examples: list[str] = []
            for row in rows:
                kinds = {d.entity_type for text in _texts(row[-1]) for d in detect(text)}
                if kinds:
                    found.update(kinds)
                    if len(examples) < 3:
                        examples.append("/".join(str(v) for v in row[:-1]))
            for entity_type, count in sorted(found.items()):
                alerts.append({"table": table_name, "column": column_name, "entity_type": entity_type,
                               "rows": count, "sampled": len(rows),
                               "classification": column_classification(column) or "unclassified",
                               "example_rows": examples})
    return {"columns_scanned": len(sampled), "values_sampled": sum(sampled.values()), "alerts": alerts,
            "tables_missing": sorted(missing)}


def check_catalog(platform: Platform, *, asset_keys: Iterable[str] | None = None,
                  sample_rows: int = SAMPLE_ROWS) -> dict[str, Any]:
    """The catalog check: completeness (static) and PII in columns not classified personal."""
    problems = catalog_problems(asset_keys=asset_keys)
    pii = unclassified_pii(platform.db, sample_rows=sample_rows)
    return {"passed": not problems and not pii["alerts"], "problems": problems, **pii}
