"""The quality checks as Dagster asset checks: thin glue over ``catalog.CHECKS``.

A check on a partitioned asset runs in that partition's run and scopes itself to the capsule
(``context.partition_key``); run on its own, outside a partition, it checks the whole store.
The checks carry no ``partitions_def`` of their own: Dagster 1.13 still flags partitioned
asset checks as a preview, and the run's partition key is all the scoping needs.

A failed ERROR check is blocking (the assets downstream of its asset do not run) and raises
an alert: an error in the run's log, an entry in the audit chain and the webhook, if set.
"""

# No `from __future__ import annotations`: Dagster inspects the check functions' annotations
# (the context type, the resources) when the checks are defined, so they must be real types.
import uuid
from dataclasses import dataclass
from typing import Any

import dagster as dg
from great_expectations.data_context import AbstractDataContext
from pydantic import PrivateAttr

from encaptio_data.assets.metadata import key_digest, markdown_table
from encaptio_data.db.session import Database
from encaptio_data.integrity import CheckOutcome
from encaptio_data.quality.catalog import CHECKS, CheckRun, QualityCheck, raise_alert
from encaptio_data.quality.history import volume_history
from encaptio_data.quality.suites import ephemeral_context
from encaptio_data.resources import DatabaseResource, ObjectStoreResource, VectorStoreResource
from encaptio_data.stores.objects import ObjectStore
from encaptio_data.stores.vectors import VectorStore


class GreatExpectationsResource(dg.ConfigurableResource):
    """An ephemeral GX context with every suite registered, built on first use in a run."""

    _context: AbstractDataContext | None = PrivateAttr(default=None)

    def get_context(self) -> AbstractDataContext:
        if self._context is None:
            self._context = ephemeral_context()
        return self._context


@dataclass
class _ResourceStores:
    """The stores as the check functions expect them, opened only if a check reads them."""

    database: DatabaseResource
    object_store: ObjectStoreResource
    vector_store: VectorStoreResource

    @property
    def db(self) -> Database:
        return self.database.get()

    @property
    def objects(self) -> ObjectStore:
        return self.object_store.get()

    @property
    def vectors(self) -> VectorStore:
        return self.vector_store.get()


def _event_log_safe(example: dict[str, Any]) -> dict[str, Any]:
    """An example fit for Dagster's event log, which erasure cannot reach: an object key carries a
    file name, so it is shown as its digest, the name the content assets give uploads too."""
    return {("upload" if name == "object_key" else name): (key_digest(value) if name == "object_key" else value)
            for name, value in example.items()}


def check_metadata(outcome: CheckOutcome, capsule_id: uuid.UUID | None) -> dict[str, object]:
    return {**outcome.statistics, "scope": f"capsule {capsule_id}" if capsule_id else "all capsules",
            "failing_examples": dg.MetadataValue.md(markdown_table([_event_log_safe(e) for e in outcome.examples]))}


def build_asset_check(check: QualityCheck) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=check.asset, name=check.name, description=check.description, blocking=check.blocking)
    def _check(context: dg.AssetCheckExecutionContext, database: DatabaseResource, object_store: ObjectStoreResource,
               vector_store: VectorStoreResource, great_expectations: GreatExpectationsResource) -> dg.AssetCheckResult:
        capsule_id = uuid.UUID(context.partition_key) if context.has_partition_key else None
        run = CheckRun(_ResourceStores(database, object_store, vector_store), capsule_id=capsule_id,
                       gx_context=great_expectations.get_context,
                       volume_history=lambda: volume_history(context.instance))
        outcome = check.evaluate(run)
        if not outcome.passed and check.blocking:
            alert = raise_alert(run, check, outcome, run_id=context.run.run_id)
            context.log.error(f"blocking check {check.name} on {check.asset} failed"
                              f"{f' for capsule {capsule_id}' if capsule_id else ''}: {outcome.statistics}; "
                              f"audit entry {alert.seq}, webhook {alert.webhook}")
        return dg.AssetCheckResult(passed=outcome.passed, severity=dg.AssetCheckSeverity(check.severity.value),
                                   metadata=check_metadata(outcome, capsule_id))

    return _check


quality_checks: list[dg.AssetChecksDefinition] = [build_asset_check(check) for check in CHECKS]


def quality_resources() -> dict[str, dg.ConfigurableResource]:
    return {"great_expectations": GreatExpectationsResource()}
