"""Renders corpus files to bytes from small recipes.

A recipe holds only what is needed to rebuild a file, so a corpus can describe thousands of
files without holding their bytes; every render of the same recipe gives the same bytes,
because all randomness is seeded from `recipe.key` and every embedded timestamp comes from
the recipe rather than the clock.
"""

from __future__ import annotations

import html
import io
import random
import textwrap
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from encaptio_data.corpus.compose import Document, compose
from encaptio_data.corpus.topics import TOPICS

DOCUMENT_KINDS = ("pdf", "markdown", "html", "text")
IMAGE_KINDS = ("png", "jpeg")
VIDEO_KINDS = ("mp4",)

VIDEO_CODEC = "mpeg4"
VIDEO_FPS = 12
VIDEO_SIZE = 64

_KIND_LABELS = {"pdf": "guide", "markdown": "set of notes", "html": "article", "text": "handout"}


@dataclass(frozen=True)
class FileRecipe:
    kind: str
    key: str
    title: str
    topic_key: str
    facets: tuple[str, ...]
    capsule_title: str
    organization_name: str
    author: str
    created_at: datetime
    words: int = 0
    encoding: str = "utf-8"
    width: int = 0
    height: int = 0
    frames: int = 0
    style: str = ""


def document_for(recipe: FileRecipe) -> Document | None:
    if recipe.kind not in DOCUMENT_KINDS:
        return None
    return compose(
        key=recipe.key,
        topic_key=recipe.topic_key,
        facets=recipe.facets,
        words=recipe.words,
        title=recipe.title,
        kind_label=_KIND_LABELS[recipe.kind],
        # Markdown is where ingestion meets list syntax, so make sure every file has some.
        always_list=recipe.kind == "markdown",
    )


def render(recipe: FileRecipe) -> bytes:
    if recipe.kind in DOCUMENT_KINDS:
        document = document_for(recipe)
        assert document is not None
        return _DOCUMENT_RENDERERS[recipe.kind](recipe, document)
    if recipe.kind in IMAGE_KINDS:
        return _render_image(recipe)
    if recipe.kind in VIDEO_KINDS:
        return _render_video(recipe)
    raise ValueError(f"unknown file kind {recipe.kind!r}")


# -- text helpers -------------------------------------------------------------------------

_TYPOGRAPHIC_FALLBACKS = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
    "\u2026": "...", "\u2022": "-", "\u00b7": "-", "\u2192": "->", "\u20ac": "EUR", "\u00a0": " ",
}


def to_charset(text: str, encoding: str) -> str:
    """Replace characters the target encoding lacks with the closest plain equivalent."""
    out = []
    for char in text:
        try:
            char.encode(encoding)
            out.append(char)
            continue
        except UnicodeEncodeError:
            pass
        fallback = _TYPOGRAPHIC_FALLBACKS.get(char)
        if fallback is None:
            fallback = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii") or "?"
        out.append(fallback)
    return "".join(out)


def _long_date(value: datetime) -> str:
    return f"{value.day} {value:%B %Y}"


# -- documents ----------------------------------------------------------------------------


