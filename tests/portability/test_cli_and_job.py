"""`encaptio export org --in-process` (the Dagster job in this process) and `encaptio import org`, and the job
itself. The queued path, with the real daemon, is in test_queued_export.py."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from tests.portability.conftest import make_admin, org_rows, small_organization

from encaptio_data.bootstrap import initialize
from encaptio_data.cli import app
from encaptio_data.errors import PermissionDeniedError
from encaptio_data.jobs.portability import EXPORT_ID_NAMESPACE, organization_export_job
from encaptio_data.platform import Platform
from encaptio_data.resources import DatabaseResource
from encaptio_data.settings import get_settings

runner = CliRunner()


def _json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The CLI points DAGSTER_HOME at the data dir's instance; set here so the test restores it.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "data" / "dagster"))
    return tmp_path / "data" / "dagster"


def test_cli_exports_through_the_job_and_imports_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          dagster_home: Path) -> None:
    source = Platform(get_settings())
    initialize(source)
    org = small_organization(source)
    admin = make_admin(source)

    exported = _json("export", "org", str(org), "--format", "csv", "--out", str(tmp_path / "out"), "--in-process",
                     "--as", admin)
    assert Path(exported["path"]).is_file() and exported["run_id"] and "token" not in exported
    assert exported["status"] == "success"
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    run = instance.get_run_by_id(exported["run_id"])
    assert run.job_name == "organization_export_job" and run.is_success
    # The run's root id names the export, so a re-execution of a failed run rewrites the same file.
    assert exported["export_id"] == str(uuid.uuid5(EXPORT_ID_NAMESPACE, run.root_run_id or run.run_id))

    # A refusal reaches the operator as the domain's own one-line error, before any run exists.
    runs = len(instance.get_runs())
    denied = runner.invoke(app, ["export", "org", str(org), "--out", str(tmp_path / "denied"), "--in-process",
                                 "--as", "creator@tiny.example"])
    assert len(instance.get_runs()) == runs
    assert isinstance(denied.exception, PermissionDeniedError) and "may not export_org" in str(denied.exception)
    assert not (tmp_path / "denied").exists()

    linked = _json("export", "org", str(org), "--format", "parquet", "--link", "--in-process", "--as", admin)
    downloaded = _json("export", "download", linked["token"], "--out", str(tmp_path / "got"), "--as", admin)
    assert Path(downloaded["path"]).stat().st_size == linked["bytes"]

    monkeypatch.setenv("ENCAPTIO_DATA_DIR", str(tmp_path / "target"))
    target = Platform(get_settings())
    initialize(target)
    target_admin = make_admin(target)
    imported = _json("import", "org", exported["path"], "--as", target_admin)
    assert imported["counts"]["content"] == 3 and imported["organization_id"] == str(org)
    ignore = {"content": {"object_version"}}
    assert org_rows(target, org, ignore=ignore) == org_rows(source, org, ignore=ignore)

    again = runner.invoke(app, ["import", "org", exported["path"], "--as", target_admin])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    source.close()
    target.close()


@pytest.mark.parametrize("args, message", [
    (["--format", "xml", "--out", "x"], "xml"),
    (["--out", "x", "--link"], "either --out DIR or --link"),
    ([], "either --out DIR or --link"),
])
def test_cli_refuses_bad_requests(args: list[str], message: str, dagster_home: Path) -> None:
    result = runner.invoke(app, ["export", "org", str(uuid.uuid4()), *args, "--as", "admin@operations.example"])
    assert result.exit_code != 0
    assert message in (result.output + str(result.exception))


def test_job_runs_the_export_for_its_requester_and_keeps_the_token_out_of_dagster(tmp_path: Path) -> None:
    platform = Platform(get_settings())
    initialize(platform)
    org = small_organization(platform, files=1)
    admin = make_admin(platform)
    config = {"organization_id": str(org), "format": "json", "link": True, "requested_by": admin}
    with dg.instance_for_test() as instance:
        result = organization_export_job.execute_in_process(
            run_config={"ops": {"export_organization": {"config": config}}}, instance=instance,
            resources={"database": DatabaseResource()})
        assert result.success
        output = result.output_for_node("export_organization")
        assert output["key"] and "token" not in output and "presigned_url" not in output
        stored = json.dumps([str(event) for event in instance.all_logs(result.run_id)])
        # Every token of this export starts with the base64 of its export id (36 bytes: no padding).
        token_prefix = base64.urlsafe_b64encode(output["export_id"].encode()).decode()
        assert output["export_id"] in stored and token_prefix not in stored

        denied = organization_export_job.execute_in_process(
            run_config={"ops": {"export_organization": {"config": {**config, "requested_by": "creator@tiny.example"}}}},
            instance=instance, resources={"database": DatabaseResource()}, raise_on_error=False)
        assert not denied.success
    platform.close()
