"""The `encaptio` command as operators use it: exit codes, one-line errors, --json output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from encaptio_data.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    """Through the real entry point, so error handling and exit codes are the ones users get."""
    process = subprocess.run([sys.executable, "-m", "encaptio_data.cli", *args], capture_output=True, text=True,
                             timeout=600)
    return process.returncode, process.stdout, process.stderr


def test_init_is_idempotent_and_creates_the_schema(tmp_path: Path) -> None:
    first = runner.invoke(app, ["init", "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert "users" in report["tables"] and report["revision_before"] is None
    second = json.loads(runner.invoke(app, ["init", "--json"]).stdout)
    assert second["revision_before"] == second["revision"]
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_init_against_postgresql(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCAPTIO_DATABASE_URL", postgres_url)
    result = runner.invoke(app, ["init", "--json"])
    assert result.exit_code == 0, result.output
    assert "data_subject_requests" in json.loads(result.stdout)["tables"]


def test_users_add_and_status(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    # The first admin of a platform without one needs no operator; then user management needs manage_users.
    added = runner.invoke(app, ["users", "add", "--email", "Ada@Example.com", "--name", "Ada", "--role", "admin",
                                "--json"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["email"] == "ada@example.com"
    refused = runner.invoke(app, ["users", "add", "--email", "bob@example.com", "--name", "Bob"])
    assert refused.exit_code != 0 and "--as EMAIL" in str(refused.exception)
    bob = runner.invoke(app, ["users", "add", "--email", "bob@example.com", "--name", "Bob", "--as", "ada@example.com",
                              "--json"])
    assert bob.exit_code == 0, bob.output
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["relational"]["rows"]["users"] == 2 and status["profile"] == "embedded"


@pytest.mark.parametrize(("env", "args", "expected"), [
    ({"ENCAPTIO_DATABASE_URL": "mysql://root@localhost/x"}, ["status"], "ENCAPTIO_DATABASE_URL"),
    ({"ENCAPTIO_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"}, ["init"], "database unreachable"),
    ({"ENCAPTIO_REDIS_URL": "http://nope"}, ["status"], "ENCAPTIO_REDIS_URL"),
    ({"ENCAPTIO_OBJECT_STORE": "ftp://x/y"}, ["init"], "ENCAPTIO_OBJECT_STORE"),
    ({}, ["users", "add", "--email", "nope", "--name", "N"], "invalid email"),
])
def test_bad_settings_and_input_give_one_line_and_non_zero_exit(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if not env:
        assert run("init")[0] == 0
    code, stdout, stderr = run(*args)
    assert code == 1
    assert expected in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr


def test_missing_bucket_is_named(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> None:
    monkeypatch.setenv("ENCAPTIO_OBJECT_STORE", "s3://no-such-bucket-here/prefix")
    monkeypatch.setenv("ENCAPTIO_S3_ENDPOINT_URL", s3_endpoint)
    code, _, stderr = run("init")
    assert code == 1 and "no-such-bucket-here" in stderr
