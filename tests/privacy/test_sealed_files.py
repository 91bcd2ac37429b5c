"""Crypto-shredding reaches the copies erasure cannot: a replica that was not synced since, an older
version saved elsewhere, a backup. Each holds only ciphertext, unreadable once the key is gone."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from encaptio_data.content.files import open_file, put_file, read_content
from encaptio_data.content.uploads import upload_key
from encaptio_data.db.models import Content
from encaptio_data.keys import SEALED_MAGIC, KeyDestroyedError, KeyStore
from encaptio_data.lifecycle.replica import sync_replica
from encaptio_data.platform import Platform
from encaptio_data.stores.objects import LocalObjectStore
from tests.privacy.conftest import plant, run_pipeline
from tests.privacy.test_erasure import _erase


def test_copies_taken_before_an_erasure_cannot_be_decrypted_after_it(platform: Platform, officer: str,
                                                                     tmp_path: Path) -> None:
    keys = KeyStore(platform.settings.keys_dir)
    victim, bystander = plant(platform, "victim"), plant(platform, "bystander")
    run_pipeline(platform)
    key = upload_key(victim.organization_id, victim.capsule_id, f"{victim.canary}.md")
    second = f"A second draft by {victim.canary}.".encode()
    put_file(platform.objects, keys, key, second, uploaded_by=victim.user_id, content_type="text/markdown")
    run_pipeline(platform)
    versions = [v for v in platform.objects.list_versions(key) if not v.is_delete_marker]
    assert len(versions) == 2, "the first draft is a noncurrent version now"
    saved = {v.version_id: platform.objects.get(v.key, v.version_id) for v in versions}  # a backup's copy
    for raw in saved.values():
        assert raw.startswith(SEALED_MAGIC) and victim.canary.encode() not in raw
    replica = LocalObjectStore(tmp_path / "replica")  # another region's bucket, say
    sync_replica(platform.objects, replica, prefix="uploads/")
    replica_versions = [v for v in replica.list_versions(key) if not v.is_delete_marker]
    assert len(replica_versions) == 2
    with open_file(replica, keys, key) as stream:
        assert stream.read() == second, "readable while the subject exists"

    result = _erase(platform, victim.email, officer)
    assert result["status"] == "completed", result["status_reason"]
    assert list(platform.objects.list_versions(key)) == []

    for version in replica_versions:  # the replica job has not run since the erasure
        with pytest.raises(KeyDestroyedError, match="destroyed"):
            open_file(replica, keys, key, version.version_id).close()
    for raw in saved.values():
        with pytest.raises(KeyDestroyedError):
            keys.open_sealed(io.BytesIO(raw[len(SEALED_MAGIC):]), what="a saved copy")
        restored = platform.objects.put(f"restored/{victim.canary}.md", raw)  # a restore puts the bytes back
        with pytest.raises(KeyDestroyedError):
            open_file(platform.objects, keys, restored.key, restored.version_id).close()
        platform.objects.delete_all_versions(restored.key)

    with platform.db.session() as session:
        survivor = session.scalar(sa.select(Content).where(Content.uploaded_by == bystander.user_id))
        assert bystander.canary.encode() in read_content(platform.objects, keys, survivor)
