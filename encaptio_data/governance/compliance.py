"""The compliance report: the state of every promise the platform makes, at one moment.

Sections (each computed on its own, so one store that is down marks its sections
``unavailable`` with a one-line reason instead of failing the report):

* ``requests`` — data subject requests by status and type; open ones past their (extended)
  due date named, with how late they are; those due within a week.
* ``retention`` — what is past its retention and still present (the purge's own dry run, so
  report and purge never disagree), and what legal holds keep, with the holds' reasons.
* ``consent`` — per purpose, how many live users granted, withdrew or never answered.
* ``backups`` — the newest restorable backup and its age, the last restore drill's result,
  recovery time (RTO) and data-loss window (RPO).
* ``quality`` — the latest evaluation of every quality check, as the caller's source reports
  it (the Dagster instance; this module imports no Dagster).
* ``catalog`` — completeness and PII in columns not classified personal (``governance.catalog``).
* ``audit`` — verification of the hash chain.

The report names requests, holds and backups by id and never copies personal column values;
held items come with counsel's reason, which the report exists to show.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from encaptio_data.db.enums import BackupStatus, ConsentPurpose, RequestStatus
from encaptio_data.db.models import Backup, Consent, DataSubjectRequest, User, utcnow
from encaptio_data.errors import EncaptioError, InvalidInputError
from encaptio_data.platform import Platform
from encaptio_data.settings import redact_url

log = logging.getLogger(__name__)

REPORT_VERSION = 1
# The schedules take a full backup daily (01:00) and an incremental hourly; a drill monthly.
BACKUP_MAX_AGE = timedelta(hours=26)
DRILL_MAX_AGE = timedelta(days=32)
RESTORABLE = {BackupStatus.SUCCEEDED, BackupStatus.VERIFIED}
PREVIEW = 20
OK, ATTENTION, UNAVAILABLE = "ok", "attention", "unavailable"

QualitySource = Callable[[], list[dict[str, Any]]]
_URL_CREDENTIALS = re.compile(r"(\w[\w+.-]*://[^:/@\s]+):[^@\s]+@")


def _one_line(exc: BaseException) -> str:
    """The first line of an error, credentials in URLs masked: it ends up in files and logs."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    else:
        text = str(exc)
    first = (text.strip().splitlines() or [""])[0].strip()
    first = _URL_CREDENTIALS.sub(r"\1:***@", first)
    if not isinstance(exc, EncaptioError):
        first = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return first[:300]


