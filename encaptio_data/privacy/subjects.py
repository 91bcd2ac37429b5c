"""Who a data subject is, and everything that belongs to them, derived from the model.

The subject graph starts at the user's row and follows every foreign key that points at
a row already in the graph, except edges the model marks as references (NOT_OWNED) and
edges to organizations. Adding a table with a foreign key to users (or to anything a user
owns) extends access exports and erasure with no change here.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encaptio_data.accounts import email_is, normalize_email, parse_uuid
from encaptio_data.db.models import Base, Organization, User
from encaptio_data.errors import NotFoundError
from encaptio_data.keys import KeyStore

SUBJECT_REF_KEY = "subject-ref"


def subject_ref(keys: KeyStore, organization_id: uuid.UUID | str, email: str) -> str:
    """A keyed, stable pseudonym for (organization, email): joins records about a person
    (requests, audit entries, the erasure ledger) without keeping who they are."""
    return keys.hmac_hex(SUBJECT_REF_KEY, f"{organization_id}:{normalize_email(email)}")


def user_ref(keys: KeyStore, user: User) -> str | None:
    """The user's subject_ref; None once their data key is destroyed (a crypto-shredded row, as a
    restored backup brings back: its email is unreadable, and the key's tombstone says erased)."""
    if keys.is_destroyed(str(user.id)):
        return None
    return subject_ref(keys, user.organization_id, user.email)


def is_erased(keys: KeyStore, user: User, ledger: set[str]) -> bool:
    """Whether a user row belongs to a subject already erased (shredded key, or listed in the ledger)."""
    ref = user_ref(keys, user)
    return ref is None or ref in ledger


@dataclass(frozen=True)
class Edge:
    child: sa.Table
    column: sa.Column[Any]
    parent: sa.Table


def subject_edges(metadata: sa.MetaData = Base.metadata) -> list[Edge]:
    edges = []
    for table in metadata.sorted_tables:
        for fk in table.foreign_keys:
            parent = fk.column.table
            if parent.name == Organization.__tablename__ or fk.parent.info.get("subject_edge", True) is False:
                continue
            edges.append(Edge(table, fk.parent, parent))
    return edges


@dataclass
class SubjectGraph:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {table: len(rows) for table, rows in self.rows.items() if rows}

    def ids(self, table: str) -> list[Any]:
        """Primary key values of the table's rows (tuples for composite keys)."""
        return [row_key(Base.metadata.tables[table], row) for row in self.rows.get(table, [])]


def row_key(table: sa.Table, row: Any) -> Any:
    names = [column.name for column in table.primary_key.columns]
    return row[names[0]] if len(names) == 1 else tuple(row[name] for name in names)


def find_user(session: Session, *, email: str, organization_id: uuid.UUID | str | None) -> User:
    email = normalize_email(email)
    query = sa.select(User).where(email_is(session, email))
    if organization_id is not None:
        query = query.where(User.organization_id == parse_uuid(organization_id, "organization"))
    users = session.scalars(query.limit(2)).all()
    if not users:
        where = f" in organization {organization_id}" if organization_id else ""
        raise NotFoundError(f"no data subject with email {email}{where}")
    if len(users) > 1:
        raise NotFoundError(f"{email} exists in several organizations: name one with --org ID")
    return users[0]


def collect(session: Session, user: User, *, batch: int = 500) -> SubjectGraph:
    """Every row reachable from the user through owned foreign keys, breadth first."""
    graph = SubjectGraph(user.id, user.organization_id, user.email)
    users = Base.metadata.tables[User.__tablename__]
    graph.rows[users.name] = [dict(session.execute(sa.select(users).where(users.c.id == user.id)).mappings().one())]
    edges = subject_edges()
    seen: dict[str, set[Any]] = {users.name: {user.id}}
    frontier: deque[tuple[str, list[Any]]] = deque([(users.name, [user.id])])
    while frontier:
        parent_name, parent_ids = frontier.popleft()
        for edge in (e for e in edges if e.parent.name == parent_name):
            for start in range(0, len(parent_ids), batch):
                chunk = parent_ids[start:start + batch]
                found = session.execute(sa.select(edge.child).where(edge.column.in_(chunk))).mappings().all()
                known = seen.setdefault(edge.child.name, set())
                new = [dict(row) for row in found if row_key(edge.child, row) not in known]
                if not new:
                    continue
                known.update(row_key(edge.child, row) for row in new)
                graph.rows.setdefault(edge.child.name, []).extend(new)
                # Foreign keys reference single-column ids; a composite-key table is a leaf.
                if len(edge.child.primary_key.columns) == 1:
                    frontier.append((edge.child.name, [row_key(edge.child, row) for row in new]))
    return graph
