"""PII detection with Presidio's pattern recognizers, fully offline.

Presidio's default engine loads a spaCy NER model (and downloads it when missing); here it
runs on a blank English pipeline (tokenizer only) with the recognizers that need no model:
regular expressions plus checksums (Luhn for cards, mod-97 for IBANs) and libphonenumber.
Names and addresses, which need NER, are out of reach by design; what is found is found
with high precision. The email recognizer's domain check uses tldextract's bundled public
suffix snapshot: the stock recognizer would fetch the list from the internet.

Findings are stored as place + kind + keyed hash (``value_hash``), never the matched text:
the findings table must not become the most concentrated store of PII on the platform.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from encaptio_data.analytics.aggregate import (
    day_bounds,
    day_expression,
    excluded_subject_ids,
    opened_text,
    read_usable_events,
    readable_texts,
    stored_texts,
)
from encaptio_data.analytics.anonymize import PseudonymKey, pseudonym_key
from encaptio_data.db.enums import ExtractionStatus
from encaptio_data.db.models import (
    Capsule,
    Content,
    ContentExtraction,
    InteractionEvent,
    PiiFinding,
    PiiScanState,
    personal_columns,
)
from encaptio_data.db.session import Database
from encaptio_data.keys import KeyStore
from encaptio_data.platform import Platform

# Presidio entity → the placeholder ``mask_pii`` writes.
ENTITY_TAGS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "SSN",
    "CRYPTO": "CRYPTO_WALLET",
    "MEDICAL_LICENSE": "MEDICAL_LICENSE",
}
# Every recognizer above needs a digit or an '@' in the text (emails, numbers, card and account
# numbers, addresses, wallets, licences): text without either is skipped without loading spaCy
# or Presidio, which is most search queries and chat questions.
_CANDIDATE = re.compile(r"[0-9@]")
# Below this, pattern-only matches are mostly digit runs that happen to fit (order numbers,
# dates); phone numbers score 0.4 after libphonenumber has validated them.
SCORE_THRESHOLD = 0.4

# Text columns the model does not declare personal but where people could still type PII.
UNDECLARED_TEXT_COLUMNS = (
    ("capsules", "title"),
    ("capsules", "description"),
    ("content", "title"),
    ("content", "filename"),
    ("daily_top_queries", "query_norm"),
)



@lru_cache(maxsize=1)
def analyzer() -> Any:
    """The AnalyzerEngine, built once per process (a blank spaCy pipeline and pattern recognizers)."""
    import spacy
    import tldextract

    # Presidio imports Hugging Face transformers at import time, for an NER engine we never use;
    # that import alone takes seconds. A None entry makes its guarded import fail fast, and is
    # removed right after, so any later real import of transformers is unaffected.
    blocked = "transformers" not in sys.modules
    if blocked:
        sys.modules["transformers"] = None  # type: ignore[assignment]
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    finally:
        if blocked:
            del sys.modules["transformers"]
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        MedicalLicenseRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    class BlankSpacyEngine(SpacyNlpEngine):
        """spaCy tokenization without a trained model: nothing to download, no NER."""

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    # suffix_list_urls=() makes tldextract use the snapshot shipped in its wheel, never the network.
    offline_domains = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_domains(pattern_text).fqdn != ""

    engine = BlankSpacyEngine(models=[{"lang_code": "en", "model_name": "blank:en"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"], recognizers=[
        OfflineEmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), IbanRecognizer(), IpRecognizer(),
        UsSsnRecognizer(), CryptoRecognizer(), MedicalLicenseRecognizer(),
    ])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


@dataclass(frozen=True)
class Detection:
    entity_type: str
    start: int
    end: int
    score: float


def detect(text: str, *, threshold: float = SCORE_THRESHOLD) -> list[Detection]:
    """PII spans in ``text``, overlaps resolved (the higher score wins, then the longer span)."""
    if not text or not _CANDIDATE.search(text):
        return []
    results = analyzer().analyze(text=text, language="en", entities=list(ENTITY_TAGS), score_threshold=threshold)
    ranked = sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start))
    kept: list[Detection] = []
    for r in ranked:
        if all(r.end <= k.start or r.start >= k.end for k in kept):
            kept.append(Detection(r.entity_type, r.start, r.end, round(float(r.score), 3)))
    return sorted(kept, key=lambda d: d.start)


def contains_pii(text: str) -> bool:
    return bool(detect(text))


def mask_pii(text: str) -> str:
    """``text`` with each detected PII span replaced by a placeholder such as ``<EMAIL>``."""
    pieces, cursor = [], 0
    for d in detect(text):
        pieces += [text[cursor:d.start], f"<{ENTITY_TAGS.get(d.entity_type, d.entity_type)}>"]
        cursor = d.end
    return "".join(pieces) + text[cursor:]


def masks_pii(capsule_settings: dict[str, Any] | None) -> bool:
    """Whether a capsule asked for PII to be masked before its text is embedded."""
    return bool((capsule_settings or {}).get("mask_pii"))


def value_hash(value: str, key: PseudonymKey) -> str:
    """Keyed hash of a matched value: an SSN has too few possibilities for a plain hash to hide it."""
    return key.pseudonym(value)


# -- scans --------------------------------------------------------------------------------


@dataclass
class ScanReport:
    content_scanned: int = 0
    content_unchanged: int = 0
    event_days_scanned: int = 0
    texts_scanned: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"content_scanned": self.content_scanned, "content_unchanged": self.content_unchanged,
                "event_days_scanned": self.event_days_scanned, "texts_scanned": self.texts_scanned,
                "findings": dict(self.findings), "seconds": round(self.seconds, 3)}


def _finding_rows(detections: Iterable[Detection], text: str, key: PseudonymKey, now: datetime, *,
                  source: str, field_name: str, content_id: uuid.UUID | None = None,
                  event_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    return [{"id": uuid.uuid4(), "source": source, "content_id": content_id, "event_id": event_id, "field": field_name,
             "entity_type": d.entity_type, "start_char": d.start, "end_char": d.end, "score": d.score,
             "value_hash": value_hash(text[d.start:d.end], key), "detected_at": now} for d in detections]


def scan_content(platform: Platform, *, now: datetime | None = None, report: ScanReport | None = None) -> ScanReport:
    """Scan the extracted text of every content item whose extraction is newer than its last scan."""
    now = now or datetime.now(UTC)
    report = report or ScanReport()
    key = pseudonym_key(platform.settings.keys_dir)
    db = platform.db
    with db.session() as session:
        states = {s.source_key: s for s in
                  session.scalars(sa.select(PiiScanState).where(PiiScanState.source == "content"))}
        extractions = session.execute(
            sa.select(ContentExtraction.content_id, ContentExtraction.sha256, ContentExtraction.extracted_at)
            .join(Content, Content.id == ContentExtraction.content_id)
            .where(Content.deleted_at.is_(None), ContentExtraction.status != ExtractionStatus.FAILED)).all()
    for content_id, sha256, extracted_at in extractions:
        state = states.get(content_id.hex)
        if state is not None and state.fingerprint == sha256 and state.scanned_at >= extracted_at:
            report.content_unchanged += 1
            continue
        # One transaction per item, like the content pipeline: a crash loses one item's scan.
        with db.session() as session:
            extraction = session.get(ContentExtraction, content_id)
            if extraction is None:
                continue
            detections = detect(extraction.text)
            session.execute(sa.delete(PiiFinding).where(PiiFinding.content_id == content_id))
            rows = _finding_rows(detections, extraction.text, key, now, source="content", field_name="text",
                                 content_id=content_id)
            if rows:
                session.execute(sa.insert(PiiFinding), rows)
            session.merge(PiiScanState(source="content", source_key=content_id.hex, fingerprint=extraction.sha256,
                                       findings=len(rows), scanned_at=now))
        report.content_scanned += 1
        report.texts_scanned += 1
        report.findings.update(d.entity_type for d in detections)
    return report


def _text_event_counts(db: Database) -> dict[date, int]:
    day = day_expression(db).label("day")
    query = (sa.select(day, sa.func.count()).select_from(InteractionEvent.__table__)
             .where(InteractionEvent.event_type.in_(["search", "chat_turn"])).group_by(day))
    with db.engine.connect() as conn:
        return {date.fromisoformat(d): int(n) for d, n in conn.execute(query)}


def scan_events(platform: Platform, *, now: datetime | None = None, report: ScanReport | None = None) -> ScanReport:
    """Scan search queries and chat questions, one UTC day at a time, re-scanning a day when its
    events or the set of excluded subjects changed.

    Events go through the same path as analytics (``read_usable_events``): subjects whose
    processing is restricted are not scanned, and each distinct text is analysed once.
    """
    now = now or datetime.now(UTC)
    report = report or ScanReport()
    key = pseudonym_key(platform.settings.keys_dir)
    keys = KeyStore(platform.settings.keys_dir)
    db = platform.db
    stored = stored_texts(db)
    excluded_digest = hashlib.sha256(",".join(sorted(excluded_subject_ids(db))).encode()).hexdigest()[:16]
    with db.session() as session:
        states = {s.source_key: s.fingerprint for s in
                  session.scalars(sa.select(PiiScanState).where(PiiScanState.source == "event"))}
    for day, count in sorted(_text_event_counts(db).items()):
        fingerprint = f"{count}:{excluded_digest}"
        if states.get(day.isoformat()) == fingerprint:
            continue
        start, end = day_bounds(day)
        valid = read_usable_events(platform, start, end, now=now).valid
        # Texts are sealed under their users' keys: detection runs once per distinct text (by
        # its blind index, on one opened copy), and only events whose text had findings are
        # opened one by one, for offsets into their own text.
        texts = readable_texts(valid, keys, pc.unique(valid["text_index"].drop_null()).to_pylist(), stored=stored)
        flagged_indexes = [index for index, text in texts.items() if detect(text)]
        report.texts_scanned += len(texts)
        flagged = valid.filter(pc.fill_null(pc.is_in(valid["text_index"],
                                                     value_set=pa.array(flagged_indexes, pa.string())), False))
        flagged_texts = stored([event_id for event_id, text in zip(
            flagged["event_id"].to_pylist(), pc.coalesce(flagged["query"], flagged["question"]).to_pylist(),
            strict=True) if text is None])
        detected: dict[str, list[Any]] = {}
        rows: list[dict[str, Any]] = []
        for event_id, query, question in zip(flagged["event_id"].to_pylist(), flagged["query"].to_pylist(),
                                             flagged["question"].to_pylist(), strict=True):
            name, text = ("query", query) if query is not None else ("question", question)
            if text is None:  # indexed when written: the text is in the database
                name, text = flagged_texts.get(event_id, (name, None))
            value = opened_text(keys, name, text)
            try:
                target = uuid.UUID(hex=event_id)
            except ValueError:  # an id written around the ORM: no finding can reference it
                continue
            if value is None:  # erased since the read: nothing of theirs to record
                continue
            if value not in detected:
                detected[value] = detect(value)
            rows += _finding_rows(detected[value], value, key, now, source="event", field_name=f"payload.{name}",
                                  event_id=target)
            report.findings.update(d.entity_type for d in detected[value])
        with db.session() as session:
            day_events = sa.select(InteractionEvent.id).where(InteractionEvent.occurred_at >= start,
                                                              InteractionEvent.occurred_at < end)
            session.execute(sa.delete(PiiFinding).where(PiiFinding.event_id.in_(day_events)))
            for offset in range(0, len(rows), 5_000):
                session.execute(sa.insert(PiiFinding), rows[offset:offset + 5_000])
            session.merge(PiiScanState(source="event", source_key=day.isoformat(), fingerprint=fingerprint,
                                       findings=len(rows), scanned_at=now))
        report.event_days_scanned += 1
    return report


def scan_all(platform: Platform, *, now: datetime | None = None) -> ScanReport:
    started = time.perf_counter()
    report = scan_content(platform, now=now)
    scan_events(platform, now=now, report=report)
    report.seconds = time.perf_counter() - started
    return report


def findings_summary(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.execute(sa.select(PiiFinding.source, PiiFinding.entity_type, sa.func.count())
                               .group_by(PiiFinding.source, PiiFinding.entity_type)
                               .order_by(PiiFinding.source, PiiFinding.entity_type)).all()
    return [{"source": s, "entity_type": e, "findings": int(n)} for s, e, n in rows]


def undeclared_pii(db: Database, columns: Iterable[tuple[str, str]] = UNDECLARED_TEXT_COLUMNS, *,
                   limit: int = 10_000) -> list[dict[str, Any]]:
    """Alerts for PII found in text columns the model does not declare personal.

    Such a column escapes access exports and erasure (both are derived from the declarations),
    so PII there is a modelling bug to fix, not data to mask. An alert names the table, column,
    row and entity kind, never the value.
    """
    declared = personal_columns()
    alerts: list[dict[str, Any]] = []
    metadata = Capsule.metadata
    for table_name, column_name in columns:
        if column_name in declared.get(table_name, []) or table_name not in metadata.tables:
            continue
        table = metadata.tables[table_name]
        key_columns = list(table.primary_key.columns)
        with db.engine.connect() as conn:
            rows = conn.execute(sa.select(*key_columns, table.c[column_name])
                                .where(table.c[column_name].is_not(None)).limit(limit)).all()
        for row in rows:
            found = Counter(d.entity_type for d in detect(str(row[-1])))
            for entity_type, count in sorted(found.items()):
                alerts.append({"table": table_name, "column": column_name,
                               "row": "/".join(str(v) for v in row[:-1]), "entity_type": entity_type, "count": count})
    return alerts
