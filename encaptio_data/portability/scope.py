"""Which rows belong to an organization, derived from the foreign keys of the model.

A table is organization-owned when a chain of foreign keys leads from it to
``organizations``; a row belongs to the organization when every foreign key it holds into
an owned table points at a row of that organization, and at least one of them is set. The
"every" half keeps an archive closed under its own references (a row that also points into
another tenant could not be loaded anywhere), the "at least one" half drops platform-wide
rows (a retention policy with no organization). New tables join exports by declaring their
foreign keys, exactly as they join access exports and erasure (privacy/subjects.py).

Tables without such a chain hold platform-wide records, not the organization's data: the
audit chain (hash-linked across tenants), backups, the erasure ledger (keyed with this
instance's secrets), the analytics run ledger, the privacy budget and the PII scan state.
"""

from __future__ import annotations

import uuid
from functools import cache

import sqlalchemy as sa

from encaptio_data.db.models import Base, Organization

ROOT = Organization.__tablename__


def _edges(table: sa.Table) -> list[sa.ForeignKey]:
    """Foreign keys to other tables (a self reference says nothing about ownership)."""
    return [fk for fk in table.foreign_keys if fk.column.table is not table]


@cache
def owned_tables() -> tuple[sa.Table, ...]:
    """Organization-owned tables, parents before children (the order rows can be inserted in)."""
    owned: list[sa.Table] = []
    names: set[str] = set()
    for table in Base.metadata.sorted_tables:
        if table.name == ROOT or any(fk.column.table.name in names for fk in _edges(table)):
            owned.append(table)
            names.add(table.name)
    return tuple(owned)


def platform_tables() -> list[str]:
    owned = {t.name for t in owned_tables()}
    return sorted(t.name for t in Base.metadata.sorted_tables if t.name not in owned)


def self_references(table: sa.Table) -> list[sa.Column]:
    """Columns referencing the table itself: loaded after the rows, so their order does not matter."""
    return [fk.parent for fk in table.foreign_keys if fk.column.table is table]


def _condition(table: sa.Table, organization_id: uuid.UUID, owned_sets: dict[str, sa.CTE]) -> sa.ColumnElement[bool]:
    if table.name == ROOT:
        return table.c.id == organization_id
    inside, any_set = [], []
    for fk in _edges(table):
        members = owned_sets.get(fk.column.table.name)
        if members is None:
            continue
        points_inside = fk.parent.in_(sa.select(members.c[fk.column.name]))
        inside.append(sa.or_(fk.parent.is_(None), points_inside) if fk.parent.nullable else points_inside)
        any_set.append(points_inside)
    return sa.and_(*inside, sa.or_(*any_set))


def _owned_sets(organization_id: uuid.UUID, upto: sa.Table) -> dict[str, sa.CTE]:
    """One CTE per owned table above `upto`, each built on its parents' CTEs.

    Defining each table's membership once and referring to it keeps the SQL linear in the
    number of tables; re-deriving every parent inline grew it exponentially with depth.
    """
    tables = owned_tables()
    sets: dict[str, sa.CTE] = {}
    for table in tables[:tables.index(upto)]:
        referenced = {fk.column.name for child in tables for fk in _edges(child) if fk.column.table is table}
        if referenced:
            sets[table.name] = (sa.select(*(table.c[name] for name in sorted(referenced)))
                                .where(_condition(table, organization_id, sets)).cte(f"owned_{table.name}"))
    return sets


def rows_of(table: sa.Table, organization_id: uuid.UUID) -> sa.Select:
    """The organization's rows of table in primary-key order (stable archives, stable diffs)."""
    condition = _condition(table, organization_id, _owned_sets(organization_id, table))
    return sa.select(table).where(condition).order_by(*table.primary_key.columns)
