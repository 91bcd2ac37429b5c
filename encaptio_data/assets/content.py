"""Content assets: uploads → content → extracted text → chunks → chunk embeddings → search indexes.

Metadata and logs name content by id and uploads by a digest of their key, never by file
name or text: Dagster's event log is not reached by erasure, so it must hold nothing that
erasure would have to remove.
"""

import uuid
from collections import Counter

import dagster as dg

from encaptio_data.analytics.charts import histogram_markdown
from encaptio_data.assets.metadata import OWNERS, key_digest, markdown_table
from encaptio_data.assets.partitions import capsule_partitions
from encaptio_data.content.chunking import DEFAULT_CHUNK_TOKENS
from encaptio_data.content.embedding import load_embedder
from encaptio_data.content.pipeline import chunk_content, chunk_token_counts, embed_content, extract_content
from encaptio_data.content.uploads import UPLOADS_PREFIX, capsule_upload_prefix, content_counts, register_uploads
from encaptio_data.keys import KeyStore
from encaptio_data.resources import CacheResource, DatabaseResource, ObjectStoreResource, VectorStoreResource
from encaptio_data.search.index import build_indexes, open_chunks_table, optimize

PIPELINE_GROUP = "content"


@dg.asset(
    group_name=PIPELINE_GROUP,
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
            preview.append({"upload": key_digest(version.key), "size": version.size, "type": version.content_type})
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
    group_name=PIPELINE_GROUP,
    owners=OWNERS,
    kinds={"python", "sql"},
    deps=[uploads],
    partitions_def=capsule_partitions,
    description=(
        "One row per distinct uploaded file in a capsule, pointing at the exact object version. "
        "Identical bytes in a capsule are recorded once; a new version of a file updates its row; "
        "uploads that cannot be registered are reported with their reason and left in place."
    ),
)
def content(context: dg.AssetExecutionContext, database: DatabaseResource,
            object_store: ObjectStoreResource) -> dg.MaterializeResult:
    db = database.get()
    report = register_uploads(db, object_store.get(), prefix=capsule_upload_prefix(db, context.partition_key),
                              keys=KeyStore(database.settings().keys_dir))
    rejected = [{"upload": key_digest(r["key"]), "reason": r["reason"]} for r in report.rejected]
    for item in rejected:
        context.log.warning(f"upload {item['upload']} not registered: {item['reason']}")
    with db.session() as session:
        counts = content_counts(session, capsule_id=uuid.UUID(context.partition_key))
    return dg.MaterializeResult(
        metadata={
            "registered": len(report.registered),
            "updated": len(report.updated),
            "unchanged": report.unchanged,
            "sealed": report.sealed,
            "duplicates": len(report.duplicates),
            "rejected": len(report.rejected),
            "rejected_reasons": dg.MetadataValue.md(markdown_table(rejected)),
            "content_rows_by_type": dg.MetadataValue.json(counts),
            "content_rows": sum(counts.values()),
        }
    )


@dg.asset(
    group_name=PIPELINE_GROUP,
    owners=OWNERS,
    kinds={"python", "sql"},
    deps=[content],
    partitions_def=capsule_partitions,
    description=(
        "Text and page/section structure of every document (PDF via pypdfium2 with pypdf as fallback, HTML "
        "via trafilatura, Markdown via markdown-it-py, plain text with encoding detection); images and videos "
        "get metadata only. Bad files (encrypted, corrupt, empty, oversized, mislabelled) become failed "
        "extractions with a reason; the original object is never touched."
    ),
)
def extracted_text(context: dg.AssetExecutionContext, database: DatabaseResource,
                   object_store: ObjectStoreResource) -> dg.MaterializeResult:
    report = extract_content(database.get(), object_store.get(), capsule_id=uuid.UUID(context.partition_key),
                             keys=KeyStore(database.settings().keys_dir))
    failures = [{"content_id": f["content_id"], "reason": f["reason"]} for f in report.failures]
    for failure in failures:
        context.log.warning(f"extraction failed for content {failure['content_id']}: {failure['reason']}")
    return dg.MaterializeResult(metadata={
        "extracted": report.processed,
        "unchanged": report.skipped,
        "by_status": dg.MetadataValue.json(dict(report.statuses)),
        "failed_extractions": dg.MetadataValue.md(markdown_table(failures)),
        "bytes_read": report.items,
        "seconds": report.seconds,
    })


