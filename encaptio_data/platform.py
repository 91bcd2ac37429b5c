"""The four stores opened together from one Settings object.

Domain functions take a ``Platform`` (or the single store they need) and plain values;
the CLI, the Dagster resources and the tests all build it the same way, so the embedded
default and production differ only in settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from encaptio_data.db.session import Database
from encaptio_data.keys import KeyStore
from encaptio_data.settings import Settings, get_settings
from encaptio_data.stores.cache import Cache, open_cache
from encaptio_data.stores.objects import ObjectStore, open_object_store
from encaptio_data.stores.vectors import VectorStore, open_vector_store


@dataclass
class Platform:
    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.resolved_database_url, keys=KeyStore(self.settings.keys_dir))

    @cached_property
    def objects(self) -> ObjectStore:
        return open_object_store(self.settings)

    @cached_property
    def vectors(self) -> VectorStore:
        return open_vector_store(self.settings)

    @cached_property
    def cache(self) -> Cache:
        return open_cache(self.settings)

    def check(self) -> None:
        """Fail with one line naming the first store that cannot be reached."""
        self.db.check()
        self.objects.check()
        self.vectors.check()
        self.cache.ping()

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
