"""`encaptio init`: everything a fresh data dir or database needs, safe to run any number of times."""

from __future__ import annotations

import os
from pathlib import Path

from encaptio_data.db.migrate import current_revision, head_revision, table_names, upgrade
from encaptio_data.platform import Platform
from encaptio_data.settings import Settings

DAGSTER_INSTANCE_YAML = """\
# The embedded default: run, event-log and schedule storage in SQLite files beside this file.
telemetry:
  enabled: false
"""


def ensure_dagster_home(settings: Settings) -> Path:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_INSTANCE_YAML)
    return home


def initialize(platform: Platform) -> dict[str, object]:
    settings = platform.settings
    settings.root.mkdir(parents=True, exist_ok=True)
    # The data dir holds personal data and, in the embedded default, key files: owner only.
    os.chmod(settings.root, 0o700)
    platform.db.check()
    before = current_revision(platform.db)
    upgrade(platform.db)
    platform.objects.check()
    platform.vectors.check()
    platform.cache.ping()
    ensure_dagster_home(settings)
    return {
        "data_dir": str(settings.root),
        "profile": settings.profile,
        "database": platform.db.engine.url.render_as_string(hide_password=True),
        "revision_before": before,
        "revision": head_revision(),
        "tables": table_names(platform.db),
        "object_store": platform.objects.uri,
        "vector_store": platform.vectors.uri,
        "dagster_home": str(settings.dagster_home),
    }

