"""Content assets: what creators uploaded, and the content rows that describe it."""

from collections import Counter

import dagster as dg

from encaptio_data.assets.metadata import OWNERS, markdown_table
from encaptio_data.content.uploads import UPLOADS_PREFIX, content_counts, register_uploads
from encaptio_data.resources import DatabaseResource, ObjectStoreResource


@dg.asset(
    group_name="content",
    owners=OWNERS,
    kinds={"python", "s3"},
    description=(
        "The originals creators uploaded: the latest version of every object under "
        f"`{UPLOADS_PREFIX}<organization>/<capsule>/<file>` in the versioned object store. "
        "Materializing takes an inventory; the bytes themselves are never rewritten."
    ),
)
def uploads(object_store: ObjectStoreResource) -> dg.MaterializeResult:
    objects = object_store.get()
    count, total_bytes, by_mime = 0, 0, Counter[str]()
    preview: list[dict[str, object]] = []
    for version in objects.list(UPLOADS_PREFIX):
        count += 1
        total_bytes += version.size
        by_mime[version.content_type] += 1
        if len(preview) < 10:
            preview.append({"key": version.key, "size": version.size, "type": version.content_type})
    return dg.MaterializeResult(
        metadata={
            "object_count": count,
            "total_bytes": dg.MetadataValue.int(total_bytes),
            "by_mime_type": dg.MetadataValue.json(dict(by_mime)),
            "store": dg.MetadataValue.text(objects.uri),
            "preview": dg.MetadataValue.md(markdown_table(preview)),
        }
    )


@dg.asset(
    group_name="content",
    owners=OWNERS,
    kinds={"python", "sql"},
    deps=[uploads],
    description=(
        "One row per distinct uploaded file in a capsule, pointing at the exact object version. "
        "Identical bytes in a capsule are recorded once; a new version of a file updates its row; "
        "uploads that cannot be registered are reported with their reason and left in place."
    ),
)
def content(context: dg.AssetExecutionContext, database: DatabaseResource,
            object_store: ObjectStoreResource) -> dg.MaterializeResult:
    db = database.get()
    report = register_uploads(db, object_store.get())
    for rejected in report.rejected:
        context.log.warning(f"upload {rejected['key']} not registered: {rejected['reason']}")
    with db.session() as session:
        counts = content_counts(session)
    return dg.MaterializeResult(
        metadata={
            "registered": len(report.registered),
            "updated": len(report.updated),
            "unchanged": report.unchanged,
            "duplicates": len(report.duplicates),
            "rejected": len(report.rejected),
            "rejected_reasons": dg.MetadataValue.md(markdown_table(report.rejected[:20])),
            "content_rows_by_type": dg.MetadataValue.json(counts),
            "content_rows": sum(counts.values()),
        }
    )
