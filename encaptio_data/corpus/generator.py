"""Builds a deterministic demo corpus: organisations, people, capsules, files and usage.

Everything is derived from `CorpusSpec.seed`: ids are uuid5 names of (seed, kind, index)
and every random choice comes from a `random.Random` seeded with a string naming its
purpose, so one part of the corpus does not shift when another part's size changes.
String seeds are hashed with SHA-512 by `random`, so they do not depend on PYTHONHASHSEED.
"""

from __future__ import annotations

import random
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from faker import Faker

from encaptio_data.corpus.compose import facet_count_for
from encaptio_data.corpus.model import (
    Capsule,
    Consent,
    Corpus,
    CorpusFile,
    Event,
    Interaction,
    LabelledQuery,
    Organization,
    User,
)
from encaptio_data.corpus.render import DOCUMENT_KINDS, VIDEO_CODEC, VIDEO_FPS, VIDEO_SIZE, FileRecipe
from encaptio_data.corpus.topics import TOPICS, Topic
from encaptio_data.db.enums import CapsuleStatus, ConsentPurpose, ContentType, EventType, OrganizationTier, UserRole

CORPUS_NAMESPACE = uuid.UUID("0241e06d-7d56-564e-8066-693f5dbb67e3")

_LOCALES = {
    "en_US": "America/New_York",
    "en_GB": "Europe/London",
    "de_DE": "Europe/Berlin",
    "fr_FR": "Europe/Paris",
    "es_ES": "Europe/Madrid",
    "it_IT": "Europe/Rome",
    "nl_NL": "Europe/Amsterdam",
}
_SIGNUP_SOURCES = ("invitation", "self_service", "sso", "bulk_import")

_KIND_INFO: dict[str, tuple[ContentType, str, str]] = {
    "pdf": (ContentType.PDF, "application/pdf", "pdf"),
    "markdown": (ContentType.MARKDOWN, "text/markdown", "md"),
    "html": (ContentType.HTML, "text/html", "html"),
    "text": (ContentType.TEXT, "text/plain", "txt"),
    "png": (ContentType.IMAGE, "image/png", "png"),
    "jpeg": (ContentType.IMAGE, "image/jpeg", "jpg"),
    "mp4": (ContentType.VIDEO, "video/mp4", "mp4"),
}
# (low, high) word targets; PDFs are the long-form material, notes the short ones.
_WORD_RANGES = {"pdf": (700, 2000), "markdown": (250, 1100), "html": (400, 1500), "text": (250, 900)}

_SINGLE_FACET_TITLES = (
    "{facet}: A Practical Guide",
    "{facet} Explained",
    "Field Notes on {facet}",
    "Common Questions about {facet}",
    "Lessons Learned: {facet}",
    "{topic}: {facet}",
    "A Closer Look at {facet}",
)
_MULTI_FACET_TITLES = (
    "Getting Started with {topic}",
    "A Beginner's Handbook to {topic}",
    "{topic} Workshop Handout",
    "The {topic} Companion",
    "{topic} in Practice",
    "{topic}: The Essentials",
)
_IMAGE_LABELS = {
    "photo": ("scene", "photo", "illustration"),
    "chart": ("at a glance", "in numbers", "overview chart"),
    "diagram": ("diagram", "process map", "concept map"),
}
_IMAGE_SIZES = ((320, 200), (320, 240), (300, 200), (256, 256), (400, 250))

_CHAT_TEMPLATES = (
    "What does this capsule say about {a}?",
    "Can you explain {a} in simple terms?",
    "How does {a} affect {b}?",
    "What's the most common mistake with {a}?",
    "Is {a} worth the effort for a beginner?",
    "Where should I start with {facet}?",
    "Can you summarise the section on {facet}?",
    "What's the difference between {a} and {b}?",
    "I'm new to {topic}. What should I read first?",
)
_SEARCH_PATTERNS = ("{a}", "{a} tips", "{a} explained", "what is {a}", "{a} for beginners", "{a} vs {b}")
_REFERRERS = ("direct", "search_engine", "newsletter", "social", "shared_link")
_DEVICES = ("desktop", "mobile", "tablet")
# Relative session starts per UTC hour: quiet nights, a lunchtime bump and an evening peak.
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 9, 10, 9, 8, 8, 8, 9, 10, 11, 10, 7, 4, 2)

