"""`encaptio export org`, `encaptio import org`, `encaptio export download` and `encaptio bench portability`.

The export runs as the Dagster job `organization_export_job`, executed in process against
the data dir's persistent Dagster instance (so it is recorded and shown in the web UI, like
`encaptio demo`); no daemon or queue is needed. Import runs the domain function directly:
it is one all-or-nothing transaction whose outcome the operator waits for anyway.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from encaptio_data.cli_common import AsOption, JsonOption, console, emit, open_platform
from encaptio_data.cli_common import bench_progress as _bench_progress
from encaptio_data.cli_common import operator_of as _operator
from encaptio_data.errors import InvalidInputError

export_app = typer.Typer(help="Export an organization's data (portability).", no_args_is_help=True)
import_app = typer.Typer(help="Import an organization exported by another instance.", no_args_is_help=True)


class TableFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


def _render_export(result: dict[str, Any]) -> None:
    where = result.get("path") or f"object {result.get('key')} (link expires {result.get('expires_at')})"
    console.print(f"export {result['export_id']}: {result['bytes']} bytes, {escape(str(where))}", highlight=False)
    if result.get("token"):
        console.print(f"download with: encaptio export download {result['token']} --out DIR", highlight=False,
                      markup=False)
    if result.get("presigned_url"):
        console.print(f"or fetch: {result['presigned_url']}", highlight=False, markup=False)


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
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export every capsule, file, extracted text, chunk, row and aggregate of an organization as a ZIP."""
    from encaptio_data.jobs.portability import run_organization_export
    from encaptio_data.portability.links import issue_link

    if (out is None) == (not link):
        raise InvalidInputError("give either --out DIR or --link, not both or neither")
    with open_platform() as platform:
        operator = _operator(as_, platform)
        if not operator:
            raise InvalidInputError("an export runs on behalf of an operator: pass --as EMAIL or set ENCAPTIO_OPERATOR")
        config = {"organization_id": organization_id, "format": table_format.value, "link": link,
                  "out_dir": str(out.expanduser().resolve()) if out else None, "embeddings": embeddings,
                  "export_id": export_id, "webhook_url": webhook, "requested_by": operator}
        result = run_organization_export(platform.settings, config)
        if link:
            import uuid

            result |= issue_link(platform, uuid.UUID(result["organization_id"]), uuid.UUID(result["export_id"]))
            result["expires_at"] = result["expires_at"].isoformat()
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
