"""An embedded-only platform for the tests whose subject is not the store (statistics, detection, key files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from encaptio_data.platform import Platform


@pytest.fixture
def embedded_platform(tmp_path: Path) -> Iterator[Platform]:
    from encaptio_data.bootstrap import initialize
    from encaptio_data.settings import get_settings

    instance = Platform(get_settings(data_dir=tmp_path / "data"))
    initialize(instance)
    yield instance
    instance.close()
