"""The privacy workflows as operators drive them: the CLI, the request sensor and its jobs."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
from typer.testing import CliRunner

from encaptio_data.bootstrap import initialize
from encaptio_data.cli import app
from encaptio_data.definitions import defs
from encaptio_data.platform import Platform
from encaptio_data.resources import CacheResource, DatabaseResource
from encaptio_data.sensors.privacy import dsar_request_sensor
from tests.privacy.conftest import plant

runner = CliRunner()


def _json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _setup() -> tuple[Platform, object]:
    platform = Platform()
    initialize(platform)
    subject = plant(platform, "cli")
    # The platform's first admin needs no operator; everyone after is added by a user manager.
    _json("users", "add", "--email", "root@acme.test", "--name", "Root", "--role", "admin",
          "--org", str(subject.organization_id))
    _json("users", "add", "--email", "dpo@acme.test", "--name", "DPO", "--role", "privacy_officer",
          "--org", str(subject.organization_id), "--as", "root@acme.test")
    return platform, subject


def test_dsar_access_round_trip_through_the_cli(tmp_path: Path) -> None:
    platform, subject = _setup()
    request = _json("dsar", "submit", "--type", "access", "--email", subject.email)
    assert request["status"] == "approved"
    (done,) = _json("dsar", "process", request["id"], "--as", "dpo@acme.test")
    assert done["status"] == "completed"
    status = _json("dsar", "status", request["id"])
    assert status["receipt"]["signature"] and subject.email not in json.dumps(status)
    downloaded = _json("dsar", "download", status["receipt"]["export"]["token"], "--out", str(tmp_path),
                       "--as", "dpo@acme.test")
    assert Path(downloaded["path"]).stat().st_size > 1000
    assert _json("audit", "verify")["valid"]


def test_erasure_approval_needs_an_operator_with_the_role() -> None:
    platform, subject = _setup()
    request = _json("dsar", "submit", "--type", "erasure", "--email", subject.email)
    denied = runner.invoke(app, ["dsar", "approve", request["id"], "--as", subject.email])
    assert denied.exit_code != 0
    assert _json("dsar", "approve", request["id"], "--as", "dpo@acme.test")["status"] == "approved"


def test_request_sensor_launches_each_approved_request_once_and_the_job_completes_it() -> None:
    platform, subject = _setup()
    request = _json("dsar", "submit", "--type", "restriction", "--email", subject.email)
    resources = {"database": DatabaseResource(), "cache": CacheResource()}
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = dsar_request_sensor(context)
        (run_request,) = result.run_requests
        assert run_request.run_key == request["id"] and run_request.job_name == "dsar_restriction_job"
        job = defs.resolve_job_def("dsar_restriction_job")
        outcome = job.execute_in_process(run_config=run_request.run_config, instance=instance)
        assert outcome.success
    assert _json("dsar", "status", request["id"])["status"] == "completed"
