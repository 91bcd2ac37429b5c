"""Sensors of the privacy workflows: approved requests, consent withdrawals, deadlines."""

import dagster as dg

from encaptio_data import audit
from encaptio_data.db.enums import RequestStatus
from encaptio_data.db.models import DataSubjectRequest
from encaptio_data.jobs.privacy import dsar_jobs
from encaptio_data.platform import Platform
from encaptio_data.privacy.consent import withdrawals_since
from encaptio_data.privacy.erasure import subject_cache_tag
from encaptio_data.privacy.requests import Requests
from encaptio_data.resources import CacheResource, DatabaseResource


@dg.sensor(
    jobs=list(dsar_jobs.values()),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the job of every approved data subject request, exactly once (run_key = request id).",
)
def dsar_request_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    db = database.get()
    with db.session() as session:
        approved = [(str(r.id), r.type) for r in session.query(DataSubjectRequest)
                    .filter(DataSubjectRequest.status == RequestStatus.APPROVED).order_by(DataSubjectRequest.received_at)]
    return dg.SensorResult(run_requests=[
        dg.RunRequest(run_key=request_id, job_name=dsar_jobs[kind].name,
                      run_config={"ops": {f"process_{kind.value}_request": {"config": {"request_id": request_id}}}},
                      tags={"dsar/request_id": request_id, "dsar/type": kind.value})
        for request_id, kind in approved])


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=("Applies consent withdrawals as they arrive: the subject's cached, personalised results are "
                 "dropped at once and the withdrawal is audited; pipelines check consent before processing."),
)
def consent_withdrawal_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource,
                              cache: CacheResource) -> dg.SkipReason:
    db = database.get()
    with db.session() as session:
        withdrawals = withdrawals_since(session, context.cursor)
    for withdrawal in withdrawals:
        cache.get().invalidate_tag(subject_cache_tag(withdrawal["user_id"]))
        audit.append(db, actor="consent_withdrawal_sensor", action="consent.withdrawal_applied",
                     target=withdrawal["user_id"], details={"purpose": withdrawal["purpose"]})
    if withdrawals:
        context.update_cursor(withdrawals[-1]["recorded_at"])
    return dg.SkipReason(f"applied {len(withdrawals)} consent withdrawals")


@dg.sensor(
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (log and audit entry) on requests past their due date or within a week of it.",
)
def dsar_deadline_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SkipReason:
    platform = Platform(database.settings())
    try:
        deadlines = Requests(platform).deadlines()
        for level, entries in deadlines.items():
            for entry in entries:
                context.log.warning(f"data subject request {entry['id']} ({entry['type']}) {level}: due {entry['due_at']}")
                audit.append(platform.db, actor="dsar_deadline_sensor", action=f"dsar.{level}", target=entry["id"],
                             details={"due_at": entry["due_at"]})
    finally:
        platform.close()
    return dg.SkipReason(f"{len(deadlines['overdue'])} overdue, {len(deadlines['near_due'])} near due")
