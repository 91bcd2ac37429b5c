"""The chunks asset shows its token distribution as a picture against the 200-token target."""

from __future__ import annotations

import base64
import uuid

import dagster as dg
import sqlalchemy as sa

from encaptio_data.assets import content as content_assets
from encaptio_data.bootstrap import initialize
from encaptio_data.content.pipeline import chunk_token_counts, extract_content
from encaptio_data.content.uploads import register_uploads
from encaptio_data.corpus import CorpusSpec
from encaptio_data.db.models import Chunk, Content
from encaptio_data.demo import seed_demo
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform
from encaptio_data.resources import DatabaseResource
from encaptio_data.settings import get_settings


def test_the_chunks_asset_plots_tokens_per_chunk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    platform = Platform(get_settings(data_dir=tmp_path / "data"))
    initialize(platform)
    seed_demo(platform, CorpusSpec(seed=3, organizations=1, users_per_organization=3, capsules_per_organization=1,
                                   files_per_capsule=6, events_per_capsule=4, days=1))
    keys = KeyStore(platform.settings.keys_dir)  # the demo's uploads are sealed
    register_uploads(platform.db, platform.objects, keys=keys)
    extract_content(platform.db, platform.objects, keys=keys)
    with platform.db.session() as session:
        capsule = session.scalars(sa.select(Content.capsule_id).limit(1)).one()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("capsules", [str(capsule)])

    result = dg.materialize([content_assets.chunks], partition_key=str(capsule), instance=instance,
                            resources={"database": DatabaseResource(
                                data_dir=str(platform.settings.root),
                                database_url=platform.settings.resolved_database_url)})

    [materialization] = result.asset_materializations_for_node("chunks")
    metadata = materialization.metadata
    tokens = chunk_token_counts(platform.db, capsule)
    assert tokens and metadata["chunks_in_capsule"].value == len(tokens)
    assert metadata["mean_tokens_per_chunk"].value == round(sum(tokens) / len(tokens), 1)
    picture = metadata["tokens_per_chunk"].value
    assert picture.startswith("![tokens per chunk](data:image/png;base64,")
    assert base64.b64decode(picture.split(",", 1)[1].rstrip(")")).startswith(b"\x89PNG")
    # A soft-deleted item's chunks no longer count.
    with platform.db.session() as session:
        victim = session.scalars(sa.select(Chunk.content_id).where(Chunk.capsule_id == capsule).limit(1)).one()
        gone = session.scalar(sa.select(sa.func.count()).select_from(Chunk).where(Chunk.content_id == victim))
        session.get(Content, victim).deleted_at = sa.func.now()
    assert len(chunk_token_counts(platform.db, capsule)) == len(tokens) - gone
    assert chunk_token_counts(platform.db, uuid.uuid4()) == []
    platform.close()