def _section(name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return compute()
    except Exception as exc:  # a section that cannot be computed is reported as such, never fatal
        reason = _one_line(exc)
        log.warning("compliance report: section %s unavailable: %s", name, reason)
        return {"status": UNAVAILABLE, "reason": reason}


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


# -- sections ------------------------------------------------------------------------------------------


def requests_section(platform: Platform, now: datetime) -> dict[str, Any]:
    from encaptio_data.privacy.requests import Requests

    with platform.db.session() as session:
        rows = session.execute(sa.select(DataSubjectRequest.type, DataSubjectRequest.status, sa.func.count())
                               .group_by(DataSubjectRequest.type, DataSubjectRequest.status)).all()
        statuses = {str(r.id): r.status.value for r in session.execute(
            sa.select(DataSubjectRequest.id, DataSubjectRequest.status))}
    by_status: Counter[str] = Counter()
    by_type: dict[str, dict[str, int]] = {}
    for kind, status, count in rows:
        by_status[status.value] += count
        by_type.setdefault(kind.value, {})[status.value] = count
    deadlines = Requests(platform, clock=lambda: now).deadlines()
    overdue = []
    for entry in deadlines["overdue"]:
        due = datetime.fromisoformat(entry["due_at"])
        late = now - due
        overdue.append({**entry, "status": statuses.get(entry["id"], "?"),
                        "days_overdue": round(late.total_seconds() / 86_400, 1)})
    overdue.sort(key=lambda e: e["due_at"])
    near = sorted(deadlines["near_due"], key=lambda e: e["due_at"])
    return {"status": ATTENTION if overdue else OK, "total": sum(by_status.values()),
            "by_status": {s.value: by_status.get(s.value, 0) for s in RequestStatus}, "by_type": by_type,
            "open": sum(by_status.get(s, 0) for s in ("received", "identity_verified", "approved", "in_progress")),
            "overdue": overdue, "near_due": near}


def retention_section(platform: Platform, now: datetime) -> dict[str, Any]:
    from encaptio_data.lifecycle.purge import purge

    dry = purge(platform, now, dry_run=True)
    past: dict[str, dict[str, int]] = {}
    held: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for data_class, report in dry["classes"].items():
        counts = {item: n for item, n in report["purged"].items() if n}
        if counts:
            past[data_class] = counts
        held += [{"data_class": data_class, **item} for item in report["held"]]
        skipped += [{"data_class": data_class, **item} for item in report["skipped"]]
    total = sum(sum(c.values()) for c in past.values())
    return {"status": ATTENTION if total else OK, "past_retention_total": total, "past_retention": past,
            "held_total": len(held), "held": held, "skipped": skipped, "classes": retention_classes(),
            "note": "what the next purge would remove (its dry run); held items stay while their hold is active"}


def retention_classes() -> list[dict[str, Any]]:
    """Which tables follow which retention class (from the catalog), and what enforces it."""
    from encaptio_data.governance.catalog import RETENTION_CLASSES, build_catalog

    tables: dict[str, list[str]] = {}
    for table in build_catalog()["tables"]:
        if table["catalogued"]:
            tables.setdefault(table["retention"], []).append(table["name"])
    return [{"retention_class": name, "tables": ", ".join(sorted(tables[name])), "enforced_by": RETENTION_CLASSES[name]}
            for name in sorted(tables)]


def consent_section(platform: Platform, now: datetime) -> dict[str, Any]:
    latest = (sa.select(Consent.user_id, Consent.purpose, Consent.granted,
                        sa.func.row_number().over(partition_by=(Consent.user_id, Consent.purpose),
                                                  order_by=(Consent.recorded_at.desc(), Consent.id.desc()))
                        .label("n"))
              .where(Consent.recorded_at <= now).subquery())
    live = sa.select(User.id).where(User.deleted_at.is_(None))
    with platform.db.session() as session:
        users = session.scalar(sa.select(sa.func.count()).select_from(live.subquery())) or 0
        rows = session.execute(sa.select(latest.c.purpose, latest.c.granted, sa.func.count())
                               .where(latest.c.n == 1, latest.c.user_id.in_(live))
                               .group_by(latest.c.purpose, latest.c.granted)).all()
    counts: dict[tuple[str, bool], int] = {}
    for purpose, granted, count in rows:
        key = purpose.value if isinstance(purpose, ConsentPurpose) else str(purpose)
        counts[(key, bool(granted))] = count
    purposes = []
    for purpose in ConsentPurpose:
        granted = counts.get((purpose.value, True), 0)
        withdrawn = counts.get((purpose.value, False), 0)
        purposes.append({"purpose": purpose.value, "users": users, "granted": granted, "withdrawn": withdrawn,
                         "no_record": users - granted - withdrawn,
                         "coverage": round(granted / users, 4) if users else None})
    return {"status": OK, "users": users, "purposes": purposes,
            "note": "coverage = live users whose latest choice for the purpose is a grant; processing for a purpose "
                    "needs that grant and no restriction or objection"}


def backups_section(platform: Platform, now: datetime) -> dict[str, Any]:
    with platform.db.session() as session:
        backups = list(session.scalars(sa.select(Backup).order_by(Backup.started_at.desc())))
    restorable = [b for b in backups if b.status in RESTORABLE and b.finished_at is not None]
    latest = max(restorable, key=lambda b: b.finished_at, default=None)
    drills = [(b, (b.manifest or {}).get("last_drill")) for b in backups]
    drills = [(b, d) for b, d in drills if isinstance(d, dict) and d.get("finished_at")]
    drill_backup, drill = max(drills, key=lambda pair: pair[1]["finished_at"], default=(None, None))
    section: dict[str, Any] = {"backups": len(backups),
                               "failed": sum(1 for b in backups if b.status is BackupStatus.FAILED),
                               "max_age_hours": BACKUP_MAX_AGE.total_seconds() / 3600}
    problems = []
    if latest is None:
        section["latest"] = None
        problems.append("no restorable backup")
    else:
        age = now - latest.finished_at
        section["latest"] = {"id": str(latest.id), "store": latest.store, "kind": latest.kind.value,
                             "status": latest.status.value, "finished_at": _iso(latest.finished_at),
                             "age_hours": round(age.total_seconds() / 3600, 2), "size_bytes": latest.size_bytes}
        if age > BACKUP_MAX_AGE:
            problems.append(f"newest backup is {section['latest']['age_hours']} h old")
    if drill is None:
        section["last_drill"] = None
        problems.append("no restore drill recorded")
    else:
        finished = datetime.fromisoformat(str(drill["finished_at"]))
        finished = finished if finished.tzinfo else finished.replace(tzinfo=UTC)
        section["last_drill"] = {"drill_id": drill.get("drill_id"), "backup_id": str(drill_backup.id),
                                 "passed": bool(drill.get("passed")), "rto_seconds": drill.get("rto_seconds"),
                                 "rpo_seconds": drill.get("rpo_seconds"), "finished_at": _iso(finished),
                                 "age_days": round((now - finished).total_seconds() / 86_400, 1),
                                 "failed_checks": drill.get("failed_checks", [])}
        if not drill.get("passed"):
            problems.append("the last restore drill failed")
        if now - finished > DRILL_MAX_AGE:
            problems.append(f"the last restore drill is {section['last_drill']['age_days']} days old")
    section["fresh"] = latest is not None and now - latest.finished_at <= BACKUP_MAX_AGE
    section["problems"] = problems
    section["status"] = ATTENTION if problems else OK
    return section


def quality_section(source: QualitySource | None) -> dict[str, Any]:
    if source is None:
        return {"status": UNAVAILABLE, "reason": "no record of quality check evaluations was given"}
    checks = sorted(source(), key=lambda c: (c["asset"], c["check"]))
    evaluated = [c for c in checks if c["passed"] is not None]
    if not evaluated:
        return {"status": UNAVAILABLE, "reason": f"none of the {len(checks)} quality checks has been evaluated yet "
                                                 "(run the pipeline or `encaptio demo`)"}
    failed = [c for c in evaluated if c["passed"] is False]
    blocking = [c for c in failed if c.get("severity") == "ERROR"]
    return {"status": ATTENTION if failed else OK, "checks": checks, "evaluated": len(evaluated),
            "never_evaluated": len(checks) - len(evaluated), "passed": len(evaluated) - len(failed),
            "failed": len(failed), "blocking_failed": len(blocking)}


def catalog_section(platform: Platform, asset_keys: Iterable[str] | None) -> dict[str, Any]:
    from encaptio_data.governance.catalog import check_catalog

    result = check_catalog(platform, asset_keys=asset_keys)
    return {"status": OK if result["passed"] else ATTENTION, **result}


def audit_section(platform: Platform) -> dict[str, Any]:
    from encaptio_data.audit import verify_chain

    chain = verify_chain(platform.db)
    return {"status": OK if chain.valid else ATTENTION, **chain.as_dict()}


SECTION_TITLES = {
    "requests": "Data subject requests",
    "retention": "Retention adherence",
    "consent": "Consent coverage",
    "backups": "Backups and restore drills",
    "quality": "Data quality checks",
    "catalog": "Data catalog and unclassified PII",
    "audit": "Audit trail",
}


def build_compliance_report(platform: Platform, now: datetime | None = None, *,
                            quality: QualitySource | None = None,
                            asset_keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Every section of the report as plain data; ``status`` is ok, attention (a promise is
    not kept), or incomplete (a section could not be computed)."""
    now = now or utcnow()
    if now.tzinfo is None:
        raise InvalidInputError(f"report time {now.isoformat()} must be timezone-aware")
    keys = list(asset_keys) if asset_keys is not None else None
    sections = {
        "requests": _section("requests", lambda: requests_section(platform, now)),
        "retention": _section("retention", lambda: retention_section(platform, now)),
        "consent": _section("consent", lambda: consent_section(platform, now)),
        "backups": _section("backups", lambda: backups_section(platform, now)),
        "quality": _section("quality", lambda: quality_section(quality)),
        "catalog": _section("catalog", lambda: catalog_section(platform, keys)),
        "audit": _section("audit", lambda: audit_section(platform)),
    }
    states = Counter(s["status"] for s in sections.values())
    overall = UNAVAILABLE if states[UNAVAILABLE] else (ATTENTION if states[ATTENTION] else OK)
    return {
        "report_version": REPORT_VERSION, "generated_at": now.astimezone(UTC).isoformat(),
        "profile": platform.settings.profile, "database": redact_url(platform.settings.resolved_database_url),
        "status": {UNAVAILABLE: "incomplete", ATTENTION: "attention", OK: "ok"}[overall],
        "summary": {name: s["status"] for name, s in sections.items()},
        "attention": [name for name, s in sections.items() if s["status"] == ATTENTION],
        "unavailable": {name: s["reason"] for name, s in sections.items() if s["status"] == UNAVAILABLE},
        "sections": sections,
    }


def report_counts(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers (for asset metadata and the CLI): counts and ids only, nothing personal."""
    s = report["sections"]

    def get(section: str, key: str, default: Any = None) -> Any:
        return s[section].get(key, default) if s[section]["status"] != UNAVAILABLE else default

    return {"status": report["status"], "requests_open": get("requests", "open"),
            "requests_overdue": len(get("requests", "overdue", []) or []),
            "past_retention": get("retention", "past_retention_total"), "held_items": get("retention", "held_total"),
            "backup_fresh": get("backups", "fresh"),
            "last_drill_rto_seconds": (get("backups", "last_drill") or {}).get("rto_seconds"),
            "quality_failed": get("quality", "failed"), "catalog_problems": len(get("catalog", "problems", []) or []),
            "unclassified_pii_alerts": len(get("catalog", "alerts", []) or []),
            "audit_chain_valid": get("audit", "valid"), "unavailable_sections": sorted(report["unavailable"])}


# -- rendering -----------------------------------------------------------------------------------------


def _rows(section: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The tables a section shows, in order, as (caption, rows)."""
    status = section["status"]
    if status == UNAVAILABLE:
        return []
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    name = section.get("_name")
    if name == "requests":
        tables.append(("Requests by status", [{"status": k, "requests": v} for k, v in section["by_status"].items()]))
        tables.append(("Overdue requests", [{k: e[k] for k in ("id", "type", "status", "organization_id", "due_at",
                                                                "days_overdue")} for e in section["overdue"]]))
        tables.append(("Due within a week", [{k: e[k] for k in ("id", "type", "due_at")} for e in section["near_due"]]))
    elif name == "retention":
        tables.append(("Past retention, still present", [{"data class": c, "item": i, "count": n}
                                                         for c, items in section["past_retention"].items()
                                                         for i, n in items.items()]))
        tables.append(("Kept by legal holds", [{"data class": h["data_class"], "item": h["item"],
                                                "count": h.get("count", 1), "hold": h["hold_id"],
                                                "scope": f"{h['scope']} {h['scope_id']}", "reason": h["reason"]}
                                               for h in section["held"]]))
        tables.append(("Retention class of each table", section["classes"]))
    elif name == "consent":
        tables.append(("Consent per purpose", section["purposes"]))
    elif name == "backups":
        if section.get("latest"):
            tables.append(("Newest restorable backup", [section["latest"]]))
        if section.get("last_drill"):
            drill = {k: v for k, v in section["last_drill"].items() if k != "failed_checks"}
            tables.append(("Last restore drill", [drill]))
        tables.append(("Problems", [{"problem": p} for p in section["problems"]]))
    elif name == "quality":
        tables.append(("Latest evaluation of each check", section["checks"]))
    elif name == "catalog":
        tables.append(("Catalog problems", [{"problem": p} for p in section["problems"]]))
        tables.append(("PII in columns not classified personal",
                       [{k: a[k] for k in ("table", "column", "classification", "entity_type", "rows", "sampled")}
                        for a in section["alerts"]]))
    elif name == "audit":
        tables.append(("Hash chain", [{k: section.get(k) for k in ("entries", "valid", "first_break", "problem")}]))
    return tables


def section_facts(name: str, section: dict[str, Any]) -> list[str]:
    if section["status"] == UNAVAILABLE:
        return [f"unavailable: {section['reason']}"]
    if name == "requests":
        return [f"{section['total']} requests, {section['open']} open, {len(section['overdue'])} overdue, "
                f"{len(section['near_due'])} due within a week"]
    if name == "retention":
        return [f"{section['past_retention_total']} items past retention awaiting the purge; "
                f"{section['held_total']} kept by legal holds"]
    if name == "consent":
        return [f"{section['users']} live users"]
    if name == "backups":
        latest = section.get("latest")
        line = (f"newest restorable backup {latest['age_hours']} h old ({'fresh' if section['fresh'] else 'STALE'})"
                if latest else "no restorable backup")
        drill = section.get("last_drill")
        line2 = (f"last drill {'passed' if drill['passed'] else 'FAILED'}, RTO {drill['rto_seconds']} s, "
                 f"RPO {drill['rpo_seconds']} s, {drill['age_days']} days ago"
                 if drill else "no restore drill recorded")
        return [line, line2]
    if name == "quality":
        return [f"{section['evaluated']} checks evaluated, {section['failed']} failing ({section['blocking_failed']} "
                f"blocking), {section['never_evaluated']} never evaluated"]
    if name == "catalog":
        return [f"{len(section['problems'])} catalog problems; {section['columns_scanned']} text columns sampled "
                f"({section['values_sampled']} values), {len(section['alerts'])} PII alerts"]
    if name == "audit":
        return [f"{section['entries']} entries, chain {'verifies' if section['valid'] else 'BROKEN'}"]
    return []


def _view(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "title": SECTION_TITLES[name], "status": section["status"],
             "facts": section_facts(name, section), "tables": _rows({**section, "_name": name})}
            for name, section in report["sections"].items()]


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return "" if value is None else str(value)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Compliance report {{ report.generated_at }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:75rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.2rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
font-size:.85rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
.ok{color:#17692d}.attention{color:#a35200}.unavailable,.incomplete{color:#a11}
caption{text-align:left;font-weight:600;padding:.2rem 0}
</style></head><body>
<h1>Compliance report</h1>
<p>Generated {{ report.generated_at }} · profile {{ report.profile }} · overall
<strong class="{{ report.status }}">{{ report.status }}</strong></p>
<table><tr><th>promise</th><th>state</th></tr>
{% for s in sections %}<tr><td><a href="#{{ s.name }}">{{ s.title }}</a></td>
<td class="{{ s.status }}">{{ s.status }}</td></tr>{% endfor %}</table>
{% for s in sections %}
<section id="{{ s.name }}"><h2>{{ s.title }} <small class="{{ s.status }}">({{ s.status }})</small></h2>
{% for fact in s.facts %}<p>{{ fact }}</p>{% endfor %}
{% for caption, rows in s.tables %}
<table><caption>{{ caption }}</caption>
{% if rows %}<tr>{% for column in rows[0].keys() %}<th>{{ column }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for column in rows[0].keys() %}<td>{{ cell(row.get(column)) }}</td>{% endfor %}</tr>
{% endfor %}{% else %}<tr><td>none</td></tr>{% endif %}</table>
{% endfor %}</section>
{% endfor %}
</body></html>
"""


def render_html(report: dict[str, Any]) -> str:
    """One self-contained HTML page; every value is escaped (Jinja2 autoescape)."""
    try:
        import jinja2
    except ImportError:  # jinja2 comes with Dagster; the fallback keeps the domain importable without it
        return _render_html_plain(report)
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(_TEMPLATE).render(report=report, sections=_view(report), cell=_cell)


def _render_html_plain(report: dict[str, Any]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Compliance report</title></head><body>"
             f"<h1>Compliance report</h1><p>Generated {e(report['generated_at'])} · overall {e(report['status'])}</p>"]
    for s in _view(report):
        parts.append(f"<h2>{e(s['title'])} ({e(s['status'])})</h2>")
        parts += [f"<p>{e(f)}</p>" for f in s["facts"]]
        for caption, rows in s["tables"]:
            parts.append(f"<table><caption>{e(caption)}</caption>")
            if rows:
                columns = list(rows[0])
                parts.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{e(_cell(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows]
            else:
                parts.append("<tr><td>none</td></tr>")
            parts.append("</table>")
    return "\n".join(parts) + "</body></html>\n"


def _latin1(text: str) -> str:
    # The PDF core fonts cover Latin-1 only; anything else becomes '?' rather than an error.
    return text.replace("·", "-").replace("—", "-").replace("→", "->").encode("latin-1", "replace").decode("latin-1")


def render_pdf(report: dict[str, Any]) -> bytes:
    """The same content as the HTML page, as a PDF (fpdf2, core fonts, no external files)."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.set_title("Compliance report")
    pdf.set_creation_date(datetime.fromisoformat(report["generated_at"]))
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def line(text: str, size: float = 9, style: str = "") -> None:
        pdf.set_font("Helvetica", style=style, size=size)
        pdf.multi_cell(width, size * 0.5, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    line("Compliance report", 16, "B")
    line(f"Generated {report['generated_at']} - profile {report['profile']} - overall {report['status']}", 10)
    pdf.ln(2)
    for s in _view(report):
        line(f"{s['title']} ({s['status']})", 12, "B")
        for fact in s["facts"]:
            line(fact)
        for caption, rows in s["tables"]:
            line(caption, 9, "B")
            if not rows:
                line("none")
                continue
            columns = list(rows[0])
            pdf.set_font("Helvetica", size=7)
            with pdf.table(text_align="LEFT", line_height=3.5, first_row_as_headings=True) as table:
                heading = table.row()
                for column in columns:
                    heading.cell(_latin1(column))
                for row in rows:
                    cells = table.row()
                    for column in columns:
                        cells.cell(_latin1(_cell(row.get(column)))[:400])
            pdf.ln(1)
        pdf.ln(2)
    return bytes(pdf.output())


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"


RENDERERS: dict[str, Callable[[dict[str, Any]], str | bytes]] = {
    ".html": render_html, ".htm": render_html, ".pdf": render_pdf, ".json": render_json}


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report in the format its suffix names (.html, .pdf, .json), atomically."""
    target = Path(path)
    renderer = RENDERERS.get(target.suffix.lower())
    if renderer is None:
        raise InvalidInputError(f"cannot write a compliance report to {target.name}: use .html, .pdf or .json")
    body = renderer(report)
    data = body.encode("utf-8") if isinstance(body, str) else body
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target
