"""The `encaptio` command.

Every command that reports takes --json and then prints exactly one JSON document on
stdout; people get tables and progress bars instead. Failures the operator can act on
(EncaptioError) print one line on stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from encaptio_data.cli_common import AsOption, JsonOption, console, emit, open_platform, progress_bar
from encaptio_data.cli_common import bench_progress as _bench_progress
from encaptio_data.cli_common import operator_of as _operator
from encaptio_data.errors import EncaptioError
from encaptio_data.platform import Platform

app = typer.Typer(name="encaptio", help="The Encaptio data platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
app.add_typer(users_app, name="users")
dsar_app = typer.Typer(help="Data subject requests (GDPR/CCPA).", no_args_is_help=True)
app.add_typer(dsar_app, name="dsar")
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
consent_app = typer.Typer(help="Consent per purpose.", no_args_is_help=True)
app.add_typer(consent_app, name="consent")
keys_app = typer.Typer(help="Encryption keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
analytics_app = typer.Typer(help="Analytics: k-anonymous exports, pseudonym keys.", no_args_is_help=True)
app.add_typer(analytics_app, name="analytics")
retention_app = typer.Typer(help="Retention policies.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
restore_app = typer.Typer(help="Bring back soft-deleted data within its recovery window.", no_args_is_help=True)
app.add_typer(restore_app, name="restore")
capsule_app = typer.Typer(help="Capsules.", no_args_is_help=True)
app.add_typer(capsule_app, name="capsule")
backup_app = typer.Typer(help="Database backups: run, list, verify, restore.", no_args_is_help=True)
app.add_typer(backup_app, name="backup")
quality_app = typer.Typer(help="Data quality: GX suites and integrity across the stores.", no_args_is_help=True)
app.add_typer(quality_app, name="quality")
bench_app = typer.Typer(help="Benchmarks (each measures a baseline in the same run). Results: docs/benchmarks.md.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
vectors_app = typer.Typer(help="The vector store's local serving copy (ENCAPTIO_LANCEDB_LOCAL_COPY).", no_args_is_help=True)
app.add_typer(vectors_app, name="vectors")

@app.command()
def init(as_json: JsonOption = False) -> None:
    """Create the data dir and the schema (idempotent), and check every store."""
    from encaptio_data.bootstrap import initialize

    with open_platform() as platform:
        emit(initialize(platform), as_json)


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Counts per store: rows per table, objects and versions, vector rows, cache keys."""
    from encaptio_data.status import store_status

    with open_platform() as platform:
        platform.check()
        emit(store_status(platform), as_json, _render_status)


