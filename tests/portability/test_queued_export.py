"""`encaptio export org` queues a run of organization_export_job; the real `dagster-daemon run` launches it.

The instance is a temporary DAGSTER_HOME configured with the QueuedRunCoordinator, as the
production profile is (deploy/production/dagster.yaml). Without a daemon the runs stay QUEUED;
once `dagster-daemon run` starts on the repository's workspace.yaml, it dequeues and launches
them, and `encaptio export status` reports the archives. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.portability.conftest import make_admin, small_organization

from encaptio_data import authz
from encaptio_data.bootstrap import initialize
from encaptio_data.cli import app
from encaptio_data.db.migrate import head_revision
from encaptio_data.db.models import AuditEntry
from encaptio_data.errors import EncaptioError, PermissionDeniedError
from encaptio_data.jobs import portability as job
from encaptio_data.platform import Platform
from encaptio_data.portability import verify_archive
from encaptio_data.settings import get_settings

pytestmark = pytest.mark.xdist_group("dagster-daemon")

REPO = Path(__file__).resolve().parents[2]
QUEUED_INSTANCE = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    dequeue_interval_seconds: 1
"""
DAEMON_SECONDS = 420
runner = CliRunner()


def _invoke(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


@pytest.fixture
def queued_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text(QUEUED_INSTANCE)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _stop_automation(instance: dg.DagsterInstance) -> None:
    """The daemon also ticks every sensor and schedule; the uploads sensor would start a pipeline
    run for the organization's uploads. Stopped here as an operator would on the Automation page,
    so the instance holds exactly the runs the test queues."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(job._location_origin())) as process:
        location = process.create_request_context().get_code_location(job.LOCATION_NAME)
        for repository in location.get_repositories().values():
            for sensor in repository.get_sensors():
                instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
            for schedule in repository.get_schedules():
                instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)


@pytest.fixture
def daemon(queued_home: Path, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen]]:
    """Starts `dagster-daemon run -w workspace.yaml` on demand; stops it and everything it spawned."""
    started: list[subprocess.Popen] = []
    log = tmp_path / "daemon.log"

    def start() -> subprocess.Popen:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        process = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
                                    str(REPO / "workspace.yaml")], cwd=REPO, env=env, stdout=log.open("wb"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        # Its own session: the code servers and run workers it spawned go with it.
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_finished(instance: dg.DagsterInstance, run_ids: list[str], log: Path) -> None:
    deadline = time.monotonic() + DAEMON_SECONDS
    while time.monotonic() < deadline:
        runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
        if all(run.is_finished for run in runs):
            return
        time.sleep(2)
    states = {run_id[:8]: instance.get_run_by_id(run_id).status.value for run_id in run_ids}
    pytest.fail(f"runs not finished after {DAEMON_SECONDS} s: {states}\n{log.read_text()[-3000:]}")


def test_export_is_queued_then_launched_by_the_daemon(queued_home: Path, daemon: Callable[[], subprocess.Popen], tmp_path: Path) -> None:
    platform = Platform(get_settings())
    initialize(platform)
    org = small_organization(platform)
    admin = make_admin(platform)
    out = tmp_path / "out"

    queued = _invoke("export", "org", str(org), "--format", "csv", "--out", str(out), "--as", admin)
    assert queued["status"] == "queued" and queued["daemon_running"] is False
    assert "dagster-daemon run" in queued["note"] and "--in-process" in queued["note"]
    instance = dg.DagsterInstance.from_config(str(queued_home))
    run = instance.get_run_by_id(queued["run_id"])
    assert run.status == dg.DagsterRunStatus.QUEUED and run.job_name == job.JOB_NAME
    # The requester reaches the run: by email in its config (checked when it executes), by keyed reference in a tag.
    assert run.run_config["ops"][job.OP_NAME]["config"]["requested_by"] == admin
    assert run.tags[job.REQUESTER_TAG] == authz.resolve(platform, admin).actor and admin not in run.tags.values()
    assert queued["export_id"] == job.export_id_for(run.run_id) and not out.exists()

    # Waiting on a queue nobody drains is refused at once, in one line; the run stays queued for later.
    waiting = runner.invoke(app, ["export", "org", str(org), "--link", "--wait", "--as", admin])
    assert isinstance(waiting.exception, EncaptioError) and "no dagster-daemon" in str(waiting.exception)
    assert "\n" not in str(waiting.exception)
    (linked_run,) = [r for r in instance.get_runs() if r.run_id != run.run_id]
    assert linked_run.status == dg.DagsterRunStatus.QUEUED

    # Someone without export_org is refused before anything is queued, and the refusal is audited.
    runs_before = len(instance.get_runs())
    denied = runner.invoke(app, ["export", "org", str(org), "--out", str(out), "--as", "creator@tiny.example"])
    assert isinstance(denied.exception, PermissionDeniedError) and "may not export_org" in str(denied.exception)
    assert len(instance.get_runs()) == runs_before
    with platform.db.session() as session:
        refusal = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == authz.DENIED_ACTION)).one()
    assert refusal.details["permission"] == "export_org" and refusal.organization_id == org

    status = _invoke("export", "status", run.run_id, "--as", admin)
    assert status["status"] == "queued" and "no dagster-daemon" in status["note"]

    _stop_automation(instance)
    daemon()
    _wait_finished(instance, [run.run_id, linked_run.run_id], tmp_path / "daemon.log")
    assert {r.job_name for r in instance.get_runs()} == {job.JOB_NAME}, "only the queued exports ran"

    done = _invoke("export", "status", run.run_id, "--as", admin)
    assert done["status"] == "success" and done["export_id"] == queued["export_id"]
    assert done["counts"]["content"] == 3 and done["counts"]["files"] == 3
    manifest = verify_archive(Path(done["path"]), schema_version=head_revision())
    assert manifest["export_id"] == queued["export_id"] and Path(done["path"]).parent == out.resolve()

    linked = _invoke("export", "status", linked_run.run_id, "--as", admin)
    assert linked["status"] == "success" and linked["key"] and linked["token"] and linked["path"] is None
    got = _invoke("export", "download", linked["token"], "--out", str(tmp_path / "got"), "--as", admin)
    assert Path(got["path"]).stat().st_size == linked["bytes"]

    # With the daemon up, --wait follows a new run to its end and prints the result.
    waited = _invoke("export", "org", str(org), "--format", "json", "--out", str(tmp_path / "waited"), "--wait",
                     "--timeout", str(DAEMON_SECONDS), "--as", admin)
    assert waited["status"] == "success" and Path(waited["path"]).is_file() and waited["counts"]["text"] == 3
    platform.close()
