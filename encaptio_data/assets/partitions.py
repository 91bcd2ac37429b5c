"""Partitions of the content pipeline.

One dynamic partition per capsule: a capsule is the unit creators change, users search
within and operators backfill ("re-run the pipeline for this capsule"), and search-cache
invalidation is per capsule too. The uploads sensor registers a capsule's partition the
first time it sees an upload for it; `encaptio demo` registers every capsule it seeded.
"""

import dagster as dg

capsule_partitions = dg.DynamicPartitionsDefinition(name="capsules")
