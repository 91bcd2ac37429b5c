"""Observability: alerts (log, audit entry, webhook), the run-failure sensor, and freshness policies.

The webhook receiver is a real HTTP server on loopback; the sensor is evaluated against a real
Dagster instance after a job has really failed in it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import sqlalchemy as sa

from encaptio_data import audit
from encaptio_data.alerts import Alert, raise_alert, run_failure_alert, webhook_url_from_env
from encaptio_data.assets.freshness import KEY_ASSET_CADENCES, Cadence, with_freshness_policies
from encaptio_data.db.models import AuditEntry
from encaptio_data.errors import InvalidInputError, SettingsError
from encaptio_data.platform import Platform
from encaptio_data.resources import DatabaseResource
from encaptio_data.sensors.alerts import run_failure_alert_sensor


@dataclass
class Receiver:
    url: str
    status: int = 204
    received: list[dict] = field(default_factory=list)
    hold: threading.Event | None = None  # when set, requests wait on it (a receiver that hangs)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append({"content_type": self.headers["Content-Type"], "body": json.loads(body)})
            if state.hold is not None:
                state.hold.wait()
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/encaptio"
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/nobody-listens"


def _alert(key: str = "run-1") -> Alert:
    return run_failure_alert(run_id=key, job_name="content_pipeline_job", failed_steps=["chunks"],
                             error_types=["IntegrityError"], partition="capsule-1")


def _alert_entries(platform: Platform) -> list[AuditEntry]:
    with platform.db.session() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action.like("alert.%"))
                                    .order_by(AuditEntry.seq)))


# --- the domain function ---------------------------------------------------------------------------

def test_an_alert_is_logged_audited_and_posted_once(platform: Platform, receiver: Receiver,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="encaptio_data.alerts")
    outcome = raise_alert(platform.db, _alert(), webhook_url=receiver.url)

    assert outcome.webhook == "delivered" and outcome.webhook_status == 204 and not outcome.already_raised
    (post,) = receiver.received
    assert post["content_type"] == "application/json"
    assert post["body"]["kind"] == "run_failed" and post["body"]["key"] == "run-1"
    assert post["body"]["details"]["failed_steps"] == ["chunks"]
    assert "content_pipeline_job" in post["body"]["summary"] and "IntegrityError" in post["body"]["summary"]
    assert any(r.levelno == logging.ERROR and "ALERT" in r.getMessage() for r in caplog.records)
    (entry,) = _alert_entries(platform)
    assert (entry.seq, entry.action, entry.target, entry.actor) == (outcome.audit_seq, "alert.run_failed", "run-1",
                                                                    "run_failure_sensor")
    assert entry.details["job_name"] == "content_pipeline_job"
    assert audit.verify_chain(platform.db).valid

    again = raise_alert(platform.db, _alert(), webhook_url=receiver.url)
    assert again.already_raised and again.audit_seq == outcome.audit_seq
    assert len(receiver.received) == 1 and len(_alert_entries(platform)) == 1, "a repeat pages nobody twice"


def test_without_a_webhook_the_alert_is_still_logged_and_audited(platform: Platform) -> None:
    outcome = raise_alert(platform.db, _alert("run-2"))
    assert outcome.webhook == "not configured"
    assert [e.target for e in _alert_entries(platform)] == ["run-2"]


@pytest.mark.parametrize("failure", ["http_error", "nobody_listening", "hangs"])
def test_a_failing_webhook_is_logged_and_never_raised(platform: Platform, receiver: Receiver, failure: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    url = receiver.url
    if failure == "http_error":
        receiver.status = 500
    elif failure == "nobody_listening":
        url = _closed_port_url()
    else:
        receiver.hold = threading.Event()
    caplog.set_level(logging.WARNING, logger="encaptio_data.alerts")

    outcome = raise_alert(platform.db, _alert(f"run-{failure}"), webhook_url=url, timeout=0.5)

    assert outcome.webhook == "failed" and outcome.webhook_error
    if failure == "http_error":
        assert outcome.webhook_status == 500
    if failure == "hangs":
        assert "timed out" in outcome.webhook_error.lower() or "timeout" in outcome.webhook_error.lower()
    assert any("webhook" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    assert [e.target for e in _alert_entries(platform)] == [f"run-{failure}"], "audited even when nobody was told"


def test_alert_input_and_webhook_setting_are_validated(platform: Platform) -> None:
    with pytest.raises(InvalidInputError, match="severity"):
        Alert(kind="x", summary="s", source="t", dedupe_key="k", severity="loud")
    with pytest.raises(InvalidInputError, match="dedupe_key"):
        Alert(kind="x", summary="s", source="t", dedupe_key=" ")
    with pytest.raises(InvalidInputError, match="timeout"):
        raise_alert(platform.db, _alert(), timeout=0)
    assert webhook_url_from_env({}) is None and webhook_url_from_env({"ENCAPTIO_ALERT_WEBHOOK_URL": " "}) is None
    assert webhook_url_from_env({"ENCAPTIO_ALERT_WEBHOOK_URL": "https://hooks.example/x"}) == "https://hooks.example/x"
    with pytest.raises(SettingsError, match="^ENCAPTIO_ALERT_WEBHOOK_URL: must be an http"):
        webhook_url_from_env({"ENCAPTIO_ALERT_WEBHOOK_URL": "ftp://hooks.example/x"})
    assert _alert_entries(platform) == []


# --- the sensor --------------------------------------------------------------------------------------

class _Boom(RuntimeError):
    pass


@dg.op
def _fails() -> None:
    raise _Boom("a message that may hold personal data: alice@example.com")


@dg.job(name="always_fails_job")
def _failing_job() -> None:
    _fails()


def _database(platform: Platform) -> DatabaseResource:
    return DatabaseResource(data_dir=str(platform.settings.root), database_url=platform.settings.resolved_database_url)


def test_the_sensor_alerts_on_a_failed_run_through_the_webhook(platform: Platform, receiver: Receiver,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCAPTIO_ALERT_WEBHOOK_URL", receiver.url)
    with dg.instance_for_test() as instance:
        result = _failing_job.execute_in_process(instance=instance, raise_on_error=False, tags={"dagster/partition": "p1"})
        assert not result.success
        with dg.build_run_status_sensor_context(
            sensor_name=run_failure_alert_sensor.name, dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(), resources={"database": _database(platform)},
        ).for_run_failure() as context:
            run_failure_alert_sensor(context)
            run_failure_alert_sensor(context)  # a retried tick

    (post,) = receiver.received
    details = post["body"]["details"]
    assert details == {"run_id": result.run_id, "job_name": "always_fails_job", "partition": "p1",
                       "failed_steps": ["_fails"], "error_types": ["_Boom"]}
    assert "alice@example.com" not in json.dumps(post), "error messages never leave the run's own logs"
    (entry,) = _alert_entries(platform)
    assert entry.target == result.run_id and "alice" not in json.dumps(entry.details)


def test_the_sensor_tick_finds_the_failure_in_the_instance_and_survives_a_dead_webhook(
        platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's path: evaluate ticks over the instance's event log, cursor carried between them."""
    monkeypatch.setenv("ENCAPTIO_ALERT_WEBHOOK_URL", _closed_port_url())
    defs = dg.Definitions(jobs=[_failing_job], sensors=[run_failure_alert_sensor],
                          resources={"database": _database(platform)})
    repository = defs.get_repository_def()
    sensor = repository.get_sensor_def(run_failure_alert_sensor.name)
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> dg.SensorExecutionData:
            with dg.build_sensor_context(instance=instance, repository_def=repository, cursor=cursor,
                                         resources={"database": _database(platform)}) as context:
                return sensor.evaluate_tick(context)

        # The first tick only records where the event log stands: old failures are not news.
        first = tick(None)
        run = _failing_job.execute_in_process(instance=instance, raise_on_error=False)
        second = tick(first.cursor)
        third = tick(second.cursor)

    assert second.cursor != first.cursor
    (entry,) = _alert_entries(platform)
    assert entry.target == run.run_id and entry.details["failed_steps"] == ["_fails"]
    assert third.cursor == second.cursor and len(_alert_entries(platform)) == 1


