"""Operational alerts: a log line, an audit entry and, when configured, a webhook POST.

An alert is raised once per thing it is about (its ``dedupe_key``, e.g. a run id): raising it
again finds the audit entry already there and does nothing, so a sensor that crashed between
raising an alert and saving its cursor does not page anyone twice.

Alerts leave the platform (a chat channel, an incident tool) and their audit entries outlive
erasure, so they carry ids, names of jobs and steps and error types, never error messages or
other free text that could hold personal data; the full story is in the run's own logs.

The webhook is best effort by design: a receiver that is down, slow or answering an error is
logged and reported in the outcome, never raised, because the caller (a Dagster sensor) must
keep running to deliver the next alert.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from encaptio_data import audit
from encaptio_data.db.models import AuditEntry
from encaptio_data.db.session import Database
from encaptio_data.errors import InvalidInputError, SettingsError

log = logging.getLogger(__name__)

WEBHOOK_URL_VARIABLE = "ENCAPTIO_ALERT_WEBHOOK_URL"
DEFAULT_TIMEOUT_SECONDS = 5.0
SEVERITIES = ("info", "warning", "error", "critical")
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
_ACTION_PREFIX = "alert."


@dataclass(frozen=True)
class Alert:
    """What happened, to what, how bad; ``details`` must hold only ids, names and counts."""

    kind: str
    summary: str
    source: str
    dedupe_key: str
    severity: str = "error"
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise InvalidInputError(f"alert severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        for name in ("kind", "summary", "source", "dedupe_key"):
            if not str(getattr(self, name)).strip():
                raise InvalidInputError(f"an alert needs a non-empty {name}")

    @property
    def action(self) -> str:
        return f"{_ACTION_PREFIX}{self.kind}"

    def payload(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "summary": self.summary, "source": self.source,
                "key": self.dedupe_key, "details": dict(self.details)}


@dataclass(frozen=True)
class AlertOutcome:
    audit_seq: int | None
    already_raised: bool
    webhook: str  # "not configured" | "delivered" | "failed" | "skipped (already raised)"
    webhook_status: int | None = None
    webhook_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def webhook_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """ENCAPTIO_ALERT_WEBHOOK_URL, read when an alert is raised (never at import time); empty is unset."""
    value = (os.environ if environ is None else environ).get(WEBHOOK_URL_VARIABLE, "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(f"{WEBHOOK_URL_VARIABLE}: must be an http:// or https:// URL")
    return value


def _already_raised(db: Database, alert: Alert) -> int | None:
    with db.session() as session:
        return session.scalar(sa.select(AuditEntry.seq).where(AuditEntry.action == alert.action,
                                                              AuditEntry.target == alert.dedupe_key).limit(1))


def _post(url: str, payload: dict[str, Any], timeout: float) -> tuple[int | None, str | None]:
    """POST the payload as JSON; (status, None) on a 2xx answer, (status or None, reason) otherwise."""
    request = urllib.request.Request(url, data=json.dumps(payload, sort_keys=True).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "encaptio-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(reason).__name__}: {reason}"


def raise_alert(db: Database, alert: Alert, *, webhook_url: str | None = None,
                timeout: float = DEFAULT_TIMEOUT_SECONDS) -> AlertOutcome:
    """Log, audit and (if a URL is given) POST the alert; a repeat of the same alert is a no-op."""
    if timeout <= 0:
        raise InvalidInputError("the webhook timeout must be positive")
    existing = _already_raised(db, alert)
    if existing is not None:
        log.info("alert %s for %s already raised (audit entry %s)", alert.kind, alert.dedupe_key, existing)
        return AlertOutcome(audit_seq=existing, already_raised=True, webhook="skipped (already raised)")
    log.log(_LOG_LEVELS[alert.severity], "ALERT [%s] %s: %s", alert.severity, alert.kind, alert.summary)
    # The entry is written before the webhook is tried: the trail records every alert even when
    # nobody could be told, and the webhook's result is in the outcome and the log.
    seq = audit.append(db, actor=alert.source, action=alert.action, target=alert.dedupe_key,
                       details={"severity": alert.severity, "summary": alert.summary, **alert.details})
    if not webhook_url:
        return AlertOutcome(audit_seq=seq, already_raised=False, webhook="not configured")
    status, error = _post(webhook_url, alert.payload(), timeout)
    if error is None:
        return AlertOutcome(audit_seq=seq, already_raised=False, webhook="delivered", webhook_status=status)
    log.warning("alert %s for %s: webhook %s failed: %s", alert.kind, alert.dedupe_key,
                urlsplit(webhook_url).netloc, error)
    return AlertOutcome(audit_seq=seq, already_raised=False, webhook="failed", webhook_status=status,
                        webhook_error=error)


def run_failure_alert(*, run_id: str, job_name: str, failed_steps: list[str], error_types: list[str],
                      partition: str | None = None, source: str = "run_failure_sensor") -> Alert:
    """The alert for a failed Dagster run, from plain values (the sensor extracts them)."""
    where = f" at {', '.join(failed_steps)}" if failed_steps else ""
    why = f" ({', '.join(sorted(set(error_types)))})" if error_types else ""
    scope = f" [{partition}]" if partition else ""
    return Alert(kind="run_failed", source=source, dedupe_key=run_id, severity="error",
                 summary=f"run {run_id[:8]} of {job_name}{scope} failed{where}{why}",
                 details={"run_id": run_id, "job_name": job_name, "partition": partition,
                          "failed_steps": failed_steps, "error_types": sorted(set(error_types))})
