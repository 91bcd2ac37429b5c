"""Jobs: verbs over the asset graph."""

import dagster as dg

content_pipeline_job = dg.define_asset_job(
    "content_pipeline_job",
    selection=dg.AssetSelection.groups("content") - dg.AssetSelection.assets("uploads", "search_indexes"),
    description="Register, extract, chunk and embed one capsule's uploads (one partition per capsule).",
)

search_index_job = dg.define_asset_job(
    "search_index_job",
    selection=dg.AssetSelection.assets("search_indexes"),
    description=("Maintain the full-text, scalar and vector indexes of the chunk table: build what is missing, "
                 "fold in new rows, retrain the vector index once outgrown."),
)
