"""A small demo corpus carried through the whole pipeline once per module, on the embedded default.

Embedding is the slow step (the real model on 2 cores), so the built platform is shared
by the read-only search tests; tests that change data build their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from encaptio_data.bootstrap import initialize
from encaptio_data.content.ingest import run_content_pipeline
from encaptio_data.corpus import Corpus, CorpusSpec, generate
from encaptio_data.demo import seed_demo
from encaptio_data.platform import Platform
from encaptio_data.settings import get_settings

SMALL = CorpusSpec(seed=11, organizations=2, users_per_organization=4, capsules_per_organization=2,
                   files_per_capsule=6, events_per_capsule=10)


def build(platform: Platform, spec: CorpusSpec) -> Corpus:
    initialize(platform)
    seed_demo(platform, spec)
    run_content_pipeline(platform)
    return generate(spec)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Corpus]]:
    data_dir: Path = tmp_path_factory.mktemp("search") / "data"
    platform = Platform(get_settings(data_dir=data_dir))
    corpus = build(platform, SMALL)
    yield platform, corpus
    platform.close()
