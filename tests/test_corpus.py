"""The demo corpus: determinism, real file formats, and consistency of the generated data."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from encaptio_data.corpus import TOPICS, Corpus, CorpusSpec, corpus_uuid, generate
from encaptio_data.db.enums import CapsuleStatus, ConsentPurpose, ContentType, EventType, UserRole

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDIA_TYPES = {ContentType.IMAGE, ContentType.VIDEO}


def fingerprint(corpus: Corpus) -> str:
    """One digest over every record and every file's bytes."""
    digest = hashlib.sha256()
    for records in (
        corpus.organizations,
        corpus.users,
        corpus.capsules,
        corpus.files,
        corpus.interactions,
        corpus.events,
        corpus.consents,
        corpus.queries,
    ):
        for record in records:
            digest.update(repr(record).encode())
    for _, data in corpus.iter_file_bytes():
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return generate()


@pytest.fixture(scope="module")
def file_bytes(corpus: Corpus) -> dict[uuid.UUID, bytes]:
    return {f.id: data for f, data in corpus.iter_file_bytes()}


def _files(corpus: Corpus, content_type: ContentType):
    return [f for f in corpus.files if f.content_type == content_type]


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# -- determinism --------------------------------------------------------------------------


def test_same_seed_gives_identical_records_and_bytes(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    again = generate(CorpusSpec())
    assert again.organizations == corpus.organizations
    assert again.users == corpus.users
    assert again.capsules == corpus.capsules
    assert again.files == corpus.files
    assert again.interactions == corpus.interactions
    assert again.events == corpus.events
    assert again.consents == corpus.consents
    assert again.queries == corpus.queries
    for corpus_file, data in again.iter_file_bytes():
        assert data == file_bytes[corpus_file.id], corpus_file.filename


def test_rendering_the_same_file_twice_gives_the_same_bytes(corpus: Corpus) -> None:
    for content_type in (ContentType.PDF, ContentType.IMAGE, ContentType.VIDEO, ContentType.TEXT):
        corpus_file = _files(corpus, content_type)[0]
        assert corpus_file.data == corpus_file.data


def test_generation_does_not_depend_on_hash_randomisation(corpus: Corpus) -> None:
    code = (
        "from encaptio_data.corpus import generate; from tests.test_corpus import fingerprint; "
        "print(fingerprint(generate()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == fingerprint(corpus)


def test_different_seed_gives_a_different_corpus(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    other = generate(CorpusSpec(seed=8))
    ids = {r.id for r in corpus.organizations + corpus.users + corpus.capsules + corpus.files + corpus.events}
    other_ids = {r.id for r in other.organizations + other.users + other.capsules + other.files + other.events}
    assert not ids & other_ids
    assert [u.email for u in other.users] != [u.email for u in corpus.users]
    assert [c.topic for c in other.capsules] != [c.topic for c in corpus.capsules]
    other_hashes = {hashlib.sha256(f.data).digest() for f in other.files if f.is_document}
    assert not other_hashes & {hashlib.sha256(file_bytes[f.id]).digest() for f in corpus.files if f.is_document}
    assert fingerprint(other) != fingerprint(corpus)


def test_ids_are_uuid5_of_seed_kind_and_index(corpus: Corpus) -> None:
    assert corpus.organizations[0].id == corpus_uuid(7, "organization", 0)
    assert corpus.users[3].id == corpus_uuid(7, "user", 3)
    assert corpus.files[-1].id == corpus_uuid(7, "file", len(corpus.files) - 1)
    assert all(record.id.version == 5 for record in corpus.users + corpus.files + corpus.events)
    records = corpus.organizations + corpus.users + corpus.capsules + corpus.files + corpus.interactions + corpus.events
    everything = [r.id for r in records]
    assert len(everything) == len(set(everything))


# -- file formats -------------------------------------------------------------------------


def test_pdfs_are_multi_page_and_contain_their_text(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    pdfs = _files(corpus, ContentType.PDF)
    assert pdfs
    for corpus_file in pdfs:
        data = file_bytes[corpus_file.id]
        assert data.startswith(b"%PDF-")
        pdf = pdfium.PdfDocument(data)
        try:
            assert len(pdf) >= 2
            text = _squash(" ".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf))))
            metadata = pdf.get_metadata_dict()
        finally:
            pdf.close()
        document = corpus_file.document()
        assert document is not None
        assert _squash(document.title) in text
        for section in document.sections:
            assert _squash(section.heading) in text
        # Body text survives extraction (line wrapping aside).
        first_paragraph = document.sections[0].paragraphs[0]
        assert " ".join(first_paragraph.split()[:6]) in text
        assert metadata["Title"] == document.title
        assert metadata["CreationDate"].startswith(f"D:{corpus_file.created_at:%Y%m%d%H%M%S}")


def test_html_wraps_an_article_in_site_boilerplate(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    pages = _files(corpus, ContentType.HTML)
    assert pages
    for corpus_file in pages:
        page = file_bytes[corpus_file.id].decode("utf-8")
        assert page.startswith("<!DOCTYPE html>")
        assert page.count("<article>") == 1 and page.count("</article>") == 1
        before, rest = page.split("<article>")
        article, after = rest.split("</article>")
        assert "<nav" in before and "<footer" in after
        assert f"<h1>{corpus_file.title}</h1>" in article.replace("&amp;", "&")
        assert "<h2>" in article and "<p>" in article
        assert 'class="cookie-banner"' in before and "cookie-banner" not in article


def test_markdown_has_headings_and_lists(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    notes = _files(corpus, ContentType.MARKDOWN)
    assert notes
    for corpus_file in notes:
        text = file_bytes[corpus_file.id].decode("utf-8")
        assert text.startswith(f"# {corpus_file.title}\n")
        assert re.search(r"^## \S", text, re.MULTILINE)
        assert re.search(r"^(- |\d+\. )\S", text, re.MULTILINE)


def test_text_files_record_their_encoding(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    texts = _files(corpus, ContentType.TEXT)
    encodings = Counter(f.metadata["encoding"] for f in texts)
    assert encodings["cp1252"] >= 1 and encodings["utf-8"] >= 1
    for corpus_file in texts:
        data = file_bytes[corpus_file.id]
        if corpus_file.metadata["encoding"] == "cp1252":
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
            decoded = data.decode("cp1252")
        else:
            decoded = data.decode("utf-8")
        assert decoded.startswith(corpus_file.title + "\n")
        assert "\u201c" in decoded and "\u2014" in decoded
    accented = [
        f for f in texts if f.metadata["encoding"] == "utf-8" and re.search(r"[à-ÿÀ-ß]", file_bytes[f.id].decode())
    ]
    assert accented, "expected some UTF-8 text with accented letters"


def test_images_open_with_their_recorded_size(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    images = _files(corpus, ContentType.IMAGE)
    assert {f.mime_type for f in images} == {"image/png", "image/jpeg"}
    for corpus_file in images:
        with Image.open(io.BytesIO(file_bytes[corpus_file.id])) as image:
            image.load()
            assert image.size == (corpus_file.metadata["width"], corpus_file.metadata["height"])
            assert image.format == corpus_file.metadata["format"]
            assert image.get_format_mimetype() == corpus_file.mime_type


def test_videos_are_real_mp4s_that_decode(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    videos = _files(corpus, ContentType.VIDEO)
    assert len(videos) >= len(corpus.capsules)
    for corpus_file in videos:
        data = file_bytes[corpus_file.id]
        assert len(data) > 500
        assert data[4:8] == b"ftyp"
    av = pytest.importorskip("av")
    for corpus_file in videos:
        meta = corpus_file.metadata
        with av.open(io.BytesIO(file_bytes[corpus_file.id])) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == meta["codec"]
            frames = list(container.decode(video=0))
            assert float(container.duration / av.time_base) == pytest.approx(meta["duration_seconds"], abs=0.05)
        assert len(frames) == meta["frame_count"]
        assert (frames[0].width, frames[0].height) == (meta["width"], meta["height"])


def test_each_capsule_mixes_documents_and_media(corpus: Corpus) -> None:
    by_capsule = defaultdict(list)
    for corpus_file in corpus.files:
        by_capsule[corpus_file.capsule_id].append(corpus_file)
    assert len(by_capsule) == len(corpus.capsules)
    for files in by_capsule.values():
        assert len(files) == corpus.spec.files_per_capsule
        types = Counter(f.content_type for f in files)
        for required in ContentType:
            if required is not ContentType.DOCUMENT:  # the generator makes no office documents
                assert types[required] >= 1, required
        documents = sum(1 for f in files if f.is_document)
        assert 0.4 <= documents / len(files) <= 0.7
        assert len({f.filename for f in files}) == len(files)


def test_documents_vary_in_length(corpus: Corpus) -> None:
    counts = [f.document().word_count() for f in corpus.files if f.is_document]
    assert min(counts) >= 200
    assert max(counts) <= 2600
    assert max(counts) - min(counts) > 600


def test_documents_are_recognisably_about_their_topic(corpus: Corpus) -> None:
    def vocabulary(topic_key: str) -> list[str]:
        topic = TOPICS[topic_key]
        return [t.lower() for t in topic.terms + tuple(term for f in topic.facets for term in f.terms)]

    vocabularies = {key: vocabulary(key) for key in TOPICS}
    for corpus_file in corpus.files:
        if not corpus_file.is_document:
            continue
        text = corpus_file.document().plain_text().lower()
        scores = {key: sum(text.count(term) for term in terms) for key, terms in vocabularies.items()}
        best = max(scores, key=scores.__getitem__)
        assert best == corpus_file.topic, (corpus_file.filename, scores)
        runner_up = sorted(scores.values())[-2]
        assert scores[best] >= 3 * max(runner_up, 1)


def test_documents_of_one_topic_differ(corpus: Corpus, file_bytes: dict[uuid.UUID, bytes]) -> None:
    texts = [f.document().plain_text() for f in corpus.files if f.is_document]
    assert len(set(texts)) == len(texts)
    assert not any("lorem" in text.lower() for text in texts)


def test_topic_bank_is_large_and_distinct() -> None:
    assert len(TOPICS) >= 12
    seen: dict[str, str] = {}
    for topic in TOPICS.values():
        assert len(topic.facets) >= 3
        for term in topic.terms + tuple(t for f in topic.facets for t in f.terms):
            assert seen.setdefault(term.lower(), topic.key) == topic.key, term


# -- people and activity ------------------------------------------------------------------


def test_users_have_unique_emails_and_required_roles(corpus: Corpus) -> None:
    by_org = defaultdict(list)
    for user in corpus.users:
        by_org[user.organization_id].append(user)
    organizations = {o.id: o for o in corpus.organizations}
    for org_id, users in by_org.items():
        emails = [u.email for u in users]
        assert len(emails) == len(set(emails)) == corpus.spec.users_per_organization
        for email in emails:
            assert re.fullmatch(r"[a-z0-9.]+\d+@[a-z0-9-]+\.example", email), email
            assert email.endswith(f"@{organizations[org_id].slug}.example")
        roles = {u.role for u in users}
        assert {UserRole.ADMIN, UserRole.PRIVACY_OFFICER, UserRole.CREATOR} <= roles
        assert all(u.created_at < corpus.spec.start for u in users)
        assert all({"locale", "signup_source"} <= u.metadata.keys() for u in users)


def test_capsules_have_distinct_topics_and_valid_owners(corpus: Corpus) -> None:
    users = {u.id: u for u in corpus.users}
    by_org = defaultdict(list)
    for capsule in corpus.capsules:
        by_org[capsule.organization_id].append(capsule)
        owner = users[capsule.owner_id]
        assert owner.organization_id == capsule.organization_id
        assert owner.role in (UserRole.CREATOR, UserRole.ADMIN)
        assert owner.created_at < capsule.created_at < corpus.spec.start
        if capsule.status is CapsuleStatus.DRAFT:
            assert capsule.published_at is None
        else:
            assert capsule.created_at < capsule.published_at < corpus.spec.start
    for capsules in by_org.values():
        assert len({c.topic for c in capsules}) == len(capsules) == corpus.spec.capsules_per_organization


def test_files_belong_to_their_capsule_and_organisation(corpus: Corpus) -> None:
    capsules = {c.id: c for c in corpus.capsules}
    users = {u.id: u for u in corpus.users}
    for corpus_file in corpus.files:
        capsule = capsules[corpus_file.capsule_id]
        assert corpus_file.organization_id == capsule.organization_id
        assert corpus_file.topic == capsule.topic
        assert users[corpus_file.uploaded_by].organization_id == capsule.organization_id
        assert capsule.created_at <= corpus_file.created_at <= (capsule.published_at or corpus.spec.start)


def test_events_fall_inside_the_window_and_are_ordered_per_session(corpus: Corpus) -> None:
    start, end = corpus.spec.start, corpus.spec.start + timedelta(days=corpus.spec.days)
    by_interaction = defaultdict(list)
    for event in corpus.events:
        assert start <= event.occurred_at < end
        by_interaction[event.interaction_id].append(event)
    interactions = {i.id: i for i in corpus.interactions}
    assert by_interaction.keys() == interactions.keys()
    for interaction_id, events in by_interaction.items():
        interaction = interactions[interaction_id]
        assert events[0].event_type is EventType.VIEW
        assert events[0].occurred_at == interaction.started_at
        times = [e.occurred_at for e in events]
        assert all(a < b for a, b in zip(times, times[1:]))
        assert {(e.session_id, e.user_id, e.capsule_id) for e in events} == {
            (interaction.session_id, interaction.user_id, interaction.capsule_id)
        }
    assert len({i.session_id for i in corpus.interactions}) == len(corpus.interactions)


def test_events_reference_capsules_and_users_of_one_organisation(corpus: Corpus) -> None:
    capsules = {c.id: c for c in corpus.capsules}
    users = {u.id: u for u in corpus.users}
    for event in corpus.events:
        capsule = capsules[event.capsule_id]
        assert capsule.status is not CapsuleStatus.DRAFT
        if event.user_id is not None:
            assert users[event.user_id].organization_id == capsule.organization_id
    active = [c for c in corpus.capsules if c.status is not CapsuleStatus.DRAFT]
    assert len(corpus.events) == len(active) * corpus.spec.events_per_capsule


def test_sessions_look_realistic(corpus: Corpus) -> None:
    anonymous = sum(1 for i in corpus.interactions if i.user_id is None) / len(corpus.interactions)
    assert 0.12 <= anonymous <= 0.28
    types = Counter(e.event_type for e in corpus.events)
    assert all(types[t] > 0 for t in EventType)
    def searchable(topic_key: str) -> tuple[set[str], list[str]]:
        topic = TOPICS[topic_key]
        labelled = set(topic.queries + tuple(q for f in topic.facets for q in f.queries))
        all_terms = topic.terms + tuple(t for f in topic.facets for t in f.terms)
        terms = [re.sub(r"^(the|your|a|an) ", "", t).lower() for t in all_terms]
        return labelled, terms

    vocabulary = {c.id: searchable(c.topic) for c in corpus.capsules}
    for event in corpus.events:
        if event.event_type is EventType.SEARCH:
            query = event.payload["query"]
            labelled, terms = vocabulary[event.capsule_id]
            assert query in labelled or any(term in query for term in terms), query
        elif event.event_type is EventType.CHAT_TURN:
            assert event.payload["question"].endswith("?") and event.payload["turn"] >= 1
        elif event.event_type is EventType.DWELL:
            assert isinstance(event.payload["seconds"], int) and event.payload["seconds"] > 0


def test_consent_history_per_user_and_purpose(corpus: Corpus) -> None:
    history = defaultdict(list)
    for consent in corpus.consents:
        history[(consent.user_id, consent.purpose)].append(consent)
    assert set(history) == {(u.id, p) for u in corpus.users for p in ConsentPurpose}
    withdrawals = 0
    users = {u.id: u for u in corpus.users}
    for (user_id, _), records in history.items():
        times = [r.recorded_at for r in records]
        # Strictly increasing: loaders derive consent ids from (user, purpose, recorded_at).
        assert all(a < b for a, b in zip(times, times[1:]))
        assert users[user_id].created_at <= times[0] and times[-1] < corpus.spec.end
        withdrawals += sum(1 for a, b in zip(records, records[1:]) if a.granted and not b.granted)
    assert withdrawals >= 3
    assert {c.version for c in corpus.consents} == {"2025-07", "2026-01"}


# -- retrieval ground truth ---------------------------------------------------------------


def _facet_of(topic_key: str, text: str):
    for facet in TOPICS[topic_key].facets:
        if text in facet.queries:
            return facet
    return None


def test_labelled_queries_point_at_documents_that_discuss_them(corpus: Corpus) -> None:
    files = {f.id: f for f in corpus.files}
    capsules = {c.id: c for c in corpus.capsules}
    per_topic = Counter((q.organization_id, q.topic) for q in corpus.queries)
    for capsule in corpus.capsules:
        assert per_topic[(capsule.organization_id, capsule.topic)] >= 3
    for query in corpus.queries:
        assert query.relevant_file_ids
        if query.capsule_id is not None:
            assert capsules[query.capsule_id].topic == query.topic
        facet = _facet_of(query.topic, query.text)
        for file_id in query.relevant_file_ids:
            corpus_file = files[file_id]
            assert corpus_file.content_type not in MEDIA_TYPES
            assert corpus_file.organization_id == query.organization_id
            assert corpus_file.topic == query.topic
            if query.capsule_id is not None:
                assert corpus_file.capsule_id == query.capsule_id
            if facet is not None:
                headings = {s.heading for s in corpus_file.document().sections if s.facet == facet.key}
                assert headings & set(facet.headings)
        if facet is not None:
            # Documents left out of the relevant set really do not cover the facet.
            for other in files.values():
                left_out = other.is_document and other.id not in query.relevant_file_ids
                if other.capsule_id == query.capsule_id and left_out:
                    assert all(s.facet != facet.key for s in other.document().sections)


def test_labelled_queries_are_not_copied_from_documents(corpus: Corpus) -> None:
    texts = [f.document().plain_text().lower() for f in corpus.files if f.is_document]
    for query in corpus.queries:
        assert query.text == query.text.lower()
        assert not any(query.text in text for text in texts), query.text


# -- scale and shape ----------------------------------------------------------------------


def test_tiny_spec_works() -> None:
    spec = CorpusSpec(
        organizations=1,
        users_per_organization=3,
        capsules_per_organization=1,
        files_per_capsule=1,
        events_per_capsule=5,
    )
    tiny = generate(spec)
    assert len(tiny.files) == 1 and tiny.files[0].content_type is ContentType.PDF
    assert tiny.files[0].data.startswith(b"%PDF-")
    assert len(tiny.events) == 5
    assert len(tiny.queries) >= 3
    assert tiny.summary()["files_by_content_type"] == {"pdf": 1}


@pytest.mark.parametrize(
    "overrides",
    [
        {"users_per_organization": 2},
        {"capsules_per_organization": len(TOPICS) + 1},
        {"files_per_capsule": 0},
        {"days": 0},
    ],
)
def test_invalid_specs_are_rejected(overrides: dict) -> None:
    with pytest.raises(ValueError):
        CorpusSpec(**overrides)


def test_summary_counts(corpus: Corpus) -> None:
    summary = corpus.summary()
    assert summary["organizations"] == 2
    assert summary["users"] == 16
    assert summary["capsules"] == 8
    assert summary["files"] == 64
    assert summary["events"] == len(corpus.events)
    assert sum(summary["files_by_content_type"].values()) == 64
    assert sum(summary["events_by_type"].values()) == len(corpus.events)


def test_default_corpus_with_all_bytes_renders_quickly() -> None:
    started = time.perf_counter()
    total = sum(len(data) for _, data in generate().iter_file_bytes())
    elapsed = time.perf_counter() - started
    assert total > 100_000
    assert elapsed < 20, f"default corpus took {elapsed:.1f}s"
