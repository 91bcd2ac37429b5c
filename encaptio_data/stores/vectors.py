"""The vector store: a LanceDB database in a local directory or under an S3 prefix.

Callers create tables and search through the LanceDB API itself (``connect()``,
``open_table()``); this module decides where the database lives, how it reaches S3,
and turns LanceDB's failures into the platform's one-line errors.

S3 needs nothing beyond endpoint, region and credentials, moto included: LanceDB
commits a table version with a conditional put (If-None-Match), which AWS S3 and moto
both enforce, so concurrent writers are safe without a DynamoDB commit store
(``s3+ddb://``) or an ``aws_conditional_put`` option.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import boto3
import lancedb
import lancedb.table
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from encaptio_data.errors import InvalidKeyError, NotFoundError, SettingsError, StoreUnavailableError
from encaptio_data.settings import Settings

# LanceDB itself also allows '.', which would let "..", "x.lance" and the like through.
_TABLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")

# What LanceDB raises when it cannot reach its storage: ValueError ("Invalid input, ...
# IO { ... }") from the S3 client, OSError from the local filesystem, and RuntimeError
# ("lance error: LanceError(IO) ...") when S3 goes away after the connection opened.
_LANCE_FAILURES = (ValueError, OSError, RuntimeError)


@runtime_checkable
class VectorStore(Protocol):
    uri: str

    def connect(self) -> lancedb.DBConnection:
        """The LanceDB connection, opened on first use and reused afterwards."""
        ...

    def table_names(self) -> list[str]:
        """Sorted names of every table."""
        ...

    def open_table(self, name: str) -> lancedb.table.Table:
        """The table; NotFoundError if there is none by that name."""
        ...

    def count_rows(self) -> dict[str, int]:
        """Rows per table."""
        ...

    def drop_table(self, name: str) -> None:
        """Delete the table and its data; NotFoundError if there is none by that name."""
        ...

    def check(self) -> None:
        """Raise StoreUnavailableError unless the database can be listed."""
        ...

    def purge_history(self) -> int:
        """Remove what the storage itself keeps of files LanceDB has deleted; returns how many.

        LanceDB's cleanup deletes old data files, but in a versioned S3 bucket a delete only
        adds a marker and the bytes (erased text included) stay as noncurrent versions.
        """
        ...


def open_vector_store(settings: Settings) -> VectorStore:
    """The vector store the settings name: ``open_lancedb_store``, with a local serving copy
    (stores/vector_replica.py) when ENCAPTIO_LANCEDB_LOCAL_COPY is set."""
    if settings.lancedb_local_copy:
        from encaptio_data.stores.vector_replica import open_synced_vector_store

        return open_synced_vector_store(settings, settings.lancedb_local_copy)
    return open_lancedb_store(settings)


def open_lancedb_store(settings: Settings) -> VectorStore:
    """LanceDB on S3 when ENCAPTIO_LANCEDB_URI is s3://..., else in a local directory."""
    uri = settings.resolved_lancedb_uri
    scheme = urlsplit(uri).scheme if "://" in uri else ""
    try:
        if scheme == "s3":
            return S3VectorStore(uri, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
        if scheme:
            raise ValueError("must be s3://BUCKET[/PREFIX] or a local directory")
    except ValueError as exc:
        raise SettingsError(f"ENCAPTIO_LANCEDB_URI: {exc}") from None
    return LocalVectorStore(uri)


def _check_table_name(name: str) -> str:
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise InvalidKeyError(
            f"vector table name {name!r} must be 1-128 letters, digits, '_' or '-'"
        )
    return name


def _is_missing_table(exc: ValueError) -> bool:
    # LanceDB has no exception type for this; its own namespace code matches the same text.
    return "was not found" in str(exc)


# LanceDB's S3 errors are the whole Rust error chain (a few hundred characters of
# Debug output); the root cause sits near the end, as an S3 error code or an OS message.
_S3_ERROR = re.compile(r"<Code>([^<]+)</Code>(?:<Message>([^<]*)</Message>)?")
_OS_ERROR = re.compile(r'message: "([^"]+)"')


def _brief(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if s3_error := _S3_ERROR.search(text):
        return ": ".join(part for part in s3_error.groups() if part)
    if os_errors := _OS_ERROR.findall(text):
        return os_errors[-1]
    return text if len(text) <= limit else text[:limit] + "…"


class _LanceVectorStore:
    uri: str
    storage_options: dict[str, str] | None = None
    _connection: lancedb.DBConnection | None = None

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"vector store {self.uri} is unavailable: {_brief(exc)}")

    def _missing(self, name: str) -> NotFoundError:
        return NotFoundError(f"vector table {name!r} does not exist in {self.uri}")

    def connect(self) -> lancedb.DBConnection:
        if self._connection is None:
            try:
                # A long-lived reader (the search service) must see rows that another handle or
                # process committed since it opened the table; 0 re-checks the latest version on
                # every read, which on a local directory costs a stat.
                self._connection = lancedb.connect(self.uri, storage_options=self.storage_options,
                                                   read_consistency_interval=timedelta(0))
            except _LANCE_FAILURES as exc:
                raise self._unavailable(exc) from exc
        return self._connection

    def table_names(self) -> list[str]:
        db = self.connect()
        names: list[str] = []
        page_token: str | None = None
        try:
            while True:
                page = db.list_tables(page_token=page_token)
                names.extend(page.tables)
                page_token = page.page_token
                if not page_token:
                    return sorted(names)
        except _LANCE_FAILURES as exc:
            raise self._unavailable(exc) from exc

    def open_table(self, name: str) -> lancedb.table.Table:
        _check_table_name(name)
        try:
            return self.connect().open_table(name)
        except ValueError as exc:
            if _is_missing_table(exc):
                raise self._missing(name) from None
            raise

    def count_rows(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in self.table_names():
            try:
                counts[name] = self.open_table(name).count_rows()
            except NotFoundError:  # dropped since it was listed
                continue
        return counts

    def drop_table(self, name: str) -> None:
        # LanceDB reports a missing table when dropping from a local database but says
        # nothing on S3; opening it first makes both say NotFoundError.
        self.open_table(name)
        self.connect().drop_table(name, ignore_missing=True)

    def check(self) -> None:
        self.table_names()

    def purge_history(self) -> int:
        return 0  # a local directory keeps nothing of a deleted file

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class LocalVectorStore(_LanceVectorStore):
    """LanceDB in a directory, created on first connect."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.uri = os.path.expanduser(os.fspath(path))


class S3VectorStore(_LanceVectorStore):
    """LanceDB under ``s3://bucket/prefix`` on AWS or any S3-compatible endpoint."""

    def __init__(
        self,
        uri: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        allow_http: bool | None = None,
    ) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"{uri!r} must be s3://BUCKET[/PREFIX]")
        self.uri = uri.rstrip("/")
        options = {"aws_region": region}
        if endpoint_url:
            options["aws_endpoint"] = endpoint_url
            # Path-style (http://host/bucket/key) is already LanceDB's default; pinned
            # because S3-compatible servers on an IP or localhost cannot serve bucket
            # subdomains.
            options["aws_virtual_hosted_style_request"] = "false"
        if allow_http is None:
            allow_http = (endpoint_url or "").startswith("http://")
        if allow_http:
            options["allow_http"] = "true"
        for variable, option in (
            ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
            ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
            ("AWS_SESSION_TOKEN", "aws_session_token"),
        ):
            if os.environ.get(variable):
                options[option] = os.environ[variable]
        self.storage_options = options

    def purge_history(self) -> int:
        parts = urlsplit(self.uri)
        bucket, prefix = parts.netloc, parts.path.strip("/")
        client = boto3.client("s3", endpoint_url=self.storage_options.get("aws_endpoint"),
                              region_name=self.storage_options.get("aws_region"),
                              config=Config(s3={"addressing_style": "path"}))

        def delete(versions: list[dict[str, str]]) -> int:
            for start in range(0, len(versions), 1000):
                answer = client.delete_objects(Bucket=bucket,
                                               Delete={"Objects": versions[start:start + 1000], "Quiet": True})
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise StoreUnavailableError(f"vector store {self.uri}: cannot delete {first['Key']} version "
                                                f"{first.get('VersionId')}: {first.get('Message')}")
            return len(versions)

        purged, markers = 0, []
        try:
            pages = client.get_paginator("list_object_versions").paginate(
                Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
            for page in pages:
                # LanceDB never reads a noncurrent version: every file it writes is new, or a
                # pointer it overwrites on purpose.
                purged += delete([{"Key": v["Key"], "VersionId": v["VersionId"]}
                                  for v in page.get("Versions", []) if not v["IsLatest"]])
                markers += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
            # Markers last: removing one before the versions under it would bring a file back.
            purged += delete(markers)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from exc
        return purged
