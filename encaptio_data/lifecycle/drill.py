"""Restore drills: prove, on a schedule, that the backups restore, and how long and how much.

A drill restores twice into scratch databases, exactly as an operator would in an incident:

* **latest** — the newest backup, checked against the manifest recorded when it was taken
  (every table's row count and digest), plus the engine's own integrity checks;
* **point in time** — a restore to a moment T. On PostgreSQL the drill first writes two canary
  audit entries, one committed before T and one after, and the restored copy must hold the first
  and not the second; it restores from repo2 (the cross-region copy, WAL included) whenever that
  holds a backup from before T. On SQLite (no WAL archive) T falls between the two newest backups and the
  restore must pick the nearest backup at or before T.

Both replay the erasure ledger read from the live database and check that no erased subject is
back. What is measured:

* ``rto_seconds`` — the slowest of the restores, from the first byte fetched to a database that
  is recovered, promoted and re-erased (ready to serve); the integrity checks are timed apart.
* ``rpo_seconds`` — for the restore aimed at "now" (the latest backup on SQLite, the
  point-in-time recovery on PostgreSQL), the time between that target and the last transaction
  present in the restored copy: the data a disaster at that moment would have lost.

The evidence goes into the restored backup's row in ``backups`` (``manifest["last_drill"]``), into
an audit entry, and into ``backups/drills/`` in the object store (it survives a restore of the
database). A failed drill is an alert: an audit entry, an error in the log, and a POST to
ENCAPTIO_ALERT_WEBHOOK when set; a webhook that fails is logged, never raised.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from encaptio_data import audit, authz
from encaptio_data.authz import Permission, Principal
from encaptio_data.db.enums import BackupStatus
from encaptio_data.db.models import AuditEntry, Backup, utcnow
from encaptio_data.lifecycle import backup as bk
from encaptio_data.lifecycle import pgbackrest as pgb
from encaptio_data.platform import Platform

log = logging.getLogger(__name__)

DRILL_PREFIX = "backups/drills/"
WEBHOOK_TIMEOUT_S = 5


def run_drill(platform: Platform, *, operator: Principal | str | None, at: datetime | None = None,
              webhook_url: str | None = None) -> dict[str, Any]:
    """Run a restore drill; returns rto_seconds, rpo_seconds, checks and the evidence. Never
    raises for a failed restore: a failure is the drill's finding (``passed`` False, alerted).
    A drill restores (into scratch), so the operator needs restore_backup; a refusal raises."""
    principal = authz.authorize(platform, operator, Permission.RESTORE_BACKUP)
    actor = principal.actor
    drill_id = str(uuid.uuid4())
    started_at = utcnow()
    started = time.monotonic()
    try:
        if at is not None:
            at = bk.require_aware(at)
        body = _sqlite_drill(platform, at, principal) if platform.db.dialect == "sqlite" else \
            _postgres_drill(platform, at, actor)
    except Exception as exc:  # the drill's job is to report any failure, whatever raised it
        log.exception("restore drill %s could not complete", drill_id)
        body = {"backup_id": None, "restores": [], "rto_seconds": None, "rpo_seconds": None,
                "checks": [bk.make_check("drill_completed", False, f"{type(exc).__name__}: {exc}"[:500])]}
    checks = body["checks"]
    passed = bool(checks) and all(c["passed"] for c in checks)
    result = {"drill_id": drill_id, "store": platform.db.dialect, "passed": passed, **body,
              "started_at": started_at.isoformat(), "finished_at": utcnow().isoformat(),
              "seconds": round(time.monotonic() - started, 3)}
    result["evidence"] = _record(platform, result, actor)
    if not passed:
        result["alert"] = alert(platform, result, actor=actor, webhook_url=webhook_url)
    return result


def _named(prefix: str, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**check, "name": f"{prefix}.{check['name']}"} for check in checks]


def _summary(label: str, restored: dict[str, Any], target: datetime) -> dict[str, Any]:
    return {"restore": label, "backup_id": restored.get("backup_id"), "repo": restored.get("repo"),
            "target": target.isoformat(),
            "last_transaction_at": restored.get("last_transaction_at"), "rto_seconds": restored["rto_seconds"],
            "rpo_seconds": restored.get("rpo_seconds"), "seconds": restored.get("seconds")}


def _sqlite_drill(platform: Platform, at: datetime | None, principal: Principal) -> dict[str, Any]:
    entries = bk.sqlite_backups(platform)
    if not entries:
        raise bk.BackupError("no SQLite backup to restore")
    now = utcnow()
    restores, checks = [], []
    with bk.private_workdir("encaptio-drill-") as work:
        latest = bk.restore(platform, now, work / "latest.sqlite3", operator=principal)
        restores.append(_summary("latest", latest, now))
        checks += _named("latest", latest["checks"])
        checks.append(bk.make_check("latest.is_newest_backup", latest["backup_id"] == entries[-1]["backup_id"],
                                    {"restored": latest["backup_id"], "newest": entries[-1]["backup_id"]}))
        target = at
        if target is None and len(entries) >= 2:
            older, newer = entries[-2]["snapshot_at"], entries[-1]["snapshot_at"]
            target = older + (newer - older) / 2
        if target is not None:
            expected = [e for e in entries if e["snapshot_at"] <= target]
            point = bk.restore(platform, target, work / "point_in_time.sqlite3", operator=principal)
            restores.append(_summary("point_in_time", point, target))
            checks += _named("point_in_time", point["checks"])
            checks.append(bk.make_check("point_in_time.nearest_backup_at_or_before_target",
                                        bool(expected) and point["backup_id"] == expected[-1]["backup_id"],
                                        {"target": target.isoformat(), "restored": point["backup_id"],
                                         "snapshot_at": point["snapshot_at"]}))
        else:
            restores.append({"restore": "point_in_time", "skipped": "only one backup exists: a point between two "
                                                                   "backups needs two"})
    timed = [r for r in restores if "rto_seconds" in r]
    return {"backup_id": latest["backup_id"], "restores": restores, "checks": checks,
            "rto_seconds": max(r["rto_seconds"] for r in timed), "rpo_seconds": latest["rpo_seconds"],
            "target_time": now.isoformat()}


def _postgres_drill(platform: Platform, at: datetime | None, actor: str) -> dict[str, Any]:
    stanza = pgb.PgBackRest.from_environment()
    manifest = bk.latest_postgres_manifest(platform)
    carried = bk.read_carry_over(platform)
    engine = platform.db.engine
    canaries: dict[str, int] = {}
    if at is None:
        canaries["before"] = audit.append(platform.db, actor=actor, action="backup.drill_canary",
                                          details={"phase": "before"})
        target = pgb.server_now(engine)
        time.sleep(0.01)  # the next commit's timestamp is then strictly after the target
        canaries["after"] = audit.append(platform.db, actor=actor, action="backup.drill_canary",
                                         details={"phase": "after"})
    else:
        target = at
        audit.append(platform.db, actor=actor, action="backup.restore_requested", details={"at": at.isoformat()})
    pgb.switch_and_wait_archived(engine)
    with platform.db.session() as session:
        canary_hashes = {phase: session.scalar(sa.select(AuditEntry.hash).where(AuditEntry.seq == seq))
                         for phase, seq in canaries.items()}

    def inspect_canaries(restored: sa.Engine) -> list[dict[str, Any]]:
        if not canaries:
            return []
        with restored.connect() as conn:
            found = dict(conn.execute(sa.select(AuditEntry.seq, AuditEntry.hash).where(
                AuditEntry.seq.in_(list(canaries.values())))).all())
        return [bk.make_check("canary_committed_before_target_present",
                              found.get(canaries["before"]) == canary_hashes["before"], {"seq": canaries["before"]}),
                bk.make_check("canary_committed_after_target_absent", canaries["after"] not in found,
                              {"seq": canaries["after"]})]

    with bk.scratch_directory(stanza) as work:
        latest = bk.restore_postgres_scratch(
            platform, stanza, work / "latest", carried, actor, target_type="name",
            target=manifest["restore_point"]["restore_point"], set_label=manifest["label"],
            expected_tables=manifest["tables"])
        latest.pop("cluster")
        point_target = datetime.fromisoformat(manifest["restore_point"]["created_at"])
        latest["rpo_seconds"] = bk.rpo_between(point_target, latest["last_transaction_at"])
        # The point in time comes from repo2, the cross-region copy, whenever it holds a backup
        # from before the target: so every drill proves that copy restores on its own.
        repo = 2 if any(b["timestamp"]["stop"] < target.timestamp() for b in stanza.backups(repo=2)) else 1
        point = bk.restore_postgres_scratch(platform, stanza, work / "point_in_time", carried, actor,
                                            target_type="time", target=target.isoformat(sep=" "), repo=repo,
                                            inspect=inspect_canaries)
        point.pop("cluster")
        point["rpo_seconds"] = bk.rpo_between(target, point["last_transaction_at"])
    latest["backup_id"] = manifest["backup_id"]
    restores = [_summary("latest", latest, point_target), _summary("point_in_time", point, target)]
    checks = _named("latest", latest["checks"]) + _named("point_in_time", point["checks"])
    return {"backup_id": manifest["backup_id"], "restores": restores, "checks": checks,
            "rto_seconds": max(latest["rto_seconds"], point["rto_seconds"]), "rpo_seconds": point["rpo_seconds"],
            "target_time": target.isoformat()}


def _record(platform: Platform, result: dict[str, Any], actor: str) -> dict[str, Any]:
    """Evidence in three places; a failure to record one is logged and reported, not raised
    (the drill result itself must reach the caller)."""
    evidence = {k: result[k] for k in ("drill_id", "passed", "rto_seconds", "rpo_seconds", "target_time",
                                       "started_at", "finished_at") if k in result}
    evidence["failed_checks"] = [c["name"] for c in result["checks"] if not c["passed"]]
    evidence["checks"] = len(result["checks"])
    recorded: dict[str, Any] = {}
    try:
        key = f"{DRILL_PREFIX}{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{result['drill_id']}.json"
        platform.objects.put(key, json.dumps(result, indent=1, default=str).encode(), content_type="application/json")
        recorded["object"] = key
    except Exception as exc:
        log.error("restore drill %s: evidence not stored in the object store: %s", result["drill_id"], exc)
    backup_id = bk.parse_uuid(result["backup_id"]) if result.get("backup_id") else None
    try:
        if backup_id is not None:
            with platform.db.session() as session:
                row = session.get(Backup, backup_id)
                if row is not None:
                    row.manifest = {**(row.manifest or {}), "last_drill": evidence}
                    if result["passed"]:
                        row.status = BackupStatus.VERIFIED
                    recorded["backup_row"] = str(backup_id)
        recorded["audit_seq"] = audit.append(platform.db, actor=actor,
                                             action="backup.drill" if result["passed"] else "backup.drill_failed",
                                             target=result["drill_id"], details=evidence)
    except Exception as exc:
        log.error("restore drill %s: evidence not recorded in the database: %s", result["drill_id"], exc)
        recorded["database_error"] = str(exc)[:300]
    return recorded


def alert(platform: Platform, result: dict[str, Any], *, actor: str, webhook_url: str | None = None) -> dict[str, Any]:
    """Tell people a drill failed: the log always, the webhook when configured; never raises."""
    failed = [c for c in result["checks"] if not c["passed"]]
    message = (f"restore drill {result['drill_id']} FAILED on {result['store']}: "
               + "; ".join(f"{c['name']}: {str(c['detail'])[:200]}" for c in failed[:5]))
    log.error(message)
    outcome: dict[str, Any] = {"logged": True, "audit": "audit_seq" in result.get("evidence", {})}
    url = webhook_url or os.environ.get("ENCAPTIO_ALERT_WEBHOOK")
    if not url:
        outcome["webhook"] = "not configured"
        return outcome
    payload = json.dumps({"text": message, "drill_id": result["drill_id"], "store": result["store"],
                          "rto_seconds": result.get("rto_seconds"), "rpo_seconds": result.get("rpo_seconds"),
                          "failed_checks": [c["name"] for c in failed]}).encode()
    try:
        request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"},
                                         method="POST")
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            outcome["webhook"] = f"sent ({response.status})"
    except Exception as exc:  # an alert channel that is down must not turn into a second failure
        log.warning("restore drill alert webhook failed: %s", exc)
        outcome["webhook"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    return outcome