def _render_pdf(recipe: FileRecipe, document: Document) -> bytes:
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    # Core fonts only know latin-1, and the PDF must not depend on a font file being present.
    def latin(text: str) -> str:
        return to_charset(text, "latin-1")

    running_title = latin(document.title)

    class _Pdf(FPDF):
        def header(self) -> None:
            if self.page_no() > 1:
                self.set_font("helvetica", "I", 8)
                self.set_text_color(110, 110, 110)
                self.cell(0, 6, running_title, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                self.ln(4)
                self.set_text_color(0, 0, 0)

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("helvetica", "I", 8)
            self.set_text_color(110, 110, 110)
            self.cell(0, 10, f"Page {self.page_no()}", align="C")

    pdf = _Pdf(format="A4")
    pdf.set_creation_date(recipe.created_at)
    pdf.set_title(latin(document.title))
    pdf.set_author(latin(recipe.author))
    pdf.set_subject(latin(recipe.capsule_title))
    pdf.set_creator("encaptio-data demo corpus")
    # The default producer embeds the fpdf2 version, which would change bytes on upgrade.
    pdf.set_producer("encaptio-data demo corpus")
    pdf.set_lang("en")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_margins(22, 20, 22)

    # A cover page makes every PDF multi-page, as real reports and handouts are.
    pdf.add_page()
    pdf.ln(45)
    pdf.set_font("helvetica", "B", 24)
    pdf.multi_cell(0, 11, latin(document.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)
    pdf.set_font("helvetica", "", 12)
    pdf.multi_cell(0, 7, latin(document.summary), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(20)
    pdf.set_font("helvetica", "", 10)
    for line in (
        f"Capsule: {recipe.capsule_title}",
        f"Prepared by {recipe.author} for {recipe.organization_name}",
        _long_date(recipe.created_at),
    ):
        pdf.multi_cell(0, 6, latin(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    pdf.add_page()
    for section in document.sections:
        pdf.ln(3)
        pdf.set_font("helvetica", "B", 15)
        pdf.multi_cell(0, 8, latin(section.heading), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)
        pdf.set_font("helvetica", "", 11)
        for paragraph in section.paragraphs:
            pdf.multi_cell(0, 5.5, latin(paragraph), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(2.5)
        for number, bullet in enumerate(section.bullets, start=1):
            marker = f"{number}." if section.numbered else "-"
            pdf.set_x(pdf.l_margin + 4)
            pdf.multi_cell(0, 5.5, latin(f"{marker} {bullet}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if section.bullets:
            pdf.ln(2.5)
    return bytes(pdf.output())


def _render_markdown(recipe: FileRecipe, document: Document) -> bytes:
    lines = [
        f"# {document.title}",
        "",
        f"> {document.summary}",
        "",
        f"*{recipe.capsule_title} · {recipe.author} · {_long_date(recipe.created_at)}*",
        "",
    ]
    for section in document.sections:
        lines += [f"## {section.heading}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for number, bullet in enumerate(section.bullets, start=1):
            lines.append(f"{number}. {bullet}" if section.numbered else f"- {bullet}")
        if section.bullets:
            lines.append("")
    return "\n".join(lines).encode("utf-8")


def _render_html(recipe: FileRecipe, document: Document) -> bytes:
    def e(text: str) -> str:
        # Apostrophes stay literal in text; every interpolation below is element content or a
        # double-quoted attribute, where escaping &, <, > and " is enough.
        return html.escape(text, quote=False).replace('"', "&quot;")

    related = [t for t in TOPICS[recipe.topic_key].capsule_titles if t != recipe.capsule_title]
    article: list[str] = [
        f"<h1>{e(document.title)}</h1>",
        f'<p class="byline">By {e(recipe.author)} &middot; <time datetime="{recipe.created_at.date().isoformat()}">'
        f"{e(_long_date(recipe.created_at))}</time></p>",
        f'<p class="lead">{e(document.summary)}</p>',
    ]
    for section in document.sections:
        article.append("<section>")
        article.append(f"<h2>{e(section.heading)}</h2>")
        article.extend(f"<p>{e(p)}</p>" for p in section.paragraphs)
        if section.bullets:
            tag = "ol" if section.numbered else "ul"
            article.append(f"<{tag}>" + "".join(f"<li>{e(b)}</li>" for b in section.bullets) + f"</{tag}>")
        article.append("</section>")

    # The boilerplate around <article> is deliberate: extraction should learn to drop it.
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(document.title)} | {e(recipe.capsule_title)}</title>
<meta name="description" content="{e(document.summary)}">
<link rel="stylesheet" href="/static/site.css">
<script>window.dataLayer = window.dataLayer || []; function gtag(){{dataLayer.push(arguments);}}</script>
</head>
<body>
<div class="cookie-banner" role="dialog">We use cookies to improve your experience and to measure traffic.
<a href="/privacy">Read our privacy policy</a> <button type="button">Accept all</button> <button type="button">Reject</button></div>
<header class="site-header">
<a class="logo" href="/">{e(recipe.organization_name)}</a>
<nav aria-label="Main">
<ul><li><a href="/">Home</a></li><li><a href="/capsules">Capsules</a></li><li><a href="/about">About us</a></li><li><a href="/contact">Contact</a></li><li><a href="/login">Sign in</a></li></ul>
</nav>
</header>
<main>
<nav class="breadcrumbs" aria-label="Breadcrumb"><a href="/">Home</a> &rsaquo; <a href="/capsules">Capsules</a> &rsaquo; {e(recipe.capsule_title)}</nav>
<article>
{chr(10).join(article)}
</article>
<aside class="related">
<h3>Related reading</h3>
<ul>{"".join(f'<li><a href="/capsules/{i}">{e(t)}</a></li>' for i, t in enumerate(related, start=1))}<li><a href="/capsules">Browse all capsules</a></li></ul>
<div class="newsletter">Get new capsules in your inbox every month. <a href="/subscribe">Subscribe</a></div>
</aside>
</main>
<footer class="site-footer">
<p>&copy; {recipe.created_at.year} {e(recipe.organization_name)}. All rights reserved.</p>
<nav aria-label="Footer"><a href="/terms">Terms of use</a> | <a href="/privacy">Privacy</a> | <a href="/cookies">Cookie settings</a> | <a href="/accessibility">Accessibility</a></nav>
</footer>
</body>
</html>
"""
    return page.encode("utf-8")


def _render_text(recipe: FileRecipe, document: Document) -> bytes:
    # Typographic quotes and the em dash are in cp1252 but their bytes are invalid UTF-8,
    # so the cp1252 files are guaranteed to need real encoding detection.
    lines = [
        document.title,
        "=" * len(document.title),
        "",
        f"From the capsule \u201c{recipe.capsule_title}\u201d \u2014 {recipe.author}, {_long_date(recipe.created_at)}",
        "",
    ]
    lines += textwrap.wrap(document.summary, 78) + [""]
    for section in document.sections:
        lines += [section.heading, "-" * len(section.heading), ""]
        for paragraph in section.paragraphs:
            lines += textwrap.wrap(paragraph, 78) + [""]
        for number, bullet in enumerate(section.bullets, start=1):
            marker = f"{number}." if section.numbered else "\u2022"
            lines += textwrap.wrap(bullet, 78, initial_indent=f"  {marker} ", subsequent_indent="    ")
        if section.bullets:
            lines.append("")
    # Handouts list their translations; the language names guarantee accented letters in
    # every text file, whichever encoding it uses.
    rng = random.Random(f"{recipe.key}:languages")
    languages = [rng.choice(_ACCENTED_LANGUAGES)] + rng.sample(_PLAIN_LANGUAGES, rng.randint(1, 3))
    rng.shuffle(languages)
    if lines[-1]:
        lines.append("")
    lines.append("Also available in: " + " \u00b7 ".join(languages))
    text = "\n".join(lines) + "\n"
    return to_charset(text, recipe.encoding).encode(recipe.encoding)


_ACCENTED_LANGUAGES = ("Français", "Español", "Português", "Čeština")
_PLAIN_LANGUAGES = ("Deutsch", "Italiano", "Nederlands", "Svenska", "Polski")


_DOCUMENT_RENDERERS = {
    "pdf": _render_pdf,
    "markdown": _render_markdown,
    "html": _render_html,
    "text": _render_text,
}


# -- images -------------------------------------------------------------------------------


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _render_image(recipe: FileRecipe) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(f"{recipe.key}:image")
    palette = TOPICS[recipe.topic_key].palette
    width, height = recipe.width, recipe.height
    image = Image.new("RGB", (width, height), palette[2])
    draw = ImageDraw.Draw(image)
    caption_top = height - 26

    if recipe.style == "photo":
        for y in range(caption_top):
            draw.line([(0, y), (width, y)], fill=_mix(palette[1], palette[2], y / caption_top))
        sun_x, sun_r = rng.randint(30, width - 30), rng.randint(12, 28)
        draw.ellipse((sun_x - sun_r, 20, sun_x + sun_r, 20 + 2 * sun_r), fill=palette[0])
        for layer in range(3):
            base = caption_top - layer * 18
            points = [(0, caption_top)] + [
                (x, base - rng.randint(10, 60)) for x in range(0, width + 40, rng.randint(30, 60))
            ] + [(width, caption_top)]
            draw.polygon(points, fill=_mix(palette[0], palette[1], 0.3 + 0.3 * layer))
    elif recipe.style == "chart":
        left, bottom = 30, caption_top - 12
        draw.line([(left, 14), (left, bottom), (width - 12, bottom)], fill=palette[1], width=2)
        bars = rng.randint(4, 8)
        step = (width - left - 24) / bars
        for i in range(bars):
            bar_height = rng.randint(15, bottom - 24)
            x0 = left + 8 + i * step
            colour = palette[0] if i % 2 == 0 else _mix(palette[0], palette[1], 0.5)
            draw.rectangle((x0, bottom - bar_height, x0 + step * 0.6, bottom - 1), fill=colour)
    else:
        nodes = [
            (rng.randint(40, width - 40), rng.randint(24, caption_top - 24)) for _ in range(rng.randint(3, 6))
        ]
        for (x0, y0), (x1, y1) in zip(nodes, nodes[1:]):
            draw.line([(x0, y0), (x1, y1)], fill=palette[1], width=3)
        for x, y in nodes:
            box = (x - 26, y - 14, x + 26, y + 14)
            draw.rounded_rectangle(box, radius=6, fill=palette[0], outline=palette[1], width=2)

    draw.rectangle((0, caption_top, width, height), fill=palette[1])
    font = ImageFont.load_default(size=13)
    caption = recipe.title if len(recipe.title) <= 44 else recipe.title[:41] + "..."
    draw.text((8, caption_top + 5), caption, fill=(255, 255, 255), font=font)

    out = io.BytesIO()
    if recipe.kind == "jpeg":
        image.save(out, format="JPEG", quality=85, optimize=True)
    else:
        image.save(out, format="PNG", optimize=True)
    return out.getvalue()


# -- video --------------------------------------------------------------------------------


def _render_video(recipe: FileRecipe) -> bytes:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a declared dependency
        raise RuntimeError("rendering demo videos needs PyAV: pip install av==18.1.0") from exc
    from PIL import Image, ImageDraw

    rng = random.Random(f"{recipe.key}:video")
    palette = TOPICS[recipe.topic_key].palette
    size = VIDEO_SIZE
    radius = rng.randint(6, 12)
    y_ball = rng.randint(radius, size - radius)
    speed = rng.choice((-1, 1)) * rng.uniform(2.5, 5.0)

    out = io.BytesIO()
    # bitexact keeps encoder version strings out of the file, so bytes survive upgrades of
    # the bundled FFmpeg as long as the encoder itself does not change; one thread keeps
    # the encoder's output independent of scheduling.
    with av.open(out, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(VIDEO_CODEC, rate=VIDEO_FPS, options={"flags": "+bitexact", "threads": "1"})
        stream.width = size
        stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(recipe.frames):
            t = index / max(1, recipe.frames - 1)
            frame = Image.new("RGB", (size, size), _mix(palette[2], palette[1], t))
            draw = ImageDraw.Draw(frame)
            x = (size / 2 + speed * index) % size
            draw.ellipse((x - radius, y_ball - radius, x + radius, y_ball + radius), fill=palette[0])
            draw.rectangle((0, size - 8, round(size * t), size), fill=palette[0])
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()
