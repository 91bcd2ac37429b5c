"""What each store holds right now: the numbers behind `encaptio status`."""

from __future__ import annotations

import sqlalchemy as sa

from encaptio_data.db.migrate import current_revision, table_names
from encaptio_data.platform import Platform


def store_status(platform: Platform) -> dict[str, object]:
    db = platform.db
    tables = table_names(db)
    with db.engine.connect() as conn:
        rows = {name: conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one() for name in tables}
    objects = versions = delete_markers = 0
    total_bytes = 0
    for version in platform.objects.list_versions():
        if version.is_delete_marker:
            delete_markers += 1
            continue
        versions += 1
        if version.is_latest:
            objects += 1
            total_bytes += version.size
    return {
        "profile": platform.settings.profile,
        "relational": {"url": db.engine.url.render_as_string(hide_password=True), "revision": current_revision(db),
                       "rows": rows},
        "objects": {"uri": platform.objects.uri, "objects": objects, "versions": versions,
                    "delete_markers": delete_markers, "bytes": total_bytes},
        "vectors": {"uri": platform.vectors.uri, "rows": platform.vectors.count_rows()},
        "cache": {"backend": type(platform.cache).__name__, "keys": platform.cache.count()},
    }
