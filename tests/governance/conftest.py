"""A small demo corpus on both profiles, and the Dagster resources that point at the same stores."""

from __future__ import annotations

import pytest

from encaptio_data.content.uploads import register_uploads
from encaptio_data.corpus import Corpus, CorpusSpec, generate
from encaptio_data.demo import seed_demo
from encaptio_data.platform import Platform
from encaptio_data.resources import CacheResource, DatabaseResource, ObjectStoreResource, VectorStoreResource

# One organization (admin, privacy officer, creator), two capsules of two real files each and a
# few events: every section of the report has rows, and seeding takes seconds on both profiles.
TINY = CorpusSpec(seed=5, organizations=1, users_per_organization=3, capsules_per_organization=2,
                  files_per_capsule=2, events_per_capsule=12)


@pytest.fixture
def demo(platform: Platform) -> tuple[Platform, Corpus]:
    seed_demo(platform, TINY)
    register_uploads(platform.db, platform.objects)
    return platform, generate(TINY)


def store_resources(platform: Platform) -> dict[str, object]:
    settings = platform.settings
    data_dir = str(settings.data_dir)
    return {
        "database": DatabaseResource(data_dir=data_dir, database_url=settings.resolved_database_url),
        "object_store": ObjectStoreResource(data_dir=data_dir, object_store=settings.resolved_object_store,
                                            s3_endpoint_url=settings.s3_endpoint_url),
        "vector_store": VectorStoreResource(data_dir=data_dir, lancedb_uri=settings.resolved_lancedb_uri),
        "cache": CacheResource(data_dir=data_dir, redis_url=settings.redis_url),
    }
