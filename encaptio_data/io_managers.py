"""Step outputs in the platform's object store, so a step's successor may run on another machine.

Most assets here return `MaterializeResult`: their data lives in the stores and Dagster's I/O
manager is never called for them. What remains are op outputs (the data subject request jobs
return their status) and any future asset that returns a value. Dagster's default I/O
manager writes those under the local DAGSTER_HOME, which a Celery or Kubernetes worker on
another machine cannot read; this one writes them to the object store the settings name: the
local versioned directory on the embedded default, S3 in production. One I/O manager serves
both profiles, chosen when the run starts (the object store resource reads ENCAPTIO_* then),
never when the code location is imported.

Outputs are pickled, like Dagster's own filesystem and S3 I/O managers; only trusted code
writes under the prefix. They must hold nothing personal: erasure does not look under it.
"""

import pickle
from typing import Any
from urllib.parse import quote

import dagster as dg

from encaptio_data.resources import ObjectStoreResource
from encaptio_data.stores.objects import put_if_changed

IO_PREFIX = "dagster/io"
PICKLE_CONTENT_TYPE = "application/x-python-pickle"


def _segment(part: str) -> str:
    # Asset key parts and partition keys may contain '/', '.' or '..', which the object store
    # refuses as path segments; percent-encoding (dots included) keeps every key distinct.
    return quote(str(part), safe="-_~").replace(".", "%2E") or "%00"


class ObjectStoreIOManager(dg.ConfigurableIOManager):
    """Pickled outputs at `<prefix>/assets/<asset key>[/<partition>]` for assets and
    `<prefix>/runs/<run id>/<step>/<output>[/<mapping key>]` for ops, every read checked
    against the sha256 the store recorded. Re-running a step with the same result adds no
    object version."""

    object_store: ObjectStoreResource
    prefix: str = IO_PREFIX

    def _key(self, parts: list[str]) -> str:
        return "/".join([self.prefix.strip("/"), *(_segment(part) for part in parts)])

    def _output_key(self, context: dg.OutputContext, partition_key: str | None = None) -> str:
        if context.has_asset_key:
            path = ["assets", *context.asset_key.path]
            partition = partition_key or (context.asset_partition_key if context.has_asset_partitions else None)
            return self._key(path + ([partition] if partition else []))
        return self._key(["runs", *context.get_identifier()])

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        key = self._output_key(context)
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        version, new = put_if_changed(self.object_store.get(), key, data, content_type=PICKLE_CONTENT_TYPE)
        context.add_output_metadata({
            "object_key": key,
            "object_version": version.version_id,
            "bytes": dg.MetadataValue.int(version.size),
            "new_version": new,
        })

    def load_input(self, context: dg.InputContext) -> Any:
        store = self.object_store.get()
        upstream = context.upstream_output
        if upstream is None:
            raise dg.DagsterInvariantViolationError(
                f"input {context.name!r} has no upstream output for the object store I/O manager to load")
        if context.has_asset_key and context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            return {partition: pickle.loads(store.get(self._output_key(upstream, partition)))
                    for partition in context.asset_partition_keys}
        if context.has_asset_key and context.has_asset_partitions:
            return pickle.loads(store.get(self._output_key(upstream, context.asset_partition_key)))
        return pickle.loads(store.get(self._output_key(upstream)))


def io_manager_resources() -> dict[str, dg.ConfigurableIOManager]:
    """The `io_manager` resource for the code location, on every profile.

    The object store it writes to is whatever ENCAPTIO_OBJECT_STORE names when the run
    starts (a directory or s3://bucket/prefix), so the same Definitions serve the embedded
    default, a multiprocess run and Celery or Kubernetes workers on other machines.
    """
    return {"io_manager": ObjectStoreIOManager(object_store=ObjectStoreResource())}