# --- freshness ---------------------------------------------------------------------------------------

def _ticks(cron: str, timezone: str, start: datetime, days: int) -> list[datetime]:
    # Dagster's own cron iterator (private, test-only): the ticks exactly as the scheduler sees them.
    from dagster._utils.schedules import cron_string_iterator

    end = start + timedelta(days=days)
    ticks = []
    for tick in cron_string_iterator(start.timestamp(), cron, timezone):
        if tick > end:
            return ticks
        ticks.append(tick)
    return ticks


def test_freshness_windows_follow_the_schedules_that_materialize_each_key_asset() -> None:
    from encaptio_data.definitions import defs

    graph = defs.resolve_asset_graph()
    schedules = {s.name: s for s in defs.schedules}
    for name, cadence in KEY_ASSET_CADENCES.items():
        ticks: list[datetime] = []
        for schedule_name in cadence.schedules:
            schedule = schedules[schedule_name]
            selection = schedule.job.selection if hasattr(schedule.job, "selection") else None
            assert selection is not None and dg.AssetKey(name) in selection.resolve(graph), (
                f"{schedule_name} does not materialize {name}")
            ticks += _ticks(schedule.cron_schedule, schedule.execution_timezone or "UTC",
                            datetime(2026, 1, 1, tzinfo=UTC), 400)
        ticks.sort()
        longest = max(b - a for a, b in zip(ticks, ticks[1:]))
        assert cadence.longest_gap == longest, f"{name}: longest gap between ticks is {longest}"
        assert cadence.warn_window < cadence.fail_window


def test_freshness_policies_attach_to_the_key_assets_only() -> None:
    # The code location as it ships: freshness and the alert sensor are wired in, checks kept.
    from encaptio_data.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node, name = graph.get(key), key.to_user_string()
        if name in KEY_ASSET_CADENCES:
            cadence = KEY_ASSET_CADENCES[name]
            assert node.freshness_policy == dg.FreshnessPolicy.time_window(
                fail_window=cadence.fail_window, warn_window=cadence.warn_window), name
        else:
            assert node.freshness_policy is None, name
    # Mapping again changes nothing and keeps every check.
    again = dg.Definitions(assets=with_freshness_policies(defs.assets), asset_checks=defs.asset_checks,
                           jobs=defs.jobs, schedules=defs.schedules, sensors=defs.sensors, resources=defs.resources)
    rewired = again.resolve_asset_graph()
    assert {k: rewired.get(k).check_keys for k in rewired.get_all_asset_keys()} == {
        k: graph.get(k).check_keys for k in graph.get_all_asset_keys()}
    (sensor,) = [s for s in defs.sensors if s.name == run_failure_alert_sensor.name]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_freshness_refuses_to_silently_skip_an_asset_that_is_gone() -> None:
    spec = dg.AssetSpec("search_indexes")
    with pytest.raises(InvalidInputError, match="not defined: renamed_asset"):
        with_freshness_policies([spec], {"renamed_asset": Cadence(("s",), timedelta(hours=1), timedelta(minutes=5))})
    (mapped,) = with_freshness_policies([spec], {"search_indexes": Cadence(("s",), timedelta(hours=1),
                                                                             timedelta(minutes=5))})
    assert mapped.freshness_policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2, minutes=5),
                                                                     warn_window=timedelta(hours=1, minutes=5))
