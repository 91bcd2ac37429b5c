"""PII detection with pattern recognizers only: found, masked, stored as hashes, and nothing downloaded."""

from __future__ import annotations

import hashlib
import socket
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from encaptio_data.analytics import pii
from encaptio_data.db.enums import ContentType, ExtractionStatus
from encaptio_data.db.models import Capsule, Content, ContentExtraction, PiiFinding, PiiScanState
from encaptio_data.platform import Platform
from tests.analytics.world import NOW, build_world

TEXT = ("Write to jane.doe@gmail.com or call +1 (415) 555-0132. Card 4111 1111 1111 1111, "
        "IBAN DE89 3704 0044 0532 0130 00, from 203.0.113.42, SSN 536-22-8726.")
EXPECTED = {"jane.doe@gmail.com": "EMAIL_ADDRESS", "+1 (415) 555-0132": "PHONE_NUMBER",
            "4111 1111 1111 1111": "CREDIT_CARD", "DE89 3704 0044 0532 0130 00": "IBAN_CODE",
            "203.0.113.42": "IP_ADDRESS", "536-22-8726": "US_SSN"}


@pytest.fixture(scope="module")
def offline_analyzer() -> None:
    """Build the analyzer with every outbound connection refused: a download attempt fails the test."""
    import spacy.cli

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"network access attempted: {address}")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a spaCy model download was attempted")

    monkey = pytest.MonkeyPatch()
    monkey.setattr(socket.socket, "connect", refuse)
    monkey.setattr(socket.socket, "connect_ex", refuse)
    monkey.setattr(spacy.cli, "download", no_download)
    pii.analyzer.cache_clear()
    try:
        pii.detect(TEXT)  # load and use under the guard
    finally:
        monkey.undo()


def test_detects_each_kind_without_any_download(offline_analyzer: None) -> None:
    found = {TEXT[d.start:d.end]: d.entity_type for d in pii.detect(TEXT)}
    assert found == EXPECTED
    assert not pii.contains_pii("Budgeting basics: spend less than you earn, 50/30/20, since 2019.")


def test_mask_replaces_each_finding(offline_analyzer: None) -> None:
    masked = pii.mask_pii(TEXT)
    assert masked == ("Write to <EMAIL> or call <PHONE>. Card <CREDIT_CARD>, IBAN <IBAN>, from <IP_ADDRESS>, "
                      "SSN <SSN>.")
    assert pii.mask_pii("nothing here") == "nothing here"
    assert pii.masks_pii({"mask_pii": True}) and not pii.masks_pii({}) and not pii.masks_pii(None)


def test_content_scan_stores_hashes_and_rescans_only_changed_extractions(
        embedded_platform: Platform, offline_analyzer: None) -> None:
    platform = embedded_platform
    world = build_world(platform, users=1, capsules=1)
    content_id = uuid.uuid4()
    with platform.db.session() as s:
        s.add(Content(id=content_id, capsule_id=world.capsules[0], organization_id=world.organization,
                      type=ContentType.TEXT, title="notes", filename="notes.txt", object_key="uploads/notes.txt",
                      object_version="v1", sha256="a" * 64, size_bytes=len(TEXT), mime_type="text/plain"))
        s.add(ContentExtraction(content_id=content_id, sha256="a" * 64, status=ExtractionStatus.OK,
                                extractor="text", extractor_version="1", text=TEXT, extracted_at=NOW))
    report = pii.scan_content(platform, now=NOW + timedelta(minutes=1))
    assert report.content_scanned == 1 and sum(report.findings.values()) == 6
    with platform.db.session() as s:
        findings = s.scalars(sa.select(PiiFinding)).all()
        stored = " ".join(str(getattr(f, c.key)) for f in findings for c in PiiFinding.__table__.columns)
    for value in EXPECTED:
        assert value not in stored and hashlib.sha256(value.encode()).hexdigest() not in stored
    assert {f.value_hash.split(":")[0] for f in findings} == {"k1"}
    assert sorted((f.start_char, f.end_char) for f in findings) == sorted(
        (TEXT.index(v), TEXT.index(v) + len(v)) for v in EXPECTED)

    assert pii.scan_content(platform, now=NOW + timedelta(minutes=2)).content_scanned == 0
    with platform.db.session() as s:
        extraction = s.get(ContentExtraction, content_id)
        extraction.text, extraction.sha256, extraction.extracted_at = "now clean", "b" * 64, NOW + timedelta(hours=1)
    assert pii.scan_content(platform, now=NOW + timedelta(hours=2)).content_scanned == 1
    with platform.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(PiiFinding)) == 0
        assert s.get(PiiScanState, ("content", content_id.hex)).findings == 0


def test_alert_on_pii_in_columns_not_declared_personal(embedded_platform: Platform, offline_analyzer: None) -> None:
    world = build_world(embedded_platform, users=1, capsules=2)
    with embedded_platform.db.session() as s:
        s.get(Capsule, world.capsules[1]).description = "Questions? Mail the author at jane.doe@gmail.com"
    alerts = pii.undeclared_pii(embedded_platform.db)
    assert alerts == [{"table": "capsules", "column": "description", "row": str(world.capsules[1]),
                       "entity_type": "EMAIL_ADDRESS", "count": 1}]


def test_event_texts_are_scanned_sealed_plain_or_written_around_the_path(
        platform: Platform, offline_analyzer: None) -> None:
    """Findings for a signed-in user's sealed query, an anonymous session's plain question and a
    row stored with plain SQL (no blind index), with offsets into each event's own text; clean
    texts give none, and an unchanged day is not scanned again."""
    from tests.analytics.world import DAY, at

    world = build_world(platform, users=3, capsules=1)
    capsule = world.capsules[0]
    sealed_query = "mail jane.doe@gmail.com please"
    sealed = world.event(capsule, world.users[0], "s0", "search", at(DAY, 9), {"query": sealed_query})
    same_text = world.event(capsule, world.users[1], "s1", "search", at(DAY, 9, 5), {"query": sealed_query})
    anonymous = world.event(capsule, None, "s2", "chat_turn", at(DAY, 10), {"question": "call +1 (415) 555-0132"})
    world.event(capsule, world.users[2], "s3", "search", at(DAY, 11), {"query": "budget basics"})
    raw = uuid.uuid4()
    with platform.db.engine.begin() as conn:  # no blind index: the aggregation reads and indexes the text
        from encaptio_data.db.models import InteractionEvent
        conn.execute(sa.insert(InteractionEvent.__table__).values(
            id=raw, interaction_id=world.sessions["s3"], capsule_id=capsule, user_id=world.users[2],
            session_id="s3", event_type="search", payload={"query": "from 203.0.113.42"}, occurred_at=at(DAY, 12)))

    report = pii.scan_events(platform, now=NOW)
    assert report.event_days_scanned == 1
    with platform.db.session() as s:
        findings = {(f.event_id, f.field, f.entity_type, f.start_char, f.end_char)
                    for f in s.scalars(sa.select(PiiFinding).where(PiiFinding.source == "event"))}
    start = sealed_query.index("jane")
    assert findings == {
        (sealed, "payload.query", "EMAIL_ADDRESS", start, start + len("jane.doe@gmail.com")),
        (same_text, "payload.query", "EMAIL_ADDRESS", start, start + len("jane.doe@gmail.com")),
        (anonymous, "payload.question", "PHONE_NUMBER", 5, 5 + len("+1 (415) 555-0132")),
        (raw, "payload.query", "IP_ADDRESS", 5, 5 + len("203.0.113.42")),
    }
    assert pii.scan_events(platform, now=NOW).event_days_scanned == 0
