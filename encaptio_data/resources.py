"""Dagster resources over the four stores.

Each resource is a thin seam over one domain store: it holds optional overrides (unset
means "use the ENCAPTIO_* setting"), reads settings when a run starts (never at import
time) and hands the store to the asset. Tests and the embedded default run the same
assets with different settings, the shape of dagster's project_fully_featured.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from encaptio_data.db.session import Database
from encaptio_data.keys import KeyStore
from encaptio_data.settings import Settings, get_settings
from encaptio_data.stores.cache import Cache, open_cache
from encaptio_data.stores.objects import ObjectStore, open_object_store
from encaptio_data.stores.vectors import VectorStore, open_vector_store

class _StoreResource(dg.ConfigurableResource):
    """Overrides default to the ENCAPTIO_* settings; the store opens on first use in a run."""

    data_dir: str | None = None

    _store: Any = PrivateAttr(default=None)

    def settings(self) -> Settings:
        overrides = {k: v for k, v in self.model_dump().items() if v is not None}
        return get_settings(**overrides)

    def _open(self, settings: Settings) -> Any:
        raise NotImplementedError

    def _opened(self) -> Any:
        if self._store is None:
            self._store = self._open(self.settings())
        return self._store


class DatabaseResource(_StoreResource[Database]):
    """The relational store: SQLite in the data dir, or PostgreSQL (ENCAPTIO_DATABASE_URL)."""

    database_url: str | None = None

    def get(self) -> Database:
        return self._opened()

    def _open(self, settings: Settings) -> Database:
        return Database(settings.resolved_database_url, keys=KeyStore(settings.keys_dir))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._store is not None:
            self._store.dispose()


class ObjectStoreResource(_StoreResource[ObjectStore]):
    """Versioned objects: a local directory, or S3 (ENCAPTIO_OBJECT_STORE=s3://bucket/prefix)."""

    object_store: str | None = None
    s3_endpoint_url: str | None = None

    def get(self) -> ObjectStore:
        return self._opened()

    def _open(self, settings: Settings) -> ObjectStore:
        return open_object_store(settings)


class VectorStoreResource(_StoreResource[VectorStore]):
    """LanceDB: a directory in the data dir, or ENCAPTIO_LANCEDB_URI."""

    lancedb_uri: str | None = None
    s3_endpoint_url: str | None = None

    def get(self) -> VectorStore:
        return self._opened()

    def _open(self, settings: Settings) -> VectorStore:
        return open_vector_store(settings)


class CacheResource(_StoreResource[Cache]):
    """The in-process TTL cache, or Redis (ENCAPTIO_REDIS_URL)."""

    redis_url: str | None = None

    def get(self) -> Cache:
        return self._opened()

    def _open(self, settings: Settings) -> Cache:
        return open_cache(settings)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "database": DatabaseResource(),
        "object_store": ObjectStoreResource(),
        "vector_store": VectorStoreResource(),
        "cache": CacheResource(),
    }
