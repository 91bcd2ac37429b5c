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
- ``SealedFields`` is the same for a JSON object of which only some fields are personal (an
  event's payload: the query a user typed, beside counts and positions the aggregation reads
  in SQL). Each personal field is sealed on its own; a free-text field also gets a blind index
  (``<field>_index``: an HMAC of its normalized text), so equal queries can be counted in the
  database without opening them. A row without a subject (an anonymous session) cannot be
  tied to a person by any request, so its fields stay plain and only get their index; raw
  anonymous events are deleted after 90 days like the rest.

Value layout: ``sealed1:<subject id>:<urlsafe base64 of the envelope>``; the associated data
binds the value to its subject and to its column, so it cannot be moved to another row or
column unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper
from sqlalchemy.types import TypeDecorator

from encaptio_data.errors import IntegrityError
from encaptio_data.keys import KeyDestroyedError, KeyStore, decrypt, encrypt

SEALED_PREFIX = "sealed1:"
# What a sealed text reads as once its subject's key is destroyed, and what erasure writes.
ERASED = "[erased]"
EMAIL_INDEX_KEY = "email-index"
TEXT_INDEX_KEY = "text-index"
INDEX_SUFFIX = "_index"
# ASCII whitespace (RE2's \s, what the aggregation normalized with before the blind index), so
# published query texts keep the form they had.
_WHITESPACE = re.compile(r"[\t\n\f\r ]+")
NORMALIZED_TEXT_CHARS = 200

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


def _open_or_erased(keys: KeyStore, field_name: str, value: str, *, json_value: bool) -> Any:
    try:
        opened = open_sealed(keys, field_name, value)
    except KeyDestroyedError:
        return {} if json_value else ERASED
    return json.loads(opened) if json_value else opened


def _attached_keys(dialect: Dialect, field_name: str) -> KeyStore:
    keys = _KEYS_BY_DIALECT.get(dialect)
    if keys is None:
        raise IntegrityError(f"cannot open sealed {field_name}: this database has no key store attached")
    return keys


