"""Turns a topic, a set of facets and a length into a structured document.

The structure (title, summary, sections of paragraphs and bullet lists) is independent of
the file format, so the same text can be rendered as PDF, Markdown, HTML or plain text.
Facet vocabulary is used only inside that facet's own sections: a document that does not
list a facet never mentions it, which keeps the labelled queries honest.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from encaptio_data.corpus.topics import TOPICS, Facet, Topic

_TEMPLATES: tuple[str, ...] = (
    "A common mistake is to focus on {a} while ignoring {b}.",
    "{A} and {b} are closely linked, so a change in one usually shows up in the other.",
    "If results are inconsistent, look at {a} before blaming {b}.",
    "Keeping brief notes on {a} makes patterns visible after a few weeks.",
    "There is no single right answer for {a}; it depends on your goals and your circumstances.",
    "Experienced practitioners tend to talk less about {a} and more about {b}.",
    "A slow, steady approach to {a} works better than cramming.",
    "The vocabulary around {a} can be confusing at first, but the underlying idea is simple.",
    "Questions about {a} come up in almost every session we run on {topic}.",
    "It helps to revisit {a} regularly rather than only once.",
    "We will come back to {a} later, once the basics of {b} are clear.",
    "In practice, attention to {a} matters more than most introductions to {topic} admit.",
    "Before spending money on anything related to {a}, make sure you understand {b}.",
    "Beginners often ask whether they really need to worry about {a}; the honest answer is that it depends on {b}.",
    "Getting {a} right early saves a lot of frustration later on.",
    "Most problems with {a} can be traced back to a handful of simple causes.",
    "Compare your own experience with {a} against the guidelines here, and adjust gradually.",
    "Many guides treat {a} and {b} separately, but they are easier to understand together.",
    "Once you are comfortable with {a}, move on to {b}.",
    "Do not be discouraged if getting to grips with {a} takes a few attempts.",
    "Tracking {a} over time tells you more than any single observation.",
    "The best way to learn about {a} is hands-on practice followed by careful observation.",
    "A short checklist for {a} is worth keeping close at hand.",
    "Be sceptical of advice about {a} that ignores {b}.",
    "When in doubt about {a}, choose the simpler option and review it later.",
    "Understanding {a} also makes {b} far less mysterious.",
    "{person}, who joined one of our {topic} workshops in {month}, found that paying attention to {a} "
    "made the biggest difference.",
    "One reader from {city} wrote to say that understanding {a} only clicked for them after they started "
    "paying attention to {b}.",
    "During a recent session in {city}, the most common question was about {a}.",
    "{person} put it well: learn about {a} properly first, and everything about {b} becomes much easier.",
)

# Fictional first names and real cities; a few accents so UTF-8 text files carry them.
_PEOPLE = ("Priya", "Tomás", "Ingrid", "Kwame", "Mei", "Lukas", "Aoife", "Rafael", "Noor", "Élodie", "Sven", "Chiara")
_CITIES = (
    "Leeds", "Lyon", "Porto", "Kraków", "Utrecht", "Göteborg", "Bilbao", "Dublin", "Brno", "Malmö", "Toronto", "Melbourne",
)
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)

_INTRO_HEADINGS = ("Introduction", "Overview", "Why This Matters", "Background", "Before You Begin")
_CLOSING_HEADINGS = ("Key Takeaways", "Summary", "Next Steps", "Quick Checklist")
_WORDS_PER_SENTENCE = 17


@dataclass(frozen=True)
class Section:
    heading: str
    paragraphs: tuple[str, ...]
    bullets: tuple[str, ...] = ()
    # None for the introduction and the closing, which stay at topic level.
    facet: str | None = None
    numbered: bool = False


@dataclass(frozen=True)
class Document:
    title: str
    summary: str
    sections: tuple[Section, ...]

    def blocks(self) -> list[str]:
        out = [self.title, self.summary]
        for section in self.sections:
            out.append(section.heading)
            out.extend(section.paragraphs)
            out.extend(section.bullets)
        return out

    def plain_text(self) -> str:
        return "\n\n".join(self.blocks())

    def word_count(self) -> int:
        return sum(len(block.split()) for block in self.blocks())


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


class _SentenceSource:
    """Draws facts without replacement and template sentences without exact repeats."""

    def __init__(self, rng: random.Random, topic: Topic, terms: tuple[str, ...], facts: tuple[str, ...]):
        self._rng = rng
        self._topic = topic
        self._terms = terms
        self._facts = list(facts)
        rng.shuffle(self._facts)
        self._used: set[str] = set()

    def sentence(self) -> str:
        # Facts carry the real information, so they go first and are spent before templates
        # dominate; templates only add topical glue around the facet's terms.
        if self._facts and self._rng.random() < 0.6:
            return self._facts.pop()
        for _ in range(20):
            candidate = self._template()
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate
        if self._facts:
            return self._facts.pop()
        return self._template()

    def _template(self) -> str:
        rng = self._rng
        a, b = rng.sample(self._terms, 2)
        return rng.choice(_TEMPLATES).format(
            a=a,
            A=_capitalise(a),
            b=b,
            topic=self._topic.phrase,
            person=rng.choice(_PEOPLE),
            city=rng.choice(_CITIES),
            month=rng.choice(_MONTHS),
        )

    def paragraphs(self, words: int) -> list[str]:
        out: list[str] = []
        written = 0
        while written < words or not out:
            sentences = [self.sentence() for _ in range(self._rng.randint(3, 6))]
            paragraph = " ".join(sentences)
            out.append(paragraph)
            written += len(paragraph.split())
        return out


def facet_count_for(words: int, available: int) -> int:
    """How many facets a document of this length covers: longer documents range wider."""
    wanted = 1 if words < 550 else 2 if words < 1100 else 3
    return max(1, min(wanted, available))


def compose(
    *,
    key: str,
    topic_key: str,
    facets: tuple[str, ...],
    words: int,
    title: str,
    kind_label: str,
    always_list: bool = False,
) -> Document:
    """Build the document for one file; `key` seeds the RNG so renders are reproducible."""
    rng = random.Random(f"{key}:text")
    topic = TOPICS[topic_key]
    chosen: list[Facet] = [topic.facet(f) for f in facets]

    if len(chosen) == 1:
        summary = f"This {kind_label} focuses on one area of {topic.phrase}: {chosen[0].name}."
    else:
        count = ("two", "three", "four")[len(chosen) - 2]
        # Semicolons, because facet names themselves contain "and".
        summary = f"This {kind_label} covers {count} areas of {topic.phrase}: {'; '.join(f.name for f in chosen)}."

    intro_words = max(40, int(words * rng.uniform(0.08, 0.14)))
    closing_words = 40
    per_facet = max(60, (words - intro_words - closing_words) // len(chosen))

    sections: list[Section] = []
    intro = _SentenceSource(rng, topic, topic.terms, topic.facts)
    sections.append(Section(rng.choice(_INTRO_HEADINGS), tuple(intro.paragraphs(intro_words))))

    tips_pool: list[str] = []
    for position, facet in enumerate(chosen):
        source = _SentenceSource(rng, topic, facet.terms, facet.facts)
        # Long facet budgets are split under two headings so sections stay readable.
        headings = rng.sample(facet.headings, 2 if per_facet > 450 else 1)
        budget = per_facet // len(headings)
        tips = list(facet.tips)
        rng.shuffle(tips)
        for index, heading in enumerate(headings):
            bullets: tuple[str, ...] = ()
            wants_list = (always_list and position == 0 and index == 0) or rng.random() < 0.35
            if wants_list and tips:
                count = min(len(tips), rng.randint(3, 5))
                bullets, tips = tuple(tips[:count]), tips[count:]
            sections.append(Section(heading, tuple(source.paragraphs(budget)), bullets, facet=facet.key))
        tips_pool.extend(tips)

    closing_heading = rng.choice(_CLOSING_HEADINGS)
    rng.shuffle(tips_pool)
    closing_bullets = tuple(tips_pool[: rng.randint(3, 5)])
    if closing_bullets:
        lead = f"The points below are the ones worth remembering from this {kind_label}."
        sections.append(Section(closing_heading, (lead,), closing_bullets, numbered=closing_heading == "Next Steps"))
    return Document(title=title, summary=summary, sections=tuple(sections))