_CONSENT_RATES = {
    ConsentPurpose.ANALYTICS: 0.8,
    ConsentPurpose.PERSONALIZATION: 0.6,
    ConsentPurpose.MARKETING: 0.3,
    ConsentPurpose.MODEL_IMPROVEMENT: 0.4,
}


@dataclass(frozen=True)
class CorpusSpec:
    """Size and randomness of a corpus.

    `events_per_capsule` is exact for published and archived capsules; drafts get no
    events. All events fall in [start, start + days).
    """

    seed: int = 7
    organizations: int = 2
    users_per_organization: int = 8
    capsules_per_organization: int = 4
    files_per_capsule: int = 8
    events_per_capsule: int = 300
    start: datetime = datetime(2026, 10, 1, tzinfo=UTC)
    days: int = 28

    def __post_init__(self) -> None:
        if self.organizations < 1:
            raise ValueError("organizations must be at least 1")
        if self.users_per_organization < 3:
            raise ValueError("users_per_organization must be at least 3 (admin, privacy officer, creator)")
        if not 1 <= self.capsules_per_organization <= len(TOPICS):
            raise ValueError(
                f"capsules_per_organization must be between 1 and {len(TOPICS)}: capsules of an "
                "organisation have distinct topics"
            )
        if self.files_per_capsule < 1:
            raise ValueError("files_per_capsule must be at least 1")
        if self.events_per_capsule < 0:
            raise ValueError("events_per_capsule must not be negative")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


def corpus_uuid(seed: int, kind: str, index: int) -> uuid.UUID:
    return uuid.uuid5(CORPUS_NAMESPACE, f"{seed}:{kind}:{index}")


class _Ids:
    def __init__(self, seed: int):
        self._seed = seed
        self._next: dict[str, int] = {}

    def __call__(self, kind: str) -> uuid.UUID:
        index = self._next.get(kind, 0)
        self._next[kind] = index + 1
        return corpus_uuid(self._seed, kind, index)


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(["encaptio-corpus", str(seed), *map(str, parts)]))


def _ascii_slug(text: str, separator: str = "-") -> str:
    text = text.replace("ß", "ss").replace("ø", "o").replace("æ", "ae").replace("ł", "l")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", separator, text).strip(separator)


def _between(rng: random.Random, low: datetime, high: datetime) -> datetime:
    """A whole-second instant in [low, high), or low when the interval is too short."""
    span = int((high - low).total_seconds())
    return low + timedelta(seconds=rng.randrange(span)) if span > 0 else low


def _month_start(moment: datetime, months_back: int) -> datetime:
    month_index = moment.year * 12 + (moment.month - 1) - months_back
    return moment.replace(
        year=month_index // 12, month=month_index % 12 + 1, day=1, hour=0, minute=0, second=0, microsecond=0
    )


def generate(spec: CorpusSpec = CorpusSpec()) -> Corpus:
    ids = _Ids(spec.seed)
    fake = Faker(list(_LOCALES))
    fake.seed_instance(spec.seed)

    organizations: list[Organization] = []
    users: list[User] = []
    capsules: list[Capsule] = []
    files: list[CorpusFile] = []
    queries: list[LabelledQuery] = []
    text_files = 0

    org_rng = _rng(spec.seed, "organizations")
    slugs: set[str] = set()
    for org_index in range(spec.organizations):
        name = fake["en_US"].company()
        slug = _ascii_slug(name)
        if slug in slugs:
            slug = f"{slug}-{org_index + 1}"
        slugs.add(slug)
        # The first organisation is always enterprise so both tiers appear in small corpora.
        tier = OrganizationTier.ENTERPRISE if org_index == 0 else org_rng.choice(list(OrganizationTier))
        organization = Organization(id=ids("organization"), name=name, slug=slug, tier=tier)
        organizations.append(organization)

        rng = _rng(spec.seed, "organization", org_index)
        org_users = _make_users(spec, ids, fake, rng, organization)
        users.extend(org_users)

        publishers = [u for u in org_users if u.role in (UserRole.CREATOR, UserRole.ADMIN)]
        for capsule_index, topic_key in enumerate(rng.sample(sorted(TOPICS), spec.capsules_per_organization)):
            topic = TOPICS[topic_key]
            capsule = _make_capsule(spec, ids, rng, organization, topic, capsule_index, publishers)
            capsules.append(capsule)
            capsule_files, text_files = _make_files(spec, ids, rng, organization, capsule, topic, org_users, text_files)
            files.extend(capsule_files)
            queries.extend(_make_queries(organization, capsule, topic, capsule_files))

    interactions, events = _make_activity(spec, ids, users, capsules, files)
    consents = _make_consents(spec, users)
    return Corpus(
        spec=spec,
        organizations=organizations,
        users=users,
        capsules=capsules,
        files=files,
        interactions=interactions,
        events=events,
        consents=consents,
        queries=queries,
    )


