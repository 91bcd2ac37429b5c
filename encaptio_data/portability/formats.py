"""Rows to and from JSON Lines, CSV and Parquet, losslessly and in batches.

Each column has a kind derived from its SQLAlchemy type (uuid, datetime, date, json, int,
float, bool, str); the kind decides how a value is written in each format and how it is
read back, so a row survives any of the three unchanged. CSV goes through Arrow's reader and
writer because they tell a NULL (an empty field) from an empty string (a quoted ``""``),
which Python's csv module cannot; JSON columns become JSON text in CSV and Parquet.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from encaptio_data.errors import IntegrityError, InvalidInputError

FORMATS = ("json", "csv", "parquet")
EXTENSIONS = {"json": "jsonl", "csv": "csv", "parquet": "parquet"}
BATCH_ROWS = 1_000

Columns = Sequence[tuple[str, str]]


def check_format(table_format: str) -> str:
    if table_format not in FORMATS:
        raise InvalidInputError(f"format {table_format!r} is not one of {', '.join(FORMATS)}")
    return table_format


def column_kind(column: sa.Column) -> str:
    kind = column.type
    if getattr(kind, "json_value", False):  # a sealed JSON column (db/sealing.py) reads as JSON
        return "json"
    if isinstance(kind, sa.Uuid):
        return "uuid"
    if isinstance(kind, sa.types.TypeDecorator):
        kind = kind.impl if isinstance(kind.impl, sa.types.TypeEngine) else kind.impl()
    if isinstance(kind, sa.DateTime):
        return "datetime"
    if isinstance(kind, sa.Date):
        return "date"
    if isinstance(kind, sa.JSON):
        return "json"
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.Integer):
        return "int"
    if isinstance(kind, sa.Float):
        return "float"
    if isinstance(kind, sa.String):
        return "str"
    raise TypeError(f"column {column.table.name}.{column.name} has a type ({column.type}) exports do not know")


def table_columns(table: sa.Table) -> list[tuple[str, str]]:
    return [(column.name, column_kind(column)) for column in table.columns]


_ARROW = {"uuid": pa.string(), "str": pa.string(), "json": pa.string(), "int": pa.int64(), "float": pa.float64(),
          "bool": pa.bool_(), "datetime": pa.timestamp("us", tz="UTC"), "date": pa.date32()}


def arrow_schema(columns: Columns, table_format: str, extra: Sequence[pa.Field] = ()) -> pa.Schema:
    native_times = table_format == "parquet"
    fields = [pa.field(name, _ARROW[kind] if native_times or kind not in {"datetime", "date"} else pa.string())
              for name, kind in columns]
    return pa.schema([*fields, *extra])


def _encode(value: Any, kind: str, table_format: str) -> Any:
    if value is None:
        return None
    if kind == "uuid":
        return str(value)
    if kind in {"datetime", "date"}:
        return value if table_format == "parquet" else value.isoformat()
    if kind == "json":
        return value if table_format == "json" else json.dumps(value, ensure_ascii=False)
    if kind == "str":
        return getattr(value, "value", value)
    return value


def _decode(value: Any, kind: str, table_format: str, where: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "uuid":
            return uuid.UUID(value)
        if kind == "datetime":
            moment = datetime.fromisoformat(value) if isinstance(value, str) else value
            if moment.tzinfo is None:
                raise ValueError(f"timestamp {value} has no time zone")
            return moment.astimezone(UTC)
        if kind == "date":
            return date.fromisoformat(value) if isinstance(value, str) else value
        if kind == "json":
            return value if table_format == "json" else json.loads(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{where}: value {str(value)[:80]!r} is not a valid {kind}: {exc}") from None
    return value


class RowWriter:
    """Writes batches of database rows (dicts) to one archive member in one format."""

    def __init__(self, sink: IO[bytes], columns: Columns, table_format: str, extra: Sequence[pa.Field] = ()) -> None:
        self.columns = list(columns)
        self.format = check_format(table_format)
        self.schema = arrow_schema(self.columns, table_format, extra)
        self.rows = 0
        self._sink = sink
        self._writer: Any = None
        if table_format == "parquet":
            self._writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), self.schema, compression="zstd")
        elif table_format == "csv":
            self._writer = pacsv.CSVWriter(pa.PythonFile(sink, mode="w"), self.schema)

    def write(self, rows: Sequence[dict[str, Any]], extra: dict[str, pa.Array] | None = None) -> None:
        if not rows:
            return
        encoded = {name: [_encode(row[name], kind, self.format) for row in rows] for name, kind in self.columns}
        if self.format == "json":
            extra_lists = {name: array.to_pylist() for name, array in (extra or {}).items()}
            for index in range(len(rows)):
                line = {name: values[index] for name, values in encoded.items()}
                line.update({name: values[index] for name, values in extra_lists.items()})
                self._sink.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
        else:
            arrays = [pa.array(encoded[name], type=self.schema.field(name).type) for name, _ in self.columns]
            arrays += [(extra or {})[field.name] for field in list(self.schema)[len(self.columns):]]
            self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += len(rows)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_rows(source: IO[bytes], columns: Columns, table_format: str, *, name: str,
              extra: Sequence[pa.Field] = ()) -> Iterator[tuple[list[dict[str, Any]], dict[str, list[Any]]]]:
    """Batches of decoded rows from one archive member, plus the extra columns (vectors) as lists.

    A member whose columns differ from the model's is refused naming the member: the
    manifest's schema version matched, so the file itself was altered.
    """
    check_format(table_format)
    expected = [n for n, _ in columns] + [f.name for f in extra]
    if table_format == "json":
        batch: list[dict[str, Any]] = []
        extras: dict[str, list[Any]] = {f.name: [] for f in extra}
        for number, line in enumerate(source, start=1):
            try:
                raw = json.loads(line)
            except ValueError:
                raise IntegrityError(f"{name}: line {number} is not JSON") from None
            if not isinstance(raw, dict) or sorted(raw) != sorted(expected):
                raise IntegrityError(f"{name}: line {number} does not have the columns {', '.join(expected)}")
            batch.append({n: _decode(raw[n], k, table_format, f"{name} line {number}") for n, k in columns})
            for field in extra:
                extras[field.name].append(raw[field.name])
            if len(batch) >= BATCH_ROWS:
                yield batch, extras
                batch, extras = [], {f.name: [] for f in extra}
        if batch:
            yield batch, extras
        return
    schema = arrow_schema(columns, table_format, extra)
    try:
        if table_format == "parquet":
            reader = pq.ParquetFile(pa.PythonFile(source, mode="r"))
            if reader.schema_arrow.names != expected:
                raise IntegrityError(f"{name}: columns {reader.schema_arrow.names} are not {expected}")
            batches: Iterator[pa.RecordBatch] = reader.iter_batches(batch_size=BATCH_ROWS)
        else:
            reader = pacsv.open_csv(pa.PythonFile(source, mode="r"),
                                    read_options=pacsv.ReadOptions(block_size=4 << 20),
                                    convert_options=pacsv.ConvertOptions(
                                        column_types=schema, strings_can_be_null=True,
                                        quoted_strings_can_be_null=False, include_columns=expected))
            if reader.schema.names != expected:
                raise IntegrityError(f"{name}: columns {reader.schema.names} are not {expected}")
            batches = iter(reader)
        for record_batch in batches:
            data = record_batch.cast(schema) if record_batch.schema != schema else record_batch
            lists = {n: data.column(n).to_pylist() for n in expected}
            rows = [{n: _decode(lists[n][i], k, table_format, name) for n, k in columns}
                    for i in range(data.num_rows)]
            yield rows, {f.name: lists[f.name] for f in extra}
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise IntegrityError(f"{name}: cannot be read as {table_format}: {' '.join(str(exc).split())[:200]}") from None
