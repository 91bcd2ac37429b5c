"""No key material or secret reaches a log, the Dagster event log or asset metadata.

A demo-sized workload (seed, a data subject access export, a backup on the embedded default, a
master-key rotation, Dagster materializations in process) runs with every Python log record
captured; then every captured text (log records, Dagster event log entries, materialization and
check metadata, the stored compliance report, the results the domain returned) is searched for
every secret the workload touched, in each form it could be written: raw bytes, their Python
repr, hex, base64 and URL-safe base64. The database password sits in the URL the platform was
given (PostgreSQL here trusts loopback, so any password connects and none is needed to reach it).
Key files must be owner-only.

Not exercised here: the pgBackRest repository passphrase (production backups need a cluster
set up for pgBackRest; tests/lifecycle/test_pgbackrest.py runs those). Its file is scanned for
whenever the workload's key store holds one.
"""

from __future__ import annotations

import base64
import json
import logging
import stat
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from encaptio_data.assets.governance import compliance_report, with_catalog
from encaptio_data.authz import system_principal
from encaptio_data.bootstrap import initialize
from encaptio_data.content.uploads import register_uploads
from encaptio_data.corpus import generate
from encaptio_data.db.enums import UserRole
from encaptio_data.demo import seed_demo
from encaptio_data.keys import KeyStore, rotate_master_key
from encaptio_data.lifecycle.backup import run_backup
from encaptio_data.platform import Platform
from encaptio_data.privacy.process import RequestProcessor
from encaptio_data.privacy.requests import Requests
from encaptio_data.settings import get_settings
from tests.governance.conftest import TINY, store_resources

DB_PASSWORD = "Pw-" + uuid.uuid4().hex
AWS_SECRET = "aws-" + uuid.uuid4().hex


def _forms(secret: bytes) -> set[str]:
    return {secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            base64.b64encode(secret).decode().rstrip("="), base64.urlsafe_b64encode(secret).decode().rstrip("="),
            repr(secret)[2:-1], secret.decode("latin-1")}


def _key_material(keys_dir: Path) -> dict[str, set[str]]:
    """Every key the store holds (masters current, next and retired, data keys, named secrets)."""
    store = KeyStore(keys_dir)
    found: dict[str, set[str]] = {}
    for path in [keys_dir / "master.key", keys_dir / "master.next.key", *sorted((keys_dir / "retired").glob("*.key"))]:
        if path.exists():
            found[f"master key {path.name}"] = _forms(path.read_bytes())
    for path in sorted((keys_dir / "secrets").glob("*.key")):
        found[f"secret {path.stem}"] = _forms(path.read_bytes())
    for path in sorted((keys_dir / "subjects").glob("*/*.json")):
        subject = json.loads(path.read_bytes())["subject"]
        found[f"data key of {subject}"] = _forms(store.data_key(subject, create=False))
    return found


def _dagster_texts(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    texts = []
    for record in instance.all_logs(result.run_id):
        texts += [record.user_message or "", str(record.dagster_event)]
    for event in result.all_events:
        data = event.event_specific_data
        metadata = getattr(getattr(data, "materialization", None), "metadata", None) or getattr(data, "metadata", {})
        texts += [json.dumps({k: v.value for k, v in (metadata or {}).items()}, default=str)]
    return texts


@pytest.fixture(params=["embedded", "production"])
def workload_platform(request: pytest.FixtureRequest, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> Platform:
    overrides: dict[str, Any] = {"data_dir": tmp_path / "data"}
    if request.param == "production":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        url = request.getfixturevalue("postgres_url")
        overrides |= {"database_url": url.replace("://postgres@", f"://postgres:{DB_PASSWORD}@"),
                      "object_store": f"s3://{request.getfixturevalue('s3_bucket')}/objects",
                      "s3_endpoint_url": request.getfixturevalue("s3_endpoint"),
                      "redis_url": request.getfixturevalue("redis_url"),
                      "cache_namespace": f"test-{uuid.uuid4().hex[:12]}"}
    platform = Platform(get_settings(**overrides))
    yield platform
    if request.param == "production":
        platform.cache.clear()
    platform.close()


@pytest.mark.xdist_group("governance-dagster")
def test_no_key_material_or_secret_in_logs_or_metadata(workload_platform: Platform,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    platform = workload_platform
    production = platform.settings.profile == "production"
    caplog.set_level(logging.DEBUG)
    returned: list[Any] = []

    returned.append(initialize(platform))
    returned.append(seed_demo(platform, TINY))
    register_uploads(platform.db, platform.objects)
    corpus = generate(TINY)
    creator = next(u for u in corpus.users if u.role is UserRole.CREATOR)
    admin = next(u for u in corpus.users if u.role is UserRole.ADMIN)
    system = system_principal("dagster")

    submitted = Requests(platform).submit(type="access", email=creator.email,
                                          organization_id=str(creator.organization_id))
    returned.append(RequestProcessor(platform).process(submitted.request["id"], operator=system))
    if not production:
        returned.append(run_backup(platform, operator=system))
    returned.append(rotate_master_key(platform, operator=admin.email))

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(with_catalog([compliance_report]), instance=instance,
                            resources=store_resources(platform))
    assert result.success
    stored = result.asset_materializations_for_node("compliance_report")[0].metadata["report_objects"].value
    with platform.objects.open(stored["json"]) as body:
        report_text = body.read().decode()

    texts = [caplog.text, *(r.getMessage() for r in caplog.records),
             *(r.exc_text or "" for r in caplog.records), *_dagster_texts(instance, result), report_text,
             json.dumps(returned, default=str)]
    haystack = "\n".join(texts)
    assert len(caplog.records) > 0 and "compliance_report" in haystack  # the capture saw the workload

    keys_dir = platform.settings.keys_dir
    secrets = _key_material(keys_dir)
    assert any(name.startswith("data key of") for name in secrets)
    assert sum(name.startswith("master key") for name in secrets) >= 2, "current and retired masters"
    if production:
        secrets["database password"] = {DB_PASSWORD}
        secrets["AWS secret access key"] = {AWS_SECRET}
    leaked = sorted(name for name, forms in secrets.items() if any(form in haystack for form in forms))
    assert leaked == []

    for path in [keys_dir, *keys_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"
