"""Data subject request jobs: one per request type, each a single op over the shared processor.

The request sensor launches them with run_key = request id, so each approved request runs
exactly once however often the daemon restarts; `encaptio dsar process` takes the same code
path without the daemon.
"""

import dagster as dg

from encaptio_data.authz import system_principal
from encaptio_data.db.enums import RequestType
from encaptio_data.errors import EncaptioError
from encaptio_data.platform import Platform
from encaptio_data.privacy.process import RequestProcessor
from encaptio_data.resources import DatabaseResource


class RequestConfig(dg.Config):
    request_id: str


def _process_request_op(name: str, kind: str) -> dg.OpDefinition:
    @dg.op(name=name, description=f"Carry out one approved {kind} request and record its signed receipt.")
    def process(context: dg.OpExecutionContext, config: RequestConfig, database: DatabaseResource) -> dict:
        platform = Platform(database.settings())
        try:
            view = RequestProcessor(platform).process(
                config.request_id, operator=system_principal("dagster", run=context.run_id[:8]))
        finally:
            platform.close()
        context.add_output_metadata({"status": view["status"], "request_id": config.request_id,
                                     "steps": dg.MetadataValue.json(sorted(view["steps"]))})
        if view["status"] != "completed":
            raise EncaptioError(f"request {config.request_id} {view['status']}: {view['status_reason']}")
        return {"status": view["status"]}

    return process


def _job(kind: RequestType, description: str) -> dg.JobDefinition:
    op = _process_request_op(f"process_{kind.value}_request", kind.value)

    @dg.job(name=f"dsar_{kind.value}_job", description=description, tags={"domain": "privacy"})
    def request_job() -> None:
        op()

    return request_job


dsar_jobs = {
    RequestType.ACCESS: _job(RequestType.ACCESS, "Access and portability (Art. 15, 20): collect everything about "
                             "the subject from every store, package it, encrypt it and issue a 7-day link."),
    RequestType.ERASURE: _job(RequestType.ERASURE, "Erasure (Art. 17): remove the subject from every store, "
                              "crypto-shred their key, record the ledger, verify nothing is left, sign a receipt."),
    RequestType.RECTIFICATION: _job(RequestType.RECTIFICATION, "Rectification (Art. 16): correct the subject's "
                                    "data and invalidate what was derived from it."),
    RequestType.RESTRICTION: _job(RequestType.RESTRICTION, "Restriction (Art. 18): flag the subject so that no "
                                  "pipeline processes their data until it is lifted."),
    RequestType.OBJECTION: _job(RequestType.OBJECTION, "Objection (Art. 21): stop processing the subject's data "
                                "for the purpose objected to."),
}
