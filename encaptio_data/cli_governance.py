"""`encaptio catalog` and `encaptio compliance report`: the governance commands.

Registered on the main app by ``cli.py``; the helpers they share with every other command
(``emit``, ``open_platform``) are imported when a command runs, because ``cli.py`` imports this
module while it is still being defined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from encaptio_data.errors import EncaptioError

compliance_app = typer.Typer(help="Compliance: the report on every promise the platform makes.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def catalog_command(
    as_json: JsonOption = False,
    check: Annotated[bool, typer.Option("--check", help="Also sample every text column not classified personal "
                                                        "for PII (reads the database); exits 1 on any gap.")] = False,
) -> None:
    """The data catalog: owner, description, classification and retention class of every table, column
    group and asset; exits 1 when it is incomplete."""
    from encaptio_data.assets.governance import code_location
    from encaptio_data.cli import emit, open_platform
    from encaptio_data.governance.catalog import build_catalog, catalog_problems, check_catalog

    asset_keys, _ = code_location()
    catalog = build_catalog()
    catalog["problems"] = catalog_problems(asset_keys=asset_keys)
    catalog["complete"] = not catalog["problems"]
    if check:
        with open_platform() as platform:
            platform.db.check()
            catalog["check"] = check_catalog(platform, asset_keys=asset_keys)
    emit(catalog, as_json, _render_catalog)
    failed = catalog["problems"] or (check and not catalog["check"]["passed"])
    if failed:
        alerts = catalog.get("check", {}).get("alerts", [])
        raise EncaptioError(f"data catalog: {len(catalog['problems'])} gaps, {len(alerts)} PII alerts in columns "
                            "not classified personal")


@compliance_app.command("report")
def compliance_report(
    out: Annotated[Path | None, typer.Option("--out", help="Write the report to FILE.html, FILE.pdf or FILE.json.")]
    = None,
    as_json: JsonOption = False,
) -> None:
    """The state of every promise now: requests and deadlines, retention, consent, backups and drills, quality,
    catalog, audit chain. A section whose store is down is marked unavailable with the reason."""
    from encaptio_data.assets.governance import code_location, stored_quality_records
    from encaptio_data.cli import emit, open_platform
    from encaptio_data.governance.compliance import build_compliance_report, write_report

    with open_platform() as platform:
        settings = platform.settings
        asset_keys, _ = code_location()
        report = build_compliance_report(platform, quality=lambda: stored_quality_records(settings),
                                         asset_keys=asset_keys)
    if out is not None:
        report["written_to"] = str(write_report(report, out))
    emit(report, as_json, _render_report)


def _render_catalog(catalog: dict[str, Any]) -> None:
    out = Console()
    table = Table(title=f"data catalog: {catalog['counts']['tables']} tables, {catalog['counts']['assets']} assets")
    for column in ("table", "owner", "classification", "retention", "column groups"):
        table.add_column(column)
    for entry in catalog["tables"]:
        if not entry["catalogued"]:
            table.add_row(escape(entry["name"]), "[red]not catalogued[/red]", "", "", "")
            continue
        groups = ", ".join(f"{name} ({g['classification']})" for name, g in entry["groups"].items())
        table.add_row(*(escape(str(v)) for v in (entry["name"], entry["owner"], entry["classification"],
                                                  entry["retention"], groups)))
    out.print(table)
    assets = Table(title="assets")
    for column in ("asset", "owner", "classification", "retention", "tables"):
        assets.add_column(column)
    for entry in catalog["assets"]:
        assets.add_row(*(escape(str(v)) for v in (entry["key"], entry["owner"], entry["classification"],
                                                   entry["retention"], ", ".join(entry["tables"]))))
    out.print(assets)
    for problem in catalog["problems"]:
        out.print(f"[red]gap:[/red] {escape(problem)}")
    for alert in catalog.get("check", {}).get("alerts", []):
        out.print(f"[red]PII:[/red] {escape(alert['entity_type'])} in {escape(alert['table'])}."
                  f"{escape(alert['column'])} ({alert['rows']} of {alert['sampled']} sampled rows)")


def _render_report(report: dict[str, Any]) -> None:
    from encaptio_data.governance.compliance import SECTION_TITLES, section_facts

    out = Console()
    colour = {"ok": "green", "attention": "yellow", "unavailable": "red"}
    table = Table(title=f"compliance report {escape(report['generated_at'])}: {escape(report['status'])}")
    for column in ("promise", "state", "facts"):
        table.add_column(column)
    for name, section in report["sections"].items():
        state = section["status"]
        table.add_row(SECTION_TITLES[name], f"[{colour[state]}]{state}[/{colour[state]}]",
                      escape("; ".join(section_facts(name, section))))
    out.print(table)
    for request in report["sections"]["requests"].get("overdue", []):
        out.print(f"[yellow]overdue:[/yellow] request {escape(request['id'])} ({escape(request['type'])}, "
                  f"{escape(request['status'])}) was due {escape(request['due_at'])}, "
                  f"{request['days_overdue']} days ago")
    if "written_to" in report:
        out.print(f"written to {escape(report['written_to'])}", highlight=False)
