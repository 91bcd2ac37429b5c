"""Typed settings read from ENCAPTIO_* environment variables.

Every setting has an embedded default that needs no server: a SQLite file, a local
versioned object store, a LanceDB directory and an in-process cache, all under
ENCAPTIO_DATA_DIR. Production points the same settings at PostgreSQL, S3, LanceDB on S3
and Redis. Nothing reads the environment at import time: call ``get_settings()``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from encaptio_data.errors import SettingsError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENCAPTIO_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path(".encaptio"), description="Root of everything the embedded default writes.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default a SQLite file in the data dir.")
    object_store: str | None = Field(default=None, description="s3://bucket/prefix, or a directory; default <data dir>/objects.")
    s3_endpoint_url: str | None = Field(default=None, description="Any S3-compatible endpoint (moto, MinIO, Ceph).")
    s3_region: str = Field(default="us-east-1")
    s3_sse: str | None = Field(default="AES256", description="Server-side encryption for S3 puts; empty to disable.")
    lancedb_uri: str | None = Field(default=None, description="LanceDB URI; default <data dir>/lancedb.")
    lancedb_local_copy: str | None = Field(
        default=None, description="Directory of a local serving copy of an s3:// LanceDB: searches read it, "
                                  "`encaptio vectors sync` refreshes it; unset means searches read the LanceDB URI.")
    redis_url: str | None = Field(default=None, description="redis://...; unset means an in-process cache.")
    search_prewarm: bool = Field(
        default=True, description="Load the search indexes into the process's index cache in the background when "
                                  "a search service first sees them (~0.5 GiB at 1M chunks); false leaves them to "
                                  "be read on demand by the first queries.")
    embedder: Literal["onnx-int8", "torch"] = Field(
        default="onnx-int8",
        description="Encoder of all-MiniLM-L6-v2: onnx-int8 (int8 ONNX export run by onnxruntime, ~2.8x faster on CPU, "
                    "nDCG@10 within 1 % of fp32) or torch (sentence-transformers fp32). Switching re-embeds every item "
                    "on the next pipeline run; until then semantic search refuses with a one-line error.")
    embedder_threads: int | None = Field(default=None, ge=1, description="Intra-op threads of the onnx-int8 encoder "
                                         "for batches (pipeline); unset: every core. Query embedding uses 1.")
    cache_namespace: str = Field(default="encaptio", description="Prefix of every cache key, so tenants of one Redis never collide.")
    operator: str | None = Field(default=None, description="Who the CLI acts as, recorded in the audit trail.")

    @field_validator("database_url", "object_store", "lancedb_uri", "lancedb_local_copy", "redis_url", "s3_endpoint_url", "s3_sse", "operator")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme.split("+")[0] not in {"sqlite", "postgresql"}:
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return value

    @field_validator("object_store")
    @classmethod
    def _known_object_store(cls, value: str | None) -> str | None:
        if value and "://" in value:
            parts = urlsplit(value)
            if parts.scheme != "s3" or not parts.netloc:
                raise ValueError("must be s3://BUCKET[/PREFIX] or a local directory")
        return value

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be redis://HOST:PORT/DB or rediss://...")
        return value

    @cached_property
    def root(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.root / 'encaptio.sqlite3'}"

    @property
    def resolved_object_store(self) -> str:
        return self.object_store or str(self.root / "objects")

    @property
    def resolved_lancedb_uri(self) -> str:
        return self.lancedb_uri or str(self.root / "lancedb")

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def profile(self) -> str:
        """'embedded' when every store is the no-server default, else 'production'."""
        production = (self.database_url or "").startswith("postgresql") or self.redis_url or (
            (self.object_store or "").startswith("s3://")
        )
        return "production" if production else "embedded"


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value becomes one line naming its variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "ENCAPTIO_" + "_".join(str(part) for part in first["loc"]).upper()
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}") from None


def redact_url(url: str) -> str:
    """A URL safe to print: the password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
