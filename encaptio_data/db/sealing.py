"""Personal columns sealed with their subject's data key: crypto-shredding for database rows.

Erasure deletes a subject's rows, but every database backup taken before still holds them,
and a backup cannot be edited. So the columns that say who a person is (a user's email,
name and profile, a request's email and requested changes) are stored as AES-256-GCM
ciphertext under the subject's own data key (keys.py); erasure destroys that key, and every
copy of those values, in any backup, becomes unreadable. The erasure ledger still re-applies
the erasure after a restore, for the rows this does not cover.

How it fits SQLAlchemy (no library does per-row keys, hence this module):

- ``Sealed`` is the column type. Reading opens a value with the key store attached to the
  engine (``attach``); a value whose key was destroyed reads as ``ERASED`` (or ``{}``).
  Writing accepts only values already sealed, NULL, and the blanks an erasure writes, so a
  personal value can never reach the database in the clear by mistake.
- ORM writes are sealed by mapper events (the subject comes from the row being flushed),
  and the object keeps its plaintext afterwards. Core bulk writes call ``sealed_rows``.
- Sealed values cannot be compared in SQL, so lookups by email go through a blind index:
  ``email_index`` is an HMAC of the normalized address under a key-store secret.

Value layout: ``sealed1:<subject id>:<urlsafe base64 of the envelope>``; the associated data
binds the value to its subject and to its column, so it cannot be moved to another row or
column unnoticed.
"""

from __future__ import annotations

import base64
import json
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper
from sqlalchemy.types import TypeDecorator

from encaptio_data.errors import IntegrityError
from encaptio_data.keys import KeyDestroyedError, KeyStore, decrypt, encrypt

SEALED_PREFIX = "sealed1:"
# What a sealed text reads as once its subject's key is destroyed, and what erasure writes.
ERASED = "[erased]"
EMAIL_INDEX_KEY = "email-index"

_KEYS_BY_DIALECT: weakref.WeakKeyDictionary[Dialect, KeyStore] = weakref.WeakKeyDictionary()


def attach(engine: sa.Engine, keys: KeyStore) -> None:
    """Seal and open this engine's personal columns with ``keys`` (every engine has its own dialect)."""
    _KEYS_BY_DIALECT[engine.dialect] = keys


def keys_of(bind: Any) -> KeyStore:
    """The key store attached to an engine, a connection or a session's engine."""
    dialect = bind.get_bind().dialect if hasattr(bind, "get_bind") else bind.dialect
    keys = _KEYS_BY_DIALECT.get(dialect)
    if keys is None:
        raise IntegrityError("this database has no key store attached (Database(url, keys=...)): "
                             "personal columns cannot be sealed or opened")
    return keys


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def _associated_data(subject: str, field_name: str) -> bytes:
    return f"{subject}|{field_name}".encode()


def seal(keys: KeyStore, subject: Any, field_name: str, value: Any, *, json_value: bool = False) -> str:
    subject = str(subject)
    plaintext = json.dumps(value, sort_keys=True, separators=(",", ":")) if json_value else str(value)
    envelope = encrypt(keys.data_key(subject), plaintext.encode(), _associated_data(subject, field_name))
    return f"{SEALED_PREFIX}{subject}:{base64.urlsafe_b64encode(envelope).decode()}"


def open_sealed(keys: KeyStore, field_name: str, value: str) -> str:
    """The plaintext of a sealed value; KeyDestroyedError when its subject was erased."""
    subject, _, encoded = value[len(SEALED_PREFIX):].partition(":")
    try:
        envelope = base64.urlsafe_b64decode(encoded.encode())
    except ValueError:
        raise IntegrityError(f"sealed {field_name} value is damaged (not base64)") from None
    key = keys.data_key(subject, create=False)
    return decrypt(key, envelope, _associated_data(subject, field_name), what=f"sealed {field_name} value").decode()


