"""`encaptio export org`, `export status`, `export download`, `import org` and `bench portability`.

The export is a queued Dagster run of `organization_export_job` (jobs/portability.py): the
command checks the operator's export_org permission (refused and audited before anything is
queued), submits the run to the instance's queue and prints its id; `--wait` follows it to
the end. `dagster-daemon run` (started by `make ui` or scripts/run-production) launches queued
runs; without one the run waits in the queue, and `--in-process` runs the job in this process
instead. Import runs the domain function directly: it is one all-or-nothing transaction whose
outcome the operator waits for anyway.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from encaptio_data.cli_common import AsOption, JsonOption, console, emit, open_platform
from encaptio_data.cli_common import bench_progress as _bench_progress
from encaptio_data.cli_common import operator_of as _operator
from encaptio_data.errors import EncaptioError, InvalidInputError
from encaptio_data.platform import Platform

export_app = typer.Typer(help="Export an organization's data (portability).", no_args_is_help=True)
import_app = typer.Typer(help="Import an organization exported by another instance.", no_args_is_help=True)

NO_DAEMON = ("no dagster-daemon is draining the run queue of {home}: the run stays queued until one starts "
             "(`make ui`, or `dagster-daemon run -w workspace.yaml` with DAGSTER_HOME={home}); "
             "or run the export here with --in-process")
WaitOption = Annotated[bool, typer.Option("--wait", help="Wait for the run to finish and print its result.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1, help="Seconds --wait waits at most.")]


class TableFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


def _render_export(result: dict[str, Any]) -> None:
    # soft_wrap: a token or path broken over two lines could not be pasted back.
    def say(text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    if result.get("status") not in (None, "success"):
        say(f"run {result['run_id']} {result['status']} (export {result['export_id']})")
        if result.get("note"):
            say(result["note"])
        return
    where = result.get("path") or f"object {result.get('key')} (link expires {result.get('expires_at')})"
    say(f"export {result['export_id']}: {result['bytes']} bytes, {where}")
    counts = ", ".join(f"{name} {count}" for name, count in sorted((result.get("counts") or {}).items()))
    if counts:
        say(f"counts: {counts}")
    if result.get("token"):
        say(f"download with: encaptio export download {result['token']} --out DIR")
    if result.get("presigned_url"):
        say(f"or fetch: {result['presigned_url']}")


def _with_link(platform: Platform, result: dict[str, Any]) -> dict[str, Any]:
    """A finished linked export gets its token here, never from the run (no bearer secret in Dagster)."""
    if result.get("status", "success") != "success" or not result.get("key"):
        return result
    from encaptio_data.portability.links import issue_link

    link = issue_link(platform, uuid.UUID(result["organization_id"]), uuid.UUID(result["export_id"]))
    return result | link | {"expires_at": link["expires_at"].isoformat()}


def _lowercase_status(result: dict[str, Any]) -> dict[str, Any]:
    return result | {"status": str(result["status"]).lower()} if result.get("status") else result


@export_app.command("org")
def export_org(
    organization_id: Annotated[str, typer.Argument(help="The organization's id.")],
    table_format: Annotated[TableFormat, typer.Option("--format", help="How rows are written.")] = TableFormat.JSON,
    out: Annotated[Path | None, typer.Option("--out", help="Directory to write the ZIP to.")] = None,
    link: Annotated[bool, typer.Option("--link", help="Store the ZIP and print a link valid for 7 days.")] = False,
    embeddings: Annotated[bool | None, typer.Option("--embeddings/--no-embeddings",
                                                    help="Include vectors (parquet only; default on for parquet).")
                          ] = None,
    export_id: Annotated[str | None, typer.Option("--export-id", help="Re-run this export id (after a crash).")] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", help="POST the result here "
                                                "(default ENCAPTIO_EXPORT_WEBHOOK_URL).")] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = 3600.0,
    in_process: Annotated[bool, typer.Option("--in-process", help="Run the job in this process instead of "
                                                                  "queueing it (no daemon needed).")] = False,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue an export of every capsule, file, extracted text, chunk, row and aggregate of an organization."""
    from encaptio_data import authz
    from encaptio_data.accounts import get_organization, parse_uuid
    from encaptio_data.jobs import portability as job

    if (out is None) == (not link):
        raise InvalidInputError("give either --out DIR or --link, not both or neither")
    with open_platform() as platform:
        operator = _operator(as_, platform)
        org = parse_uuid(organization_id, "organization")
        # Refused (and audited) before anything is queued; the run checks again when it executes.
        principal = authz.authorize(platform, operator, authz.Permission.EXPORT_ORG, org)
        with platform.db.session() as session:
            get_organization(session, org)
        config = {"organization_id": str(org), "format": table_format.value, "link": link,
                  "out_dir": str(out.expanduser().resolve()) if out else None, "embeddings": embeddings,
                  "export_id": export_id, "webhook_url": webhook, "requested_by": operator}
        if in_process:
            result = _with_link(platform, _lowercase_status(job.run_organization_export(platform.settings, config)))
        else:
            queued = job.submit_organization_export(platform.settings, config, requester_ref=principal.actor)
            note = None if queued["daemon_running"] else NO_DAEMON.format(home=queued["dagster_home"])
            if wait and note:
                raise EncaptioError(f"run {queued['run_id']} queued, but {note}")
            result = _lowercase_status(queued) | ({"note": note} if note else {})
            if wait:
                instance = job.queue_instance(platform.settings)
                result = _with_link(platform, _lowercase_status(job.wait_for_export(instance, queued["run_id"],
                                                                                    timeout=timeout)))
    emit(result, as_json, _render_export)