def _make_users(spec: CorpusSpec, ids: _Ids, fake: Faker, rng: random.Random, organization: Organization) -> list[User]:
    domain = f"{organization.slug}.example"
    out = []
    for index in range(spec.users_per_organization):
        if index < 3:
            role = (UserRole.ADMIN, UserRole.PRIVACY_OFFICER, UserRole.CREATOR)[index]
        else:
            role = rng.choices((UserRole.CREATOR, UserRole.VIEWER, UserRole.ANALYST), weights=(25, 55, 20))[0]
        locale = rng.choice(list(_LOCALES))
        first, last = fake[locale].first_name(), fake[locale].last_name()
        # The index suffix makes the address unique even when Faker repeats a name.
        local_part = f"{_ascii_slug(first, '') or 'user'}.{_ascii_slug(last, '') or 'member'}{index + 1}"
        out.append(
            User(
                id=ids("user"),
                organization_id=organization.id,
                email=f"{local_part}@{domain}",
                name=f"{first} {last}",
                role=role,
                metadata={
                    "locale": locale,
                    "timezone": _LOCALES[locale],
                    "signup_source": rng.choice(_SIGNUP_SOURCES),
                },
                created_at=_between(rng, spec.start - timedelta(days=600), spec.start - timedelta(days=40)),
            )
        )
    return out


def _make_capsule(
    spec: CorpusSpec,
    ids: _Ids,
    rng: random.Random,
    organization: Organization,
    topic: Topic,
    capsule_index: int,
    publishers: list[User],
) -> Capsule:
    owner = rng.choice(publishers)
    # The first capsule is always published so every organisation has usage to analyse.
    if capsule_index == 0 or rng.random() < 0.75:
        status = CapsuleStatus.PUBLISHED
    else:
        status = rng.choice((CapsuleStatus.DRAFT, CapsuleStatus.ARCHIVED))
    created_at = _between(rng, owner.created_at + timedelta(days=1), spec.start - timedelta(days=20))
    published_at = None
    if status is not CapsuleStatus.DRAFT:
        latest = min(created_at + timedelta(days=15), spec.start - timedelta(days=1))
        published_at = _between(rng, created_at + timedelta(days=1), latest)
    settings: dict = {
        "language": "en",
        "visibility": rng.choice(("public", "public", "unlisted")),
        "chat_enabled": True,
        "search_enabled": True,
        "theme_color": "#{:02x}{:02x}{:02x}".format(*topic.palette[0]),
        "retention_days": rng.choice((180, 365, 730)),
    }
    if status is CapsuleStatus.ARCHIVED:
        # Archived after the activity window, so its events in the window are legitimate.
        settings["archived_at"] = spec.end.isoformat()
    return Capsule(
        id=ids("capsule"),
        organization_id=organization.id,
        owner_id=owner.id,
        title=rng.choice(topic.capsule_titles),
        description=topic.description,
        status=status,
        topic=topic.key,
        settings=settings,
        created_at=created_at,
        published_at=published_at,
    )