class Sealed(TypeDecorator[Any]):
    """A personal text (or JSON) column stored sealed; ``field_name`` is bound into every value."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, field_name: str, *, json_value: bool = False) -> None:
        super().__init__()
        self.field_name = field_name
        self.json_value = json_value

    def seal_with(self, keys: KeyStore, subject: Any, value: Any) -> Any:
        """The value to store for ``subject``; unchanged when there is nothing to seal (the bind
        step then refuses a plaintext left without a subject)."""
        if subject is None or value is None or is_sealed(value):
            return value
        return seal(keys, subject, self.field_name, value, json_value=self.json_value)

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
            return _open_or_erased(_attached_keys(dialect, self.field_name), self.field_name, value,
                                   json_value=self.json_value)
        return json.loads(value) if self.json_value else value


def normalize_text(text: str) -> str:
    """The form equal queries share: lower case, inner whitespace collapsed, trimmed, at most 200 characters."""
    return _WHITESPACE.sub(" ", text.lower()).strip()[:NORMALIZED_TEXT_CHARS]


def text_indexer(keys: KeyStore) -> Callable[[str], str]:
    """The blind index of free text (its normalized form under a key-store secret), for counting
    equal texts without reading them; the secret is read once per indexer."""
    secret = keys.secret(TEXT_INDEX_KEY)
    return lambda text: hmac.new(secret, normalize_text(text).encode(), hashlib.sha256).hexdigest()


class SealedFields(TypeDecorator[Any]):
    """A JSON object column whose personal fields are sealed one by one under the row's subject.

    ``fields`` names the personal fields (None: every field); ``indexed`` those of them that are
    free text and get a blind index beside them. Reading opens the sealed fields (a destroyed
    key reads as ``ERASED``); the other fields, and the indexes, stay readable in SQL.
    """

    impl = sa.JSON
    cache_ok = True
    json_value = True  # erasure blanks it to {}, exports read it as JSON

    def __init__(self, field_name: str, *, fields: tuple[str, ...] | None = None, indexed: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.field_name = field_name
        self.fields = fields
        self.indexed = indexed

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(postgresql.JSONB() if dialect.name == "postgresql" else sa.JSON())

    def field_label(self, name: str) -> str:
        return f"{self.field_name}.{name}"

    def is_index(self, name: str) -> bool:
        return name.endswith(INDEX_SUFFIX) and name.removesuffix(INDEX_SUFFIX) in self.indexed

    def personal_fields(self, value: dict[str, Any]) -> list[str]:
        if self.fields is not None:
            return [name for name in self.fields if name in value]
        return [name for name in value if not self.is_index(name)]

    def seal_with(self, keys: KeyStore, subject: Any, value: Any, *,
                  indexer: Callable[[str], str] | None = None) -> Any:
        if not isinstance(value, dict):
            return value  # not an object: analytics quarantines it as a malformed payload
        sealed = dict(value)
        for name in self.personal_fields(value):
            plain = value[name]
            if plain is None or is_sealed(plain):
                continue
            if name in self.indexed:
                if not isinstance(plain, str):
                    continue  # not the text it should be: left for analytics to quarantine as malformed
                indexer = indexer or text_indexer(keys)
                sealed[name + INDEX_SUFFIX] = indexer(plain)
            if subject is not None:
                sealed[name] = seal(keys, subject, self.field_label(name), plain, json_value=True)
        return sealed if sealed != value else value

    def open_field(self, keys: KeyStore, name: str, value: Any) -> Any:
        """One field's plaintext (as is when not sealed); KeyDestroyedError when its subject was erased."""
        return json.loads(open_sealed(keys, self.field_label(name), value)) if is_sealed(value) else value

    def _storage_only(self, value: Any) -> bool:
        """Whether the stored object holds anything a reader must not get as is: sealed fields, or
        blind indexes (keyed by this instance's secret: meaningless anywhere else, and recomputed
        on every write)."""
        return isinstance(value, dict) and any(is_sealed(v) or self.is_index(k) for k, v in value.items())

    def open_with(self, keys: KeyStore | None, value: Any) -> Any:
        """The object as its writer gave it: sealed fields opened (``ERASED`` once the subject's key
        is destroyed), blind indexes left out."""
        if not self._storage_only(value):
            return value
        opened = {}
        for name, field_value in value.items():
            if self.is_index(name):
                continue
            if not is_sealed(field_value):
                opened[name] = field_value
                continue
            if keys is None:
                raise IntegrityError(f"cannot open sealed {self.field_name}: this database has no key store attached")
            try:
                opened[name] = self.open_field(keys, name, field_value)
            except KeyDestroyedError:
                opened[name] = ERASED
        return opened

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if self._storage_only(value):
            return self.open_with(_KEYS_BY_DIALECT.get(dialect), value)
        return value


@dataclass(frozen=True)
class SealingRule:
    """How one table's rows are sealed: whose key, and columns derived from a plaintext value first
    (derived column -> (source column, function of the key store and the source value))."""

    subject_column: str
    derived: dict[str, tuple[str, Callable[[KeyStore, Any], Any]]] = field(default_factory=dict)


RULES: dict[str, SealingRule] = {}


def sealed_columns(table: sa.Table) -> list[sa.Column[Any]]:
    return [column for column in table.columns if isinstance(column.type, (Sealed, SealedFields))]


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
    indexer = text_indexer(keys) if any(isinstance(c.type, SealedFields) and c.type.indexed for c in columns) else None
    result = []
    for row in rows:
        row = dict(row)
        by_column = {column: row.get(name) for column, name in names.items()}
        for column, (source, derive) in rule.derived.items():
            if by_column.get(source) is not None and not is_sealed(by_column[source]):
                row[names[column]] = derive(keys, by_column[source])
        subject = by_column.get(rule.subject_column)
        for column in columns:
            if names[column.name] in row:
                row[names[column.name]] = column.type.seal_with(keys, subject, row[names[column.name]], **(
                    {"indexer": indexer} if isinstance(column.type, SealedFields) else {}))
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
            sealed = column.type.seal_with(keys, subject, value)
            if sealed is not value:
                plaintext[attribute] = value
                setattr(target, attribute, sealed)
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


