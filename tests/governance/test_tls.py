"""Transport security: the TLS settings of docs/security.md are accepted and reach the drivers.

No TLS server runs here, so each test asserts what the driver was told (the SQLAlchemy URL and
the keyword arguments psycopg receives, redis-py's connection class and its SSL options, the
S3 endpoints of boto3 and LanceDB) and, where a plain-text server is at hand, that the driver
really insists on TLS: libpq refuses the test PostgreSQL ("server does not support SSL").
"""

from __future__ import annotations

import ssl

import pytest
import redis
import sqlalchemy as sa

from encaptio_data.db.session import Database
from encaptio_data.errors import StoreUnavailableError
from encaptio_data.platform import Platform
from encaptio_data.settings import get_settings
from encaptio_data.stores.cache import RedisCache
from encaptio_data.stores.objects import open_object_store
from encaptio_data.stores.vectors import open_vector_store
from tests.conftest import POSTGRES_ADMIN_URL


def test_postgresql_sslmode_is_accepted_and_passed_to_psycopg() -> None:
    url = ("postgresql+psycopg://app@db.internal:5432/encaptio"
           "?sslmode=verify-full&sslrootcert=/etc/encaptio/tls/ca.pem")
    settings = get_settings(database_url=url)
    database = Platform(settings).db
    try:
        assert dict(database.engine.url.query) == {"sslmode": "verify-full", "sslrootcert": "/etc/encaptio/tls/ca.pem"}
        _, connect_kwargs = database.engine.dialect.create_connect_args(database.engine.url)
        assert connect_kwargs["sslmode"] == "verify-full"
        assert connect_kwargs["sslrootcert"] == "/etc/encaptio/tls/ca.pem"
    finally:
        database.dispose()


def test_sslmode_require_reaches_libpq() -> None:
    # The test server speaks plain text only: libpq, told to require TLS, refuses to go on.
    plain = POSTGRES_ADMIN_URL
    required = Database(plain + ("&" if "?" in plain else "?") + "sslmode=require")
    try:
        with pytest.raises(StoreUnavailableError, match="SSL"):
            required.check()
    finally:
        required.dispose()
    allowed = Database(plain + ("&" if "?" in plain else "?") + "sslmode=prefer")
    try:
        allowed.check()  # prefer falls back to plain text: the parameter, not the URL, made the difference
    finally:
        allowed.dispose()


def test_rediss_url_gives_a_tls_connection_with_certificate_checks() -> None:
    url = "rediss://:s3cret@cache.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/encaptio/tls/ca.pem"
    settings = get_settings(redis_url=url)
    cache = Platform(settings).cache
    assert isinstance(cache, RedisCache)
    pool = cache._client.connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/encaptio/tls/ca.pem"
    assert pool.connection_kwargs["ssl_cert_reqs"] in ("required", ssl.CERT_REQUIRED)
    plain = RedisCache("redis://cache.internal:6379/0")
    assert not issubclass(plain._client.connection_pool.connection_class, redis.SSLConnection)


def test_https_endpoints_for_objects_and_vectors() -> None:
    settings = get_settings(object_store="s3://encaptio-prod/objects", s3_endpoint_url="https://minio.internal:9000",
                            lancedb_uri="s3://encaptio-prod/lancedb")
    objects = open_object_store(settings)
    assert objects._client.meta.endpoint_url == "https://minio.internal:9000"
    vectors = open_vector_store(settings)
    assert vectors.storage_options["aws_endpoint"] == "https://minio.internal:9000"
    assert "allow_http" not in vectors.storage_options  # LanceDB refuses plain http unless told otherwise
    aws = open_object_store(get_settings(object_store="s3://encaptio-prod/objects", s3_region="eu-central-1"))
    assert aws._client.meta.endpoint_url.startswith("https://")
    local = open_vector_store(get_settings(lancedb_uri="s3://b/p", s3_endpoint_url="http://127.0.0.1:9000"))
    assert local.storage_options["allow_http"] == "true"


def test_unknown_schemes_are_refused_with_the_variable_named() -> None:
    from encaptio_data.errors import SettingsError

    with pytest.raises(SettingsError, match="ENCAPTIO_REDIS_URL"):
        get_settings(redis_url="http://cache.internal:6379")
    with pytest.raises(SettingsError, match="ENCAPTIO_DATABASE_URL"):
        get_settings(database_url="mysql://db.internal/encaptio")
    assert sa.make_url(get_settings(database_url="postgresql+psycopg://a@b/c?sslmode=require").database_url
                       ).query["sslmode"] == "require"