class Sealed(TypeDecorator[Any]):
    """A personal text (or JSON) column stored sealed; ``field_name`` is bound into every value."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, field_name: str, *, json_value: bool = False) -> None:
        super().__init__()
        self.field_name = field_name
        self.json_value = json_value

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or is_sealed(value):
            return value
        # The blanks erasure writes carry nothing about anyone.
        if self.json_value and value == {}:
            return "{}"
        if not self.json_value and value in ("", ERASED):
            return value
        raise IntegrityError(f"{self.field_name} would be written unsealed: personal values are sealed with "
                             "their subject's key (ORM writes are sealed on flush; bulk writes use sealed_rows)")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if is_sealed(value):
            keys = _KEYS_BY_DIALECT.get(dialect)
            if keys is None:
                raise IntegrityError(f"cannot open sealed {self.field_name}: this database has no key store attached")
            try:
                value = open_sealed(keys, self.field_name, value)
            except KeyDestroyedError:
                return {} if self.json_value else ERASED
        return json.loads(value) if self.json_value else value


@dataclass(frozen=True)
class SealingRule:
    """How one table's rows are sealed: whose key, and columns derived from a plaintext value first
    (derived column -> (source column, function of the key store and the source value))."""

    subject_column: str
    derived: dict[str, tuple[str, Callable[[KeyStore, Any], Any]]] = field(default_factory=dict)


RULES: dict[str, SealingRule] = {}


def sealed_columns(table: sa.Table) -> list[sa.Column[Any]]:
    return [column for column in table.columns if isinstance(column.type, Sealed)]


def _attribute_names(target: Any) -> dict[str, str]:
    """Column name -> the name rows use: the mapped attribute for an ORM class, else the column."""
    if isinstance(target, sa.Table):
        return {column.name: column.key for column in target.columns}
    mapper = sa.inspect(target)
    return {column.name: mapper.get_property_by_column(column).key for column in mapper.local_table.columns}


def sealed_rows(keys: KeyStore, target: sa.Table | type, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a Core (or ORM bulk) insert or update, personal values sealed, derived columns set.

    ``target`` is the table (rows keyed by column) or the mapped class (rows keyed by attribute).
    Values already sealed are kept; a row without a subject can only hold blanks (anonymized).
    """
    table = target if isinstance(target, sa.Table) else target.__table__  # type: ignore[attr-defined]
    rule = RULES.get(table.name)
    columns = sealed_columns(table)
    if rule is None or not columns:
        return [dict(row) for row in rows]
    names = _attribute_names(target)
    rows = list(rows)
    keys.ensure_data_keys(str(row[names[rule.subject_column]]) for row in rows
                          if row.get(names[rule.subject_column]) is not None)
    result = []
    for row in rows:
        row = dict(row)
        by_column = {column: row.get(name) for column, name in names.items()}
        for column, (source, derive) in rule.derived.items():
            if by_column.get(source) is not None and not is_sealed(by_column[source]):
                row[names[column]] = derive(keys, by_column[source])
        subject = by_column.get(rule.subject_column)
        for column in columns:
            value = row.get(names[column.name])
            if subject is not None and value is not None and not is_sealed(value):
                row[names[column.name]] = seal(keys, subject, column.type.field_name, value,
                                               json_value=column.type.json_value)
        result.append(row)
    return result


def seal_on_flush(cls: type, rule: SealingRule) -> None:
    """Seal the mapped class's personal attributes as its rows are flushed; keep plaintext in memory."""
    table: sa.Table = cls.__table__  # type: ignore[attr-defined]
    RULES[table.name] = rule
    columns = sealed_columns(table)
    subject_column = table.c[rule.subject_column]

    def before(mapper: Mapper[Any], connection: sa.Connection, target: Any, *, inserting: bool) -> None:
        names = _attribute_names(cls)
        state = sa.inspect(target)
        if inserting and getattr(target, names[subject_column.name]) is None and subject_column.primary_key:
            # The primary key's default is applied only after this event; the key needs it now.
            setattr(target, names[subject_column.name], subject_column.default.arg(None))
        changed = [c for c in columns if inserting or state.attrs[names[c.name]].history.has_changes()]
        if not changed:
            return
        keys = keys_of(connection)
        by_column = {name: getattr(target, attribute) for name, attribute in names.items()}
        for column, (source, derive) in rule.derived.items():
            if inserting or state.attrs[names[source]].history.has_changes():
                setattr(target, names[column], derive(keys, by_column[source]))
        subject = by_column[subject_column.name]
        plaintext = {}
        for column in changed:
            attribute, value = names[column.name], by_column[column.name]
            if subject is None or value is None or is_sealed(value):
                continue
            plaintext[attribute] = value
            setattr(target, attribute, seal(keys, subject, column.type.field_name, value,
                                            json_value=column.type.json_value))
        state.info["sealing_plaintext"] = plaintext

    def after(mapper: Mapper[Any], connection: sa.Connection, target: Any) -> None:
        for attribute, value in sa.inspect(target).info.pop("sealing_plaintext", {}).items():
            sa.orm.attributes.set_committed_value(target, attribute, value)

    sa.event.listen(cls, "before_insert", lambda m, c, t: before(m, c, t, inserting=True))
    sa.event.listen(cls, "before_update", lambda m, c, t: before(m, c, t, inserting=False))
    sa.event.listen(cls, "after_insert", after)
    sa.event.listen(cls, "after_update", after)


def email_index(keys: KeyStore, email: str) -> str:
    """The blind index of an email: equal addresses (any case), equal index; unguessable without the key."""
    return keys.hmac_hex(EMAIL_INDEX_KEY, email.strip().lower())


def seal_value(keys: KeyStore, column: Any, subject: Any, value: Any) -> str:
    """``value`` sealed for a Core update of one Sealed column (a Column or a mapped attribute)."""
    column_type = getattr(column, "expression", column).type
    return seal(keys, subject, column_type.field_name, value, json_value=column_type.json_value)


def insert_rows(session: Any, target: sa.Table | type, rows: Iterable[dict[str, Any]]) -> None:
    """A bulk insert (Core table or ORM class) whose personal values are sealed on the way in."""
    rows = list(rows)
    if not rows:
        return
    table = target if isinstance(target, sa.Table) else target.__table__  # type: ignore[attr-defined]
    if table.name in RULES:
        rows = sealed_rows(keys_of(session), target, rows)
    session.execute(sa.insert(target), rows)