@export_app.command("status")
def export_status(run_id: Annotated[str, typer.Argument(help="The run id `encaptio export org` printed.")],
                  wait: WaitOption = False, timeout: TimeoutOption = 3600.0,
                  as_: AsOption = None, as_json: JsonOption = False) -> None:
    """The state of a queued export run; once it succeeded, its result (and for --link a fresh token)."""
    from encaptio_data import authz
    from encaptio_data.errors import NotFoundError
    from encaptio_data.jobs import portability as job

    with open_platform() as platform:
        instance = job.queue_instance(platform.settings)
        run = instance.get_run_by_id(run_id)
        if run is None or run.job_name != job.JOB_NAME:
            raise NotFoundError(f"no organization export run {run_id} in the Dagster instance at "
                                f"{instance.root_directory}")
        config = run.run_config["ops"][job.OP_NAME]["config"]
        authz.authorize(platform, _operator(as_, platform), authz.Permission.EXPORT_ORG, config["organization_id"])
        if wait:
            result = job.wait_for_export(instance, run_id, timeout=timeout)
        elif run.is_finished:
            result = job.export_result(instance, run_id)
        else:
            result = {"run_id": run_id, "status": run.status.value,
                      "export_id": config.get("export_id") or job.export_id_for(run.root_run_id or run_id)}
            if run.status.value == "QUEUED" and not job.queue_daemon_running(instance):
                result["note"] = NO_DAEMON.format(home=instance.root_directory)
        result = _with_link(platform, _lowercase_status(result))
    emit(result, as_json, _render_export)


@export_app.command("download")
def export_download(token: str, out: Annotated[Path, typer.Option("--out", help="Directory to write the ZIP to.")],
                    as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Download an organization export with its link's token (refused once expired or if altered)."""
    from encaptio_data.portability import download

    with open_platform() as platform:
        path = download(platform, token, out, operator=_operator(as_, platform))
    emit({"path": str(path), "bytes": path.stat().st_size}, as_json)


@import_app.command("org")
def import_org(archive: Annotated[Path, typer.Argument(help="A ZIP written by `encaptio export org`.")],
               as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Verify an organization export and load it here, all or nothing (refused if the organization exists)."""
    from encaptio_data.portability import import_organization

    with open_platform() as platform:
        result = import_organization(platform, archive, operator=_operator(as_, platform))
    emit(result.as_dict(), as_json)


def register_bench(bench_app: typer.Typer) -> None:
    @bench_app.command("portability")
    def bench_portability(as_json: JsonOption = False) -> None:
        """Export and import of the demo organization against a tar of its files plus a database dump."""
        from bench.portability import run_portability_bench

        emit(run_portability_bench(progress=_bench_progress(as_json)), as_json)