@dg.asset(
    group_name=PIPELINE_GROUP,
    owners=OWNERS,
    kinds={"python", "sql"},
    deps=[extracted_text],
    partitions_def=capsule_partitions,
    description=(
        "Token-aware chunks (semchunk with the embedding model's own tokenizer): about 200 tokens with 15 % "
        "overlap, with character offsets, page and heading. Chunk ids are stable across re-runs."
    ),
)
def chunks(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    capsule_id = uuid.UUID(context.partition_key)
    db = database.get()
    report = chunk_content(db, capsule_id=capsule_id)
    tokens = chunk_token_counts(db, capsule_id)
    metadata = {
        "content_chunked": report.processed,
        "chunks_written": report.items,
        "chunks_per_second": report.per_second,
        "chunks_in_capsule": len(tokens),
        "preview": dg.MetadataValue.md(markdown_table(report.preview)),
    }
    if tokens:
        # Slivers and oversized chunks show at once against the target; a mean would hide both.
        metadata["mean_tokens_per_chunk"] = round(sum(tokens) / len(tokens), 1)
        metadata["tokens_per_chunk"] = dg.MetadataValue.md(histogram_markdown(
            tokens, bins=20, title="tokens per chunk", marker=DEFAULT_CHUNK_TOKENS,
            marker_label=f"target {DEFAULT_CHUNK_TOKENS}"))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=PIPELINE_GROUP,
    owners=OWNERS,
    kinds={"python", "lancedb", "pytorch"},
    deps=[chunks],
    partitions_def=capsule_partitions,
    description=(
        "all-MiniLM-L6-v2 embeddings (384 dimensions, unit norm) of every chunk, upserted into the LanceDB "
        "`chunks` table with merge_insert on the chunk id. Only content whose bytes changed is re-embedded; "
        "soft-deleted content is removed from the table; the capsule's search cache is invalidated."
    ),
)
def chunk_embeddings(context: dg.AssetExecutionContext, database: DatabaseResource,
                     vector_store: VectorStoreResource, cache: CacheResource) -> dg.MaterializeResult:
    report = embed_content(database.get(), vector_store.get(), load_embedder(),
                           capsule_id=uuid.UUID(context.partition_key), cache=cache.get())
    return dg.MaterializeResult(metadata={
        "content_embedded": report.processed,
        "chunks_embedded": report.items,
        "chunks_per_second": report.per_second,
        "content_removed_after_delete": report.statuses["removed_deleted"],
        "seconds": report.seconds,
    })


@dg.asset(
    group_name=PIPELINE_GROUP,
    owners=OWNERS,
    kinds={"python", "lancedb"},
    deps=[chunk_embeddings],
    description=(
        "The indexes the query API relies on, maintained after compaction and cleanup of table versions older "
        "than the 30-day recovery window: LanceDB's native full-text (BM25) index on chunk text, scalar "
        "indexes on the chunk id and every filter column, and an IVF_SQ vector index once the table is large "
        "enough for one to beat an exact scan. Missing indexes are built, new rows are folded into the existing "
        "ones, and the vector index is retrained only once the table has outgrown its partitions. Rows added "
        "between runs are still searched (unindexed fragments are scanned); before the indexes take them in, "
        "they are stored grouped by organization, which every query filters on."
    ),
)
def search_indexes(vector_store: VectorStoreResource) -> dg.MaterializeResult:
    table = open_chunks_table(vector_store.get())
    maintenance = optimize(table)
    report = build_indexes(table)
    return dg.MaterializeResult(metadata={
        "compaction": dg.MetadataValue.json(maintenance),
        "rows": report.rows,
        "rows_clustered_by_organization": maintenance["clustered_rows"] + report.clustered_rows,
        "vector_index": report.vector_index or "none (exact scan below the threshold)",
        "vector_partitions": report.vector_partitions or 0,
        "built_this_run": dg.MetadataValue.json(report.built),
        "scalar_indexes": dg.MetadataValue.json(report.scalar_indexes),
        "unindexed_rows": report.unindexed_rows,
        "seconds": report.seconds,
    })
