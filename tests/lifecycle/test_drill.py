"""Restore drills on the embedded default: RTO/RPO measured, evidence recorded, failures alerted
(audit entry, log, webhook), and a webhook that is down never turns into an exception."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa

from encaptio_data.authz import system_principal
from encaptio_data.db.models import AuditEntry, Backup
from encaptio_data.lifecycle import backup as bk
from encaptio_data.lifecycle.drill import DRILL_PREFIX, run_drill
from encaptio_data.platform import Platform
from encaptio_data.stores.objects import LocalObjectStore
from tests.privacy.conftest import plant

# Backups and drills are what the schedules do: they run as the Dagster system principal.
OPERATOR = system_principal("dagster", run="test")


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_drill_restores_latest_and_a_point_between_backups(embedded: Platform) -> None:
    plant(embedded, "drilled")
    first = bk.run_backup(embedded, "full", operator=OPERATOR)
    time.sleep(0.01)
    second = bk.run_backup(embedded, "full", operator=OPERATOR)
    result = run_drill(embedded, operator=OPERATOR)
    assert result["passed"], [c for c in result["checks"] if not c["passed"]]
    assert result["backup_id"] == second["backup_id"] and result["rto_seconds"] > 0
    assert result["rpo_seconds"] >= 0
    latest, point = result["restores"]
    assert point["backup_id"] == first["backup_id"] and latest["backup_id"] == second["backup_id"]
    names = {c["name"] for c in result["checks"]}
    assert {"latest.manifest", "latest.integrity_check", "latest.ledger_replayed",
            "point_in_time.nearest_backup_at_or_before_target"} <= names
    with embedded.db.session() as session:
        row = session.get(Backup, bk.parse_uuid(second["backup_id"]))
        assert row.status.value == "verified" and row.manifest["last_drill"]["drill_id"] == result["drill_id"]
        entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "backup.drill"))
        assert entry.details["rpo_seconds"] == result["rpo_seconds"]
    assert embedded.objects.get(result["evidence"]["object"]).startswith(b"{")
    assert result["evidence"]["object"].startswith(DRILL_PREFIX)


def test_with_one_backup_the_point_in_time_restore_is_reported_skipped(embedded: Platform) -> None:
    bk.run_backup(embedded, "full", operator=OPERATOR)
    result = run_drill(embedded, operator=OPERATOR)
    assert result["passed"] and result["restores"][1]["skipped"].startswith("only one backup")


def test_a_failed_drill_alerts_by_audit_log_and_webhook(embedded: Platform, webhook: tuple[str, list[dict]],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    url, received = webhook
    result = bk.run_backup(embedded, "full", operator=OPERATOR)
    store = embedded.objects
    assert isinstance(store, LocalObjectStore)
    blob = store._key_dir(result["location"]) / f"{store.head(result['location']).version_id}.blob"
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.write_bytes(bytes(data))

    with caplog.at_level(logging.ERROR, logger="encaptio_data.lifecycle.drill"):
        drill = run_drill(embedded, webhook_url=url, operator=OPERATOR)
    assert not drill["passed"] and drill["rto_seconds"] is None
    failed = [c for c in drill["checks"] if not c["passed"]]
    assert failed[0]["name"] == "drill_completed" and result["location"] in failed[0]["detail"]
    assert drill["alert"]["webhook"].startswith("sent") and received[0]["drill_id"] == drill["drill_id"]
    assert received[0]["failed_checks"] == ["drill_completed"]
    assert any("FAILED" in record.getMessage() for record in caplog.records)
    with embedded.db.session() as session:
        assert session.scalar(sa.select(AuditEntry.action).where(AuditEntry.target == drill["drill_id"])) == \
            "backup.drill_failed"


def test_an_unreachable_webhook_is_logged_never_raised(embedded: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCAPTIO_ALERT_WEBHOOK", "http://127.0.0.1:9/unreachable")
    drill = run_drill(embedded, operator=OPERATOR)  # no backup at all: the drill fails
    assert not drill["passed"] and "no SQLite backup" in drill["checks"][0]["detail"]
    assert drill["alert"]["webhook"].startswith("failed")