def _plan_kinds(count: int, rng: random.Random) -> list[str]:
    """Roughly half documents, with every document kind present once there are six files."""
    if count >= 6:
        documents = max(4, round(count * rng.uniform(0.45, 0.6)))
    else:
        documents = max(1, (count + 1) // 2)
    documents = min(documents, count)
    kinds = list(DOCUMENT_KINDS[:documents]) + rng.choices(DOCUMENT_KINDS, k=max(0, documents - len(DOCUMENT_KINDS)))
    media = count - documents
    videos = max(1, media // 4) if media >= 2 else 0
    first_image = rng.randrange(2)
    kinds += [("png", "jpeg")[(first_image + i) % 2] for i in range(media - videos)]
    kinds += ["mp4"] * videos
    rng.shuffle(kinds)
    return kinds


def _make_files(
    spec: CorpusSpec,
    ids: _Ids,
    rng: random.Random,
    organization: Organization,
    capsule: Capsule,
    topic: Topic,
    org_users: list[User],
    text_files: int,
) -> tuple[list[CorpusFile], int]:
    uploaders = [u for u in org_users if u.role in (UserRole.CREATOR, UserRole.ADMIN) and u.id != capsule.owner_id]
    names = {u.id: u.name for u in org_users}
    upload_end = capsule.published_at or spec.start
    titles: set[str] = set()
    filenames: set[str] = set()
    out = []
    for kind in _plan_kinds(spec.files_per_capsule, rng):
        content_type, mime_type, extension = _KIND_INFO[kind]
        uploaded_by = capsule.owner_id if not uploaders or rng.random() < 0.7 else rng.choice(uploaders).id
        file_id = ids("file")
        created_at = _between(rng, capsule.created_at, upload_end)
        metadata: dict = {}
        recipe_extra: dict = {}

        if kind in DOCUMENT_KINDS:
            low, high = _WORD_RANGES[kind]
            # Skewed towards the short end: most material is short, a few pieces are long.
            words = int(low + (high - low) * rng.random() ** 1.5)
            count = facet_count_for(words, len(topic.facets))
            chosen = set(rng.sample([f.key for f in topic.facets], count))
            facets = tuple(f.key for f in topic.facets if f.key in chosen)  # reading order
            title = _unique_title(rng, topic, facets, titles)
            metadata = {"language": "en", "facets": list(facets), "target_words": words}
            recipe_extra = {"words": words}
            if kind == "text":
                # Alternate encodings, starting with cp1252 so even a one-text corpus has one.
                encoding = "cp1252" if text_files % 2 == 0 else "utf-8"
                text_files += 1
                metadata["encoding"] = encoding
                recipe_extra["encoding"] = encoding
        else:
            facet = rng.choice(topic.facets)
            facets = (facet.key,)
            if kind == "mp4":
                frames = rng.choice((12, 15, 18))
                title = f"{facet.name}: {rng.choice(('short clip', 'quick demo', 'teaser'))}"
                metadata = {
                    "facets": [facet.key],
                    "duration_seconds": frames / VIDEO_FPS,
                    "width": VIDEO_SIZE,
                    "height": VIDEO_SIZE,
                    "codec": VIDEO_CODEC,
                    "fps": VIDEO_FPS,
                    "frame_count": frames,
                    "container": "mp4",
                }
                recipe_extra = {"frames": frames, "width": VIDEO_SIZE, "height": VIDEO_SIZE}
            else:
                style = "photo" if kind == "jpeg" else rng.choice(("chart", "diagram"))
                width, height = rng.choice(_IMAGE_SIZES)
                title = f"{facet.name}: {rng.choice(_IMAGE_LABELS[style])}"
                described = {"photo": "Photographic illustration", "chart": "Bar chart", "diagram": "Diagram"}[style]
                metadata = {
                    "facets": [facet.key],
                    "width": width,
                    "height": height,
                    "format": kind.upper(),
                    "style": style,
                    "alt_text": f"{described} about {facet.name} for {topic.name}",
                }
                recipe_extra = {"width": width, "height": height, "style": style}
            titles.add(title)

        filename = _unique_filename(title, extension, filenames)
        recipe = FileRecipe(
            kind=kind,
            key=f"{spec.seed}:{file_id}",
            title=title,
            topic_key=topic.key,
            facets=facets,
            capsule_title=capsule.title,
            organization_name=organization.name,
            author=names[uploaded_by],
            created_at=created_at,
            **recipe_extra,
        )
        out.append(
            CorpusFile(
                id=file_id,
                capsule_id=capsule.id,
                organization_id=organization.id,
                uploaded_by=uploaded_by,
                filename=filename,
                mime_type=mime_type,
                content_type=content_type,
                title=title,
                topic=topic.key,
                metadata=metadata,
                created_at=created_at,
                recipe=recipe,
            )
        )
    return out, text_files


def _unique_title(rng: random.Random, topic: Topic, facets: tuple[str, ...], taken: set[str]) -> str:
    templates = _SINGLE_FACET_TITLES if len(facets) == 1 else _MULTI_FACET_TITLES
    facet_name = topic.facet(facets[0]).name
    title = ""
    for _ in range(12):
        title = rng.choice(templates).format(topic=topic.name, facet=facet_name)
        if title not in taken:
            break
    else:
        title = f"{title} (Part {sum(1 for t in taken if t.startswith(title)) + 1})"
    taken.add(title)
    return title


def _unique_filename(title: str, extension: str, taken: set[str]) -> str:
    stem = _ascii_slug(title) or "file"
    candidate, n = f"{stem}.{extension}", 2
    while candidate in taken:
        candidate, n = f"{stem}-{n}.{extension}", n + 1
    taken.add(candidate)
    return candidate


def _make_queries(
    organization: Organization, capsule: Capsule, topic: Topic, capsule_files: list[CorpusFile]
) -> list[LabelledQuery]:
    documents = [f for f in capsule_files if f.is_document]
    out = []
    if documents:
        # Broad questions are asked across the organisation: the topic is unique within it,
        # so this capsule's documents are exactly the relevant set.
        for text in topic.queries:
            out.append(LabelledQuery(text, organization.id, None, tuple(f.id for f in documents), topic.key))
    for facet in topic.facets:
        relevant = tuple(f.id for f in documents if facet.key in f.metadata["facets"])
        if not relevant:
            continue
        for text in facet.queries:
            out.append(LabelledQuery(text, organization.id, capsule.id, relevant, topic.key))
    return out


# -- activity -------------------------------------------------------------------------------


def _bare(term: str) -> str:
    for article in ("the ", "your ", "a ", "an "):
        if term.startswith(article):
            return term[len(article):]
    return term


def _search_text(rng: random.Random, topic: Topic) -> str:
    if rng.random() < 0.45:
        return rng.choice(topic.queries + tuple(q for f in topic.facets for q in f.queries))
    terms = rng.choice([topic.terms] + [f.terms for f in topic.facets])
    a, b = rng.sample(terms, 2)
    return rng.choice(_SEARCH_PATTERNS).format(a=_bare(a), b=_bare(b)).lower()


def _chat_text(rng: random.Random, topic: Topic) -> str:
    facet = rng.choice(topic.facets)
    a, b = rng.sample(facet.terms, 2)
    return rng.choice(_CHAT_TEMPLATES).format(a=a, b=b, facet=facet.name, topic=topic.phrase)


def _session_plan(rng: random.Random) -> list[tuple[EventType, int]]:
    """Event types with the seconds elapsed since the previous event."""
    plan = [(EventType.VIEW, 0)]
    for _ in range(rng.choices(range(7), weights=(10, 20, 22, 18, 12, 10, 8))[0]):
        if rng.random() < 0.5:
            plan.append((EventType.SEARCH, rng.randint(4, 90)))
        else:
            plan.append((EventType.CHAT_TURN, rng.randint(10, 240)))
    if rng.random() < 0.85:
        plan.append((EventType.DWELL, rng.randint(5, 300)))
    if rng.random() < 0.3:
        plan.append((EventType.COMPLETION, rng.randint(1, 60)))
    return plan


def _make_activity(
    spec: CorpusSpec, ids: _Ids, users: list[User], capsules: list[Capsule], files: list[CorpusFile]
) -> tuple[list[Interaction], list[Event]]:
    interactions: list[Interaction] = []
    events: list[Event] = []
    users_by_org: dict[uuid.UUID, list[User]] = {}
    for user in users:
        users_by_org.setdefault(user.organization_id, []).append(user)
    files_per_capsule: dict[uuid.UUID, int] = {}
    for corpus_file in files:
        files_per_capsule[corpus_file.capsule_id] = files_per_capsule.get(corpus_file.capsule_id, 0) + 1

    for capsule_index, capsule in enumerate(capsules):
        if capsule.status is CapsuleStatus.DRAFT:
            continue  # nobody outside the authors can open a draft
        rng = _rng(spec.seed, "activity", capsule_index)
        topic = TOPICS[capsule.topic]
        audience = users_by_org[capsule.organization_id]
        # Viewers make up most traffic; staff roles look in less often.
        weights = [3 if u.role is UserRole.VIEWER else 1 for u in audience]
        remaining = spec.events_per_capsule
        while remaining > 0:
            plan = _session_plan(rng)[:remaining]
            remaining -= len(plan)
            duration = timedelta(seconds=sum(gap for _, gap in plan))
            day = rng.randrange(spec.days)
            hour = rng.choices(range(24), weights=_HOUR_WEIGHTS)[0]
            started_at = spec.start + timedelta(days=day, hours=hour, seconds=rng.randrange(3600))
            # Keep the whole session inside the window rather than cutting it off at the end.
            latest = spec.end - duration - timedelta(seconds=1)
            started_at = max(spec.start, min(started_at, latest))

            user = None if rng.random() < 0.2 else rng.choices(audience, weights=weights)[0]
            user_id = user.id if user else None
            interaction = Interaction(
                id=ids("interaction"),
                capsule_id=capsule.id,
                user_id=user_id,
                session_id=f"sess_{ids('session').hex[:24]}",
                started_at=started_at,
            )
            interactions.append(interaction)

            occurred_at = started_at
            chat_turns = 0
            for event_type, gap in plan:
                occurred_at += timedelta(seconds=gap)
                if event_type is EventType.VIEW:
                    payload = {"referrer": rng.choice(_REFERRERS), "device": rng.choice(_DEVICES)}
                elif event_type is EventType.SEARCH:
                    payload = {"query": _search_text(rng, topic), "result_count": rng.randint(0, 12)}
                elif event_type is EventType.CHAT_TURN:
                    chat_turns += 1
                    payload = {"question": _chat_text(rng, topic), "turn": chat_turns}
                elif event_type is EventType.DWELL:
                    payload = {"seconds": int((occurred_at - started_at).total_seconds())}
                else:
                    payload = {"progress": 1.0, "files_opened": rng.randint(1, files_per_capsule.get(capsule.id, 1))}
                events.append(
                    Event(
                        id=ids("event"),
                        interaction_id=interaction.id,
                        capsule_id=capsule.id,
                        user_id=user_id,
                        session_id=interaction.session_id,
                        event_type=event_type,
                        payload=payload,
                        occurred_at=occurred_at,
                    )
                )
    return interactions, events


def _make_consents(spec: CorpusSpec, users: list[User]) -> list[Consent]:
    """Consent histories under two policy versions, with re-consent and withdrawals."""
    rng = _rng(spec.seed, "consents")
    old_effective = _month_start(spec.start, 15)
    new_effective = _month_start(spec.start, 9)
    old_version, new_version = f"{old_effective:%Y-%m}", f"{new_effective:%Y-%m}"
    out = []
    for user in users:
        for purpose in ConsentPurpose:
            recorded_at = user.created_at + timedelta(seconds=rng.randint(5, 1800))
            version = new_version if recorded_at >= new_effective else old_version
            granted = rng.random() < _CONSENT_RATES[purpose]
            out.append(Consent(user.id, purpose, granted, version, recorded_at))
            if version == old_version:
                # A new policy version asks everyone again; most people keep their choice.
                recorded_at = max(recorded_at, new_effective) + timedelta(seconds=rng.randint(3600, 60 * 86400))
                granted = granted if rng.random() < 0.8 else not granted
                version = new_version
                out.append(Consent(user.id, purpose, granted, version, recorded_at))
            earliest_withdrawal = recorded_at + timedelta(days=1)
            if granted and rng.random() < 0.2 and earliest_withdrawal < spec.end:
                out.append(Consent(user.id, purpose, False, version, _between(rng, earliest_withdrawal, spec.end)))
    return out