@app.command()
def demo(
    as_json: JsonOption = False,
    seed: Annotated[int, typer.Option(help="Seed of the demo corpus; the same seed gives the same corpus.")] = 7,
    organizations: Annotated[int, typer.Option(min=1)] = 2,
    capsules: Annotated[int, typer.Option(help="Capsules per organization.", min=1)] = 4,
    files: Annotated[int, typer.Option(help="Files per capsule.", min=1)] = 8,
    events: Annotated[int, typer.Option(help="Interaction events per capsule.", min=0)] = 300,
) -> None:
    """Seed the demo corpus and materialize the whole asset graph on the configured stores."""
    from encaptio_data.bootstrap import initialize
    from encaptio_data.corpus import CorpusSpec
    from encaptio_data.demo import seed_demo
    from encaptio_data.jobs.run import materialize_all
    from encaptio_data.status import store_status

    started = time.monotonic()
    spec = CorpusSpec(seed=seed, organizations=organizations, capsules_per_organization=capsules,
                      files_per_capsule=files, events_per_capsule=events)
    with open_platform() as platform:
        initialize(platform)
        with progress_bar(not as_json) as progress:
            seeded = seed_demo(platform, spec, progress=progress)
        from encaptio_data.content.uploads import capsule_ids

        def announce(stage: str) -> None:
            if not as_json:
                console.print(f"materializing {stage}", highlight=False, markup=False)

        from encaptio_data.analytics.aggregate import event_days

        run = materialize_all(platform.settings, dynamic_partitions={"capsules": capsule_ids(platform.db)},
                              days=event_days(platform.db), on_run=announce)
        summary = {"seeded": seeded, "run": run.as_dict(), "status": store_status(platform),
                   "sample_search": _sample_search(platform, spec) if run.success else None,
                   "seconds": round(time.monotonic() - started, 1)}
    emit(summary, as_json, _render_demo)
    if not run.success or run.blocking_failures:
        failed = "; ".join(run.failures) or "a blocking check failed"
        raise EncaptioError(f"demo failed (runs {', '.join(run.run_ids)}): {failed}")


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files or directories to upload.")],
    capsule: Annotated[str | None, typer.Option("--capsule", help="Existing capsule id.")] = None,
    new_capsule: Annotated[str | None, typer.Option("--new-capsule", help="Title of a capsule to create.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Owner email for --new-capsule.")] = None,
    org: Annotated[str | None, typer.Option("--org", help="Organization id (for --new-capsule).")] = None,
    no_run: Annotated[bool, typer.Option("--no-run", help="Only store the files; the uploads sensor picks them up.")] = False,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store files as uploads of a capsule (needs ingest_content there), then run its content pipeline."""
    from encaptio_data.bootstrap import initialize
    from encaptio_data.content.ingest import ingest_files
    from encaptio_data.jobs.run import materialize_all

    with open_platform() as platform:
        initialize(platform)
        report = ingest_files(platform, paths, capsule_id=capsule, new_capsule_title=new_capsule, owner_email=owner,
                              organization_id=org, operator=_operator(as_, platform)).as_dict()
        if not no_run:
            run = materialize_all(platform.settings, dynamic_partitions={"capsules": [report["capsule_id"]]},
                                  only_partitions=[report["capsule_id"]], unpartitioned=False)
            report["run"] = run.as_dict()
    emit(report, as_json)
    if not no_run and (not run.success or run.blocking_failures):
        raise EncaptioError(f"pipeline for capsule {report['capsule_id']} failed: {'; '.join(run.failures)}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    org: Annotated[str, typer.Option("--org", help="Organization id (mandatory: search never crosses tenants).")],
    capsule: Annotated[list[str] | None, typer.Option("--capsule", help="Restrict to capsule id (repeatable).")] = None,
    mode: Annotated[str, typer.Option(help="semantic, fulltext or hybrid.")] = "hybrid",
    content_type: Annotated[list[str] | None, typer.Option("--type", help="Content type (repeatable).")] = None,
    created_from: Annotated[datetime | None, typer.Option("--from", help="Created at or after (UTC).")] = None,
    created_to: Annotated[datetime | None, typer.Option("--to", help="Created before (UTC).")] = None,
    sort: Annotated[str, typer.Option(help="relevance, newest or oldest.")] = "relevance",
    limit: Annotated[int, typer.Option(help="Results per page (1-100).")] = 10,
    offset: Annotated[int, typer.Option(help="Results to skip.")] = 0,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search an organization's chunks (semantic, full-text or hybrid) as an operator allowed to search it."""
    from encaptio_data.authz import resolve
    from encaptio_data.search.service import SearchRequest, SearchService

    def aware(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    with open_platform() as platform:
        # One query, then the process exits: nothing to prewarm indexes for.
        service = SearchService(platform.vectors, platform.cache, principal=resolve(platform, _operator(as_, platform)),
                                db=platform.db, prewarm=False)
        page = service.search(SearchRequest(
            organization_id=org, query=query, mode=mode, capsule_ids=tuple(capsule or ()),
            content_types=tuple(content_type or ()), created_from=aware(created_from), created_to=aware(created_to),
            sort=sort, limit=limit, offset=offset, cursor=cursor))
    emit(page.as_dict(), as_json, _render_search)


def _actor(as_: str | None, platform: Platform) -> str:
    """The audit actor for commands that record but do not check the operator: their keyed reference
    (never the email, which would outlive the person's erasure in the trail), or "cli"."""
    from encaptio_data.authz import actor_ref
    from encaptio_data.keys import KeyStore

    operator = _operator(as_, platform)
    return actor_ref(KeyStore(platform.settings.keys_dir), operator) if operator else "cli"


def _key_values(pairs: list[str] | None) -> dict[str, str]:
    values = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise EncaptioError(f"--set expects FIELD=VALUE, got {pair!r}")
        values[name.strip()] = value
    return values


@dsar_app.command("submit")
def dsar_submit(
    type: Annotated[str, typer.Option("--type", help="access, erasure, rectification, restriction or objection.")],
    email: Annotated[str, typer.Option(help="The data subject's email.")],
    org: Annotated[str | None, typer.Option("--org", help="Organization id.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="FIELD=VALUE (rectification; purpose= for objection).")] = None,
    jurisdiction: Annotated[str, typer.Option(help="gdpr or ccpa.")] = "gdpr",
    source: Annotated[str, typer.Option(help="cli/operator (identity checked by the operator) or web/email (a code).")] = "cli",
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a request; prints it with its id (and a verification code for self-service sources)."""
    from encaptio_data.privacy.requests import Requests

    with open_platform() as platform:
        platform.db.check()
        submission = Requests(platform).submit(type=type, email=email, organization_id=org, changes=_key_values(set_),
                                               jurisdiction=jurisdiction, source=source,
                                               actor=_actor(as_, platform))
    emit({**submission.request, "merged": submission.merged, "verification_code": submission.verification_code}, as_json)


@dsar_app.command("verify")
def dsar_verify(request_id: str, code: Annotated[str, typer.Option(help="The one-time code.")],
                as_json: JsonOption = False) -> None:
    """Confirm the subject's identity with the one-time code."""
    from encaptio_data.privacy.requests import Requests

    with open_platform() as platform:
        emit(Requests(platform).verify(request_id, code), as_json)


@dsar_app.command("approve")
def dsar_approve(request_id: str, as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Approve a verified request (erasure needs a privacy officer)."""
    from encaptio_data.privacy.requests import Requests

    with open_platform() as platform:
        emit(Requests(platform).approve(request_id, operator=_operator(as_, platform)), as_json)


@dsar_app.command("reject")
def dsar_reject(request_id: str, reason: Annotated[str, typer.Option(help="Why (sent to the subject).")],
                as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Reject a request with a reason."""
    from encaptio_data.privacy.requests import Requests

    with open_platform() as platform:
        emit(Requests(platform).reject(request_id, reason, operator=_operator(as_, platform)), as_json)


@dsar_app.command("extend")
def dsar_extend(request_id: str, reason: Annotated[str, typer.Option(help="Why more time is needed.")],
                as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Extend the deadline once (GDPR: two months; CCPA: 45 days), with the reason."""
    from encaptio_data.privacy.requests import Requests

    with open_platform() as platform:
        emit(Requests(platform).extend(request_id, reason, operator=_operator(as_, platform)), as_json)


@dsar_app.command("process")
def dsar_process(request_id: Annotated[str | None, typer.Argument(help="One request; default every approved one.")] = None,
                 as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Carry out approved requests now, by the same code path as the sensor-launched jobs."""
    from encaptio_data.privacy.process import RequestProcessor

    with open_platform() as platform:
        processor = RequestProcessor(platform)
        operator = _operator(as_, platform)
        results = ([processor.process(request_id, operator=operator)] if request_id
                   else processor.process_all(operator=operator))
    emit(results, as_json)
    failed = [r for r in results if r["status"] != "completed"]
    if failed:
        raise EncaptioError(f"request {failed[0]['id']} {failed[0]['status']}: {failed[0]['status_reason']}")


@dsar_app.command("status")
def dsar_status(request_id: str, as_json: JsonOption = False) -> None:
    """State, steps done and, when complete, the signed receipt."""
    from encaptio_data.privacy.requests import Requests, request_view

    with open_platform() as platform:
        requests = Requests(platform)
        with platform.db.session() as session:
            emit(request_view(requests.get(session, request_id)), as_json)


@dsar_app.command("download")
def dsar_download(token: str, out: Annotated[Path, typer.Option("--out", help="Directory to write the ZIP to.")],
                  as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Download an access export with its token (refused once expired or if altered), as the subject
    or as an operator allowed to export subject data."""
    from encaptio_data.privacy.access import AccessExports

    with open_platform() as platform:
        path = AccessExports(platform).download(token, out, operator=_operator(as_, platform))
    emit({"path": str(path), "bytes": path.stat().st_size}, as_json)


@audit_app.command("verify")
def audit_verify(as_json: JsonOption = False) -> None:
    """Check the hash chain; exits non-zero at the first edited, inserted or removed entry."""
    from encaptio_data.audit import verify_chain

    with open_platform() as platform:
        report = verify_chain(platform.db)
    emit(report.as_dict(), as_json)
    if not report.valid:
        raise EncaptioError(f"audit chain broken: {report.problem}")


@keys_app.command("rotate")
def keys_rotate(as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Re-wrap every data key under a new master key (data untouched); the old master is retired after a
    verified re-wrap. Safe to re-run after an interruption."""
    from encaptio_data.keys import rotate_master_key

    with open_platform() as platform:
        report = rotate_master_key(platform, operator=_operator(as_, platform))
    emit(report, as_json)


@keys_app.command("seal-files")
def keys_seal_files(as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Seal every plain upload of a known user with that user's data key (uploads stored before sealing
    existed); idempotent. The pipeline's registration does the same for each capsule it runs."""
    from encaptio_data.content.uploads import seal_files

    with open_platform() as platform:
        emit(seal_files(platform, operator=_operator(as_, platform)), as_json)


@keys_app.command("seal-events")
def keys_seal_events(as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Seal signed-in users' event texts and clients written around the event-write path (plain text
    of a known user, text without its blind index); idempotent."""
    from encaptio_data.analytics.events import seal_events

    with open_platform() as platform:
        emit(seal_events(platform, operator=_operator(as_, platform)), as_json)


@consent_app.command("set")
def consent_set(
    email: Annotated[str, typer.Option(help="The user's email.")],
    purpose: Annotated[str, typer.Option(help="analytics, personalization, marketing or model_improvement.")],
    granted: Annotated[bool, typer.Option("--grant/--withdraw", help="Grant or withdraw.")],
    version: Annotated[str, typer.Option(help="Version of the consent text.")] = "current",
    org: Annotated[str | None, typer.Option("--org")] = None,
    as_json: JsonOption = False,
) -> None:
    """Record a consent decision (the history is kept)."""
    from encaptio_data.privacy.consent import record_consent
    from encaptio_data.privacy.subjects import find_user

    with open_platform() as platform, platform.db.session() as session:
        user = find_user(session, email=email, organization_id=org)
        emit(record_consent(session, user.id, purpose, granted=granted, version=version), as_json)


@bench_app.command("search")
def bench_search(
    chunks: Annotated[int, typer.Option(help="Rows of the synthetic chunk table (100000 and 1000000 in the docs).")],
    queries: Annotated[int, typer.Option(help="Timed queries per mode.")] = 200,
    nprobes: Annotated[int, typer.Option(help="IVF partitions probed per query (default: the API's).")] = 20,
    rebuild: Annotated[bool, typer.Option(help="Rebuild the cached dataset and indexes.")] = False,
    as_json: JsonOption = False,
) -> None:
    """p50/p95/p99 per mode through the API (query embedding included), recall@10, and the API/raw LanceDB ratio."""
    from bench.search import run_search_bench

    emit(run_search_bench(chunks, queries=queries, nprobes=nprobes, rebuild=rebuild,
                          progress=_bench_progress(as_json)), as_json)


@bench_app.command("ingest")
def bench_ingest(
    files: Annotated[int, typer.Option(help="Files per capsule of the demo corpus.")] = 16,
    as_json: JsonOption = False,
) -> None:
    """Whole-pipeline chunks per second against the raw model's encode() on the same chunks; peak memory."""
    from bench.ingest import run_ingest_bench

    emit(run_ingest_bench(files=files, progress=_bench_progress(as_json)), as_json)


@bench_app.command("retrieval")
def bench_retrieval(as_json: JsonOption = False) -> None:
    """nDCG@10 and recall@10 per mode on the labelled demo queries."""
    from bench.retrieval import run_retrieval_bench

    emit(run_retrieval_bench(progress=_bench_progress(as_json)), as_json)


@bench_app.command("scale")
def bench_scale(
    documents: Annotated[int, typer.Option(help="Files in the corpus (spread over the capsules).")] = 4,
    capsules: Annotated[int, typer.Option(help="Capsules, one pipeline run each.")] = 2,
    in_flight: Annotated[int, typer.Option(help="Runs in flight at once (and multiprocess step slots).")] = 2,
    as_json: JsonOption = False,
) -> None:
    """Documents per second through Celery with one and two workers, against the multiprocess executor."""
    from bench.scale import run_scale_bench

    emit(run_scale_bench(documents=documents, capsules=capsules, in_flight=in_flight,
                         progress=_bench_progress(as_json)), as_json)


@bench_app.command("analytics")
def bench_analytics(
    events: Annotated[int, typer.Option(help="Events in the one daily partition.")] = 10_000_000,
    rebuild: Annotated[bool, typer.Option(help="Regenerate the prepared events.")] = False,
    as_json: JsonOption = False,
) -> None:
    """One daily partition aggregated (Parquet and SQLite read paths), with peak memory."""
    from bench.analytics import run_analytics_bench

    emit(run_analytics_bench(events, rebuild=rebuild, progress=_bench_progress(as_json)), as_json)


@bench_app.command("privacy")
def bench_privacy(
    events: Annotated[int, typer.Option(help="Interaction events of the heavy subject.")] = 10_000,
    files: Annotated[int, typer.Option(help="Files of the heavy subject.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Erasure of one subject on the demo data, and the access export of a heavy subject."""
    from bench.privacy import run_privacy_bench

    emit(run_privacy_bench(events=events, files=files, progress=_bench_progress(as_json)), as_json)


@analytics_app.command("export")
def analytics_export(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or json.")] = "csv",
    capsule: Annotated[str | None, typer.Option("--capsule")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD; default 28 days before --to.")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD; default yesterday (UTC).")] = None,
    k: Annotated[int, typer.Option(min=2, help="Minimum group size enforced over the quasi-identifiers.")] = 5,
    org: Annotated[str | None, typer.Option("--org", help="Organization id (needed unless you are an admin).")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a k-anonymous analytics export; the answer names the quasi-identifiers and the k enforced."""
    from encaptio_data.analytics.export import export_analytics

    with open_platform() as platform:
        emit(export_analytics(platform, fmt, out, capsule_id=capsule, date_from=date_from, date_to=date_to, k=k,
                              operator=_operator(as_, platform), organization_id=org), as_json)


@analytics_app.command("rotate-key")
def analytics_rotate_key(as_json: JsonOption = False) -> None:
    """Start a new pseudonym key; the old one is destroyed, so old pseudonyms become unlinkable."""
    from encaptio_data.analytics.anonymize import rotate_pseudonym_key

    with open_platform() as platform:
        emit(rotate_pseudonym_key(platform.settings.keys_dir), as_json)


@app.command()
def purge(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be purged; change nothing.")] = False,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove everything past its retention from every store (legal holds win; admins only); safe to re-run."""
    from encaptio_data.lifecycle.purge import purge as run_purge

    with open_platform() as platform:
        platform.check()
        emit(run_purge(platform, dry_run=dry_run, operator=_operator(as_, platform)), as_json)


@retention_app.command("show")
def retention_show(org: Annotated[str | None, typer.Option("--org", help="Organization id (default: per tier).")] = None,
                   as_json: JsonOption = False) -> None:
    """The retention policy of every data class: defaults, tier overrides and organization overrides."""
    from encaptio_data.lifecycle.retention import show

    with open_platform() as platform:
        emit(show(platform.db, org), as_json)


@retention_app.command("set")
def retention_set(
    data_class: Annotated[str, typer.Argument(help="analytics, audit_log, backups, sessions, temporary_files, "
                                                   "soft_deleted, raw_events or exports.")],
    days: Annotated[int, typer.Option("--days", help="How many days to keep it.")],
    org: Annotated[str | None, typer.Option("--org", help="One organization; without it the whole tier "
                                                          "(platform-wide: admins only).")] = None,
    tier: Annotated[str | None, typer.Option(help="standard or enterprise (default: the organization's).")] = None,
    action: Annotated[str | None, typer.Option(help="delete, anonymize, archive or aggregate (default: the "
                                                    "class's).")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a retention policy (audited with the operator); setting the values in force changes nothing."""
    from encaptio_data.lifecycle.retention import set_policy

    with open_platform() as platform:
        emit(set_policy(platform, data_class, days, operator=_operator(as_, platform), organization_id=org,
                        tier=tier, action=action), as_json)


@restore_app.command("capsule")
def restore_capsule(
    capsule_id: str,
    no_run: Annotated[bool, typer.Option("--no-run", help="Only restore; the next pipeline run re-embeds.")] = False,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Restore a soft-deleted capsule within its recovery window, then re-embed it so search finds it again."""
    from encaptio_data.jobs.run import materialize_all
    from encaptio_data.lifecycle.retention import restore_capsule as restore

    with open_platform() as platform:
        report = restore(platform, capsule_id, operator=_operator(as_, platform))
        if not no_run:
            run = materialize_all(platform.settings, dynamic_partitions={"capsules": [report["capsule_id"]]},
                                  only_partitions=[report["capsule_id"]], unpartitioned=False)
            report["run"] = run.as_dict()
    emit(report, as_json)
    if not no_run and (not run.success or run.blocking_failures):
        raise EncaptioError(f"re-embedding capsule {report['capsule_id']} failed: {'; '.join(run.failures)}")


@capsule_app.command("delete")
def capsule_delete(capsule_id: str, as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Soft-delete a capsule: gone from search at once, restorable for 30 days, then purged."""
    from encaptio_data.lifecycle.retention import delete_capsule

    with open_platform() as platform:
        emit(delete_capsule(platform, capsule_id, operator=_operator(as_, platform)), as_json)


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise EncaptioError(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-05-01T12:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@backup_app.command("run")
def backup_run(full: Annotated[bool, typer.Option("--full/--incremental", help="Full or incremental.")] = True,
               as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Back up the database now (SQLite: encrypted online copy; PostgreSQL: pgBackRest to both repositories)."""
    from encaptio_data.lifecycle.backup import run_backup

    with open_platform() as platform:
        emit(run_backup(platform, "full" if full else "incremental", operator=_operator(as_, platform)), as_json)


@backup_app.command("list")
def backup_list(as_json: JsonOption = False) -> None:
    """Every backup with its status, size and checksum."""
    from encaptio_data.lifecycle.backup import list_backups

    with open_platform() as platform:
        emit(list_backups(platform), as_json)


@backup_app.command("verify")
def backup_verify(backup_id: str, as_json: JsonOption = False) -> None:
    """Restore into scratch and check it; exits 1 naming the damaged file."""
    from encaptio_data.lifecycle.backup import verify_backup

    with open_platform() as platform:
        emit(verify_backup(platform, backup_id, actor=platform.settings.operator or "cli"), as_json)


@backup_app.command("restore")
def backup_restore(
    at: Annotated[str, typer.Option("--at", help="ISO 8601 time; naive means UTC.")],
    to: Annotated[str, typer.Option("--to", help='"live" (application stopped) or a path.')],
    ledger_file: Annotated[Path | None, typer.Option(help="Erasure ledger JSON from `backup export-ledger`.")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Restore to a point in time, then re-apply the erasure ledger so erased subjects stay erased."""
    from encaptio_data.lifecycle.backup import restore

    ledger = json.loads(ledger_file.read_text()) if ledger_file else None
    with open_platform() as platform:
        emit(restore(platform, _when(at), to, operator=_operator(as_, platform), ledger=ledger), as_json)


@backup_app.command("export-ledger")
def backup_export_ledger(out: Annotated[Path, typer.Option("--out")], as_json: JsonOption = False) -> None:
    """Write the erasure ledger (keyed hashes only) to a file kept apart from the database."""
    from encaptio_data.lifecycle.backup import export_ledger

    with open_platform() as platform:
        rows = export_ledger(platform)
    out.write_text(json.dumps(rows, indent=1))
    emit({"path": str(out), "rows": len(rows)}, as_json)


@backup_app.command("setup")
def backup_setup(as_json: JsonOption = False) -> None:
    """Configure WAL archiving and the pgBackRest stanza (production profile)."""
    from encaptio_data.lifecycle.backup import setup_postgres_backups

    with open_platform() as platform:
        emit(setup_postgres_backups(platform), as_json)


@app.command()
def drill(as_: AsOption = None, as_json: JsonOption = False) -> None:
    """Restore drill: latest backup and a point in time into scratch; reports rto_seconds and rpo_seconds."""
    from encaptio_data.lifecycle.drill import run_drill

    with open_platform() as platform:
        result = run_drill(platform, operator=_operator(as_, platform))
    emit(result, as_json)
    if not result["passed"]:
        raise EncaptioError(f"restore drill {result['drill_id']} failed: "
                            + ", ".join(c["name"] for c in result["checks"] if not c["passed"]))


class BenchMemory(StrEnum):
    """What memory each side of the SQLite backup bench starts with (bench.backup.SQLITE_MEMORY)."""

    PRIMED = "primed"
    IDLE = "idle"
    AS_IS = "as-is"


@bench_app.command("backup")
def bench_backup(
    size_mb: Annotated[int, typer.Option(help="PostgreSQL database size.")] = 1024,
    sqlite_mb: Annotated[int, typer.Option(help="SQLite database size.")] = 256,
    datasets: Annotated[str, typer.Option(help="realistic and/or pgbench, comma-separated; none: SQLite only.")
                        ] = "realistic,pgbench",
    sqlite_rounds: Annotated[int, typer.Option(help="SQLite rounds, alternating which side goes first (medians).")
                             ] = 1,
    sqlite_memory: Annotated[BenchMemory, typer.Option(help="What memory each SQLite side starts with.")
                             ] = BenchMemory.PRIMED,
    as_json: JsonOption = False,
) -> None:
    """Backup and restore against pg_dump/pg_restore and sqlite3's backup, and a drill on the same database."""
    from bench.backup import run_backup_bench

    emit(run_backup_bench(size_mb=size_mb, sqlite_mb=sqlite_mb, datasets=tuple(datasets.split(",")),
                          progress=_bench_progress(as_json), sqlite_rounds=sqlite_rounds,
                          sqlite_memory=sqlite_memory.value), as_json)


@vectors_app.command("sync")
def vectors_sync(
    every: Annotated[float | None, typer.Option(help="Keep syncing every this many seconds (Ctrl-C stops).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Bring the local serving copy to the S3 copy's latest versions; prints what changed and how stale it is."""
    import threading

    from encaptio_data.errors import SettingsError
    from encaptio_data.stores.vector_replica import SyncedVectorStore, sync_periodically

    with open_platform() as platform:
        store = platform.vectors
        if not isinstance(store, SyncedVectorStore):
            raise SettingsError("ENCAPTIO_LANCEDB_LOCAL_COPY is not set: searches read the vector store itself, "
                                "there is no serving copy to sync")
        if every is None:
            report = store.sync(cache=platform.cache)
            emit(report.as_dict() | {"freshness": store.freshness().as_dict()}, as_json)
            return
        stop = threading.Event()
        try:
            sync_periodically(store, every, stop, cache=platform.cache,
                              on_result=lambda result: emit(result.as_dict() if hasattr(result, "as_dict")
                                                            else {"error": str(result)}, as_json))
        except KeyboardInterrupt:
            stop.set()


@quality_app.command("run")
def quality_run(
    as_json: JsonOption = False,
    alert: Annotated[bool, typer.Option(help="Record failed blocking checks in the audit trail and POST them to "
                                             "ENCAPTIO_ALERT_WEBHOOK, as the Dagster checks do.")] = False,
) -> None:
    """Run every quality check over the whole platform; exits 1 when a blocking (ERROR) check fails."""
    from encaptio_data.quality.runner import run_all

    with open_platform() as platform:
        platform.check()
        result = run_all(platform, alert=alert)
    emit(result, as_json, _render_quality)
    if result["blocking_failed"]:
        raise EncaptioError(f"blocking quality checks failed: {', '.join(result['failed'])}")


@quality_app.command("report")
def quality_report(
    output: Annotated[Path, typer.Option("--output", help="Where to write the HTML page.")] = Path("quality-report.html"),
    as_json: JsonOption = False,
) -> None:
    """Run every quality check and write the results as one HTML page."""
    from encaptio_data.quality.runner import run_all, write_report

    with open_platform() as platform:
        platform.check()
        result = run_all(platform)
    path = write_report(result, output)
    emit({"report": str(path), "passed": result["passed"], "blocking_failed": result["blocking_failed"],
          "failed": result["failed"]}, as_json)


@bench_app.command("quality")
def bench_quality(
    chunks: Annotated[int, typer.Option(help="Chunks (and LanceDB rows).")] = 1_000_000,
    content_rows: Annotated[int, typer.Option(help="Content rows, each with its object.")] = 100_000,
    data_dir: Annotated[Path | None, typer.Option(help="Where to build and keep the store.")] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild even if a store of this size exists.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Every quality check at scale on synthetic data, against bare reads of the same data."""
    from bench.quality import run_quality_bench

    emit(run_quality_bench(chunks=chunks, content_rows=content_rows, data_dir=data_dir, rebuild=rebuild,
                           progress=_bench_progress(as_json)), as_json)


def _render_quality(result: dict[str, Any]) -> None:
    verdict = "passed" if result["passed"] else ("blocking checks failed" if result["blocking_failed"] else "warnings")
    table = Table(title=f"data quality: {verdict} ({result['seconds']} s)")
    for column in ("check", "asset", "severity", "result", "statistics"):
        table.add_column(column)
    for check in result["checks"]:
        state = "passed" if check["passed"] else ("[red]failed[/red]" if check["blocking"] else "[yellow]warning[/yellow]")
        table.add_row(check["name"], check["asset"], check["severity"], state,
                      ", ".join(f"{k}={v}" for k, v in check["statistics"].items()))
    Console().print(table)
    for check in result["checks"]:
        for example in check["examples"][:5] if not check["passed"] else []:
            console.print(f"  {check['name']}: {example}", highlight=False, markup=False)


def _render_search(page: dict[str, Any]) -> None:
    out = Console()
    for rank, hit in enumerate(page["hits"], start=page["offset"] + 1):
        where = f"p.{hit['page']}" if hit["page"] else hit["content_type"]
        out.print(f"[bold]{rank}. {escape(hit['title'] or '')}[/bold] ({where}, score {hit['score']:.3f})")
        out.print("   " + escape(" ".join(hit["text"].split())[:200]), highlight=False)
    out.print(f"{page['total_candidates']} results, {page['took_ms']} ms{' (cached)' if page['cached'] else ''}"
              + (f"; next page: --cursor {page['next_cursor']}" if page["next_cursor"] else ""), highlight=False)


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Option(help="Email address, unique in the organization.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    org: Annotated[str | None, typer.Option("--org", help="Organization id; optional when only one exists.")] = None,
    role: Annotated[str, typer.Option(help="admin, privacy_officer, analyst, creator or viewer.")] = "viewer",
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a user (or report the existing one with that email); needs manage_users, except for the
    first admin of a platform that has none."""
    from encaptio_data.accounts import create_user

    with open_platform() as platform:
        platform.db.check()
        record = create_user(platform, email=email, name=name, organization_id=org, role=role,
                             operator=_operator(as_, platform))
    emit(record.as_dict(), as_json)


@users_app.command("set-role")
def users_set_role(
    email: Annotated[str, typer.Option(help="The user's email.")],
    role: Annotated[str, typer.Option(help="admin, privacy_officer, analyst, creator or viewer.")],
    org: Annotated[str | None, typer.Option("--org", help="Organization id; optional when only one exists.")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a user's role in an organization (needs manage_users; audited)."""
    from encaptio_data.accounts import set_role

    with open_platform() as platform:
        emit(set_role(platform, email=email, organization_id=org, role=role, operator=_operator(as_, platform)),
             as_json)


def _sample_search(platform: Platform, spec: Any) -> dict[str, Any]:
    """One labelled query of the demo corpus, searched in hybrid mode, to show the pipeline end to end."""
    from encaptio_data.corpus import generate
    from encaptio_data.search.service import SearchRequest, SearchService

    from encaptio_data.authz import system_principal

    labelled = next(q for q in generate(spec).queries if q.capsule_id is None)
    page = SearchService(platform.vectors, platform.cache, principal=system_principal("demo"), db=platform.db,
                         prewarm=False).search(
        SearchRequest(str(labelled.organization_id), labelled.text, limit=3))
    return {"query": labelled.text, "organization_id": str(labelled.organization_id), **page.as_dict()}


def _render_status(status: dict[str, Any]) -> None:
    table = Table(title=f"encaptio status ({status['profile']})")
    table.add_column("store")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, count in status["relational"]["rows"].items():
        table.add_row("relational", name, str(count))
    for what in ("objects", "versions", "delete_markers", "bytes"):
        table.add_row("objects", what, str(status["objects"][what]))
    for name, count in status["vectors"]["rows"].items():
        table.add_row("vectors", name, str(count))
    table.add_row("cache", "keys", str(status["cache"]["keys"]))
    Console().print(table)


# The data catalog and the compliance report (issue 9): the commands live in cli_governance.py.
from encaptio_data.cli_governance import catalog_command, compliance_app  # noqa: E402

app.command("catalog")(catalog_command)
app.add_typer(compliance_app, name="compliance")


def _render_demo(summary: dict[str, Any]) -> None:
    _render_status(summary["status"])
    run = summary["run"]
    out = Console()
    per_asset = Counter(name.split("[")[0] for name in run["assets_materialized"])
    listing = ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in per_asset.items())
    out.print(f"Assets materialized: {len(run['assets_materialized'])} ({listing})", highlight=False)
    out.print(f"Checks passed: {run['checks_passed']}/{len(run['checks'])}")
    if summary["sample_search"]:
        out.print(f"\nSample search: {summary['sample_search']['query']!r} "
                  f"(--org {summary['sample_search']['organization_id']})", highlight=False)
        _render_search(summary["sample_search"])
    out.print(f"{len(run['run_ids'])} runs {'succeeded' if run['success'] else 'FAILED'} in {summary['seconds']} s")


# Organization export and import (issue 9): the commands live in cli_portability.py.
from encaptio_data.cli_portability import export_app, import_app, register_bench  # noqa: E402

app.add_typer(export_app, name="export")
app.add_typer(import_app, name="import")
register_bench(bench_app)


def main() -> None:
    try:
        app()
    except EncaptioError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