def seal_value(keys: KeyStore, column: Any, subject: Any, value: Any) -> Any:
    """``value`` sealed for a Core update of one Sealed column (a Column or a mapped attribute)."""
    return getattr(column, "expression", column).type.seal_with(keys, subject, value)


def insert_rows(session: Any, target: sa.Table | type, rows: Iterable[dict[str, Any]]) -> None:
    """A bulk insert (Core table or ORM class) whose personal values are sealed on the way in."""
    rows = list(rows)
    if not rows:
        return
    table = target if isinstance(target, sa.Table) else target.__table__  # type: ignore[attr-defined]
    if table.name in RULES:
        rows = sealed_rows(keys_of(session), target, rows)
    session.execute(sa.insert(target), rows)


def _json_column(dialect_name: str, *, read: bool) -> Any:
    # SQLite may hold text that is not JSON (written around the ORM): it is read as text and
    # left as it is, for analytics to quarantine; PostgreSQL's jsonb is always JSON.
    if read and dialect_name == "sqlite":
        return sa.Text()
    return postgresql.JSONB() if dialect_name == "postgresql" else sa.JSON()


def _decoded(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def rewrite_json_rows(bind: sa.Connection, keys: KeyStore, table_name: str, column: str,
                      change: Callable[[KeyStore, Any, Any], Any], *, create_keys: bool,
                      batch: int = 5_000) -> int:
    """Rewrite a JSON column of a table with an ``id`` and a ``user_id``, in batches of ``batch``
    rows in id order: ``change(keys, user_id, value)`` returns the new value, or the same object
    when the row is to stay as it is. Returns the rows changed; safe to re-run after a crash
    (rows already rewritten come back unchanged).

    For migrations and repairs that seal, or open, rows stored before (or around) sealing.
    """
    dialect = bind.dialect.name
    source = sa.table(table_name, sa.column("id", sa.Uuid()), sa.column("user_id", sa.Uuid()),
                      sa.column(column, _json_column(dialect, read=True)))
    target = sa.table(table_name, sa.column("id", sa.Uuid()), sa.column(column, _json_column(dialect, read=False)))
    changed, last = 0, None
    while True:
        query = sa.select(source.c.id, source.c.user_id, source.c[column]).order_by(source.c.id).limit(batch)
        rows = bind.execute(query if last is None else query.where(source.c.id > last)).all()
        if not rows:
            return changed
        last = rows[-1].id
        if create_keys:  # one flush to disk for the batch's new keys, not two fsyncs each
            keys.ensure_data_keys({str(row.user_id) for row in rows if row.user_id is not None})
        updates = []
        for row in rows:
            value = _decoded(row[2])
            new = change(keys, row.user_id, value)
            if new is not value:
                updates.append({"row_id": row.id, "value": new})
        if updates:
            bind.execute(sa.update(target).where(target.c.id == sa.bindparam("row_id"))
                         .values({column: sa.bindparam("value")}), updates)
            changed += len(updates)


def seal_stored(database_engine: sa.Engine, keys: KeyStore, table: sa.Table) -> int:
    """Seal in place what was written around the sealing path into ``table``'s SealedFields
    columns (plain text of rows that have a subject, free text without its index); idempotent."""
    if RULES[table.name].subject_column != "user_id":
        raise IntegrityError(f"{table.name}: seal_stored reads the subject from user_id")
    changed = 0
    for column in sealed_columns(table):
        kind = column.type
        if not isinstance(kind, SealedFields):
            continue
        indexer = text_indexer(keys)
        with database_engine.begin() as conn:
            changed += rewrite_json_rows(
                conn, keys, table.name, column.name,
                lambda keys, subject, value, kind=kind: kind.seal_with(keys, subject, value, indexer=indexer),
                create_keys=True)
    return changed
