"""Extraction turns every upload into text or metadata, and every bad upload into a reason."""

from __future__ import annotations

import io
import random

import pytest
from fpdf import FPDF
from PIL import Image

from encaptio_data.content import extract as extract_module
from encaptio_data.content.extract import EXTRACTOR_VERSION, Extraction, extract, normalize_text
from encaptio_data.db.enums import ContentType

# --- fixture files, made here so the suite carries no binary blobs ------------------------


def make_pdf(
    pages: list[str],
    *,
    outline: list[str | None] | None = None,
    title: str | None = None,
    user_password: str | None = None,
    owner_password: str | None = None,
) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    if title:
        pdf.set_title(title)
    for index, text in enumerate(pages):
        pdf.add_page()
        if outline and outline[index]:
            pdf.start_section(outline[index])
        pdf.multi_cell(0, 6, text)
    if user_password or owner_password:
        pdf.set_encryption(owner_password=owner_password or "owner", user_password=user_password)
    return bytes(pdf.output())


def make_image(fmt: str = "PNG", size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    image = Image.new(mode, size, "red" if mode == "RGB" else 128)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def make_video(frames: int = 10, size: int = 32, rate: int = 10) -> bytes:
    av = pytest.importorskip("av")
    np = pytest.importorskip("numpy")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            pixels = np.full((size, size, 3), index * 20 % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def make_audio_only() -> bytes:
    av = pytest.importorskip("av")
    np = pytest.importorskip("numpy")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def assert_sections_index_text(extraction: Extraction) -> None:
    assert extraction.sections, "an ok extraction has sections"
    for section in extraction.sections:
        assert extraction.text[section.start : section.end] == section.text
    assert "\n\n".join(s.text for s in extraction.sections) == extraction.text


BOILERPLATE_HTML = """<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><title>Guide to Widgets</title>
<script>var tracking = "analytics-snippet";</script><style>.x{color:red}</style></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/about">About us</a></li>
<li><a href="/shop">Shop now</a></li></ul></nav>
<header><div class="banner">Widget Corp header banner</div></header>
<main><article>
<h1>Guide to Widgets</h1>
<p>Widgets are small mechanical devices used in many industries. This guide explains how widgets
are built and maintained, with attention to the materials and tolerances involved in each step.</p>
<h2>Building widgets</h2>
<p>To build a widget you need a <b>frame</b>, a spring and a <a href="https://example.com/lever">lever
assembly</a>. Assemble the frame first, then fit the spring carefully so that the lever moves freely.</p>
<ul><li>Frame: aluminium</li><li>Spring: steel</li></ul>
<h2>Maintaining widgets</h2>
<p>Oil the spring every six months. Replace the lever when it shows wear, and keep the frame clean and
dry to avoid corrosion over the long years of service that a good widget gives.</p>
</article></main>
<footer><p>Copyright 2024 Widget Corp. All rights reserved. Privacy policy | Terms of service</p></footer>
</body></html>"""

MARKDOWN = """---
title: Front Matter Title
tags: [a, b]
---
# Getting started

Install the **platform** with _care_ and read the [operations guide](https://example.com/ops)
before you begin. Inline `code` stays as text.

## Checklist

- first item
- second item with a [link](http://example.org/x)
  - nested *item*

1. one
2. two

| Name | Value |
|------|-------|
| size | 42    |

```
plain code block
```

<div>raw <b>html</b> &amp; entities</div>

![diagram of the flow](flow.png)

## Next steps

Read the ~~old~~ new docs.
"""


# --- PDF --------------------------------------------------------------------------------


def test_pdf_text_is_read_page_by_page() -> None:
    data = make_pdf([f"This is page number {n}. Cafe text about widgets." for n in (1, 2, 3)], title="Widgets")
    result = extract(data, ContentType.PDF, mime_type="application/pdf", filename="w.pdf")

    assert result.status == "ok" and result.reason is None
    assert result.extractor == "pypdfium2"
    assert result.metadata["pages"] == 3 and result.metadata["pages_with_text"] == 3
    assert result.metadata["title"] == "Widgets"
    assert result.metadata["extractor_version"] == EXTRACTOR_VERSION
    assert [s.page for s in result.sections] == [1, 2, 3]
    for section in result.sections:
        assert f"page number {section.page}." in section.text
    assert_sections_index_text(result)


def test_pdf_outline_gives_headings_and_blank_pages_are_skipped() -> None:
    data = make_pdf(
        ["Intro text on the first page.", "", "Chapter two starts here.", "More of chapter two."],
        outline=["Introduction", None, "Chapter Two", None],
    )
    result = extract(data, ContentType.PDF)

    assert result.status == "ok"
    assert result.metadata["pages"] == 4 and result.metadata["pages_with_text"] == 3
    assert [(s.page, s.heading) for s in result.sections] == [
        (1, "Introduction"),
        (3, "Chapter Two"),
        (4, "Chapter Two"),
    ]


def test_pdf_with_a_user_password_is_reported_as_encrypted() -> None:
    data = make_pdf(["Top secret."], user_password="open-sesame", owner_password="owner")
    result = extract(data, ContentType.PDF)
    assert result.status == "failed"
    assert result.reason == "encrypted PDF"


def test_pdf_with_only_an_owner_password_is_read() -> None:
    data = make_pdf(["Permissions only, readable by anyone."], owner_password="owner")
    result = extract(data, ContentType.PDF)
    assert result.status == "ok"
    assert "readable by anyone" in result.text


def test_truncated_pdf_is_corrupt() -> None:
    data = make_pdf(["Some text " * 50] * 3)
    result = extract(data[: len(data) // 2], ContentType.PDF)
    assert result.status == "failed"
    assert result.reason.startswith("corrupt PDF")
    assert "\n" not in result.reason


def test_scanned_pdf_without_text_layer_fails() -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.image(Image.new("RGB", (200, 100), "white"), x=10, y=10, w=100)
    result = extract(bytes(pdf.output()), ContentType.PDF)
    assert result.status == "failed"
    assert result.reason == "no text layer (scanned PDF; OCR not available)"


def test_pypdf_takes_over_when_pdfium_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    import pypdfium2

    def refuse(data: bytes) -> None:
        raise pypdfium2.PdfiumError("Failed to load document (PDFium: Data format error).")

    monkeypatch.setattr(extract_module, "_pdf_pages_pdfium", refuse)
    result = extract(make_pdf(["Alpha page.", "Beta page."]), ContentType.PDF)
    assert result.status == "ok"
    assert result.extractor == "pypdf"
    assert [(s.page, s.text) for s in result.sections] == [(1, "Alpha page."), (2, "Beta page.")]


def test_declared_pdf_that_is_not_a_pdf() -> None:
    result = extract(b"<html>hello</html>", ContentType.PDF, mime_type="application/pdf")
    assert result.status == "failed"
    assert result.reason == "declared application/pdf but bytes are not a PDF"


# --- HTML -------------------------------------------------------------------------------


def test_html_keeps_main_content_and_drops_boilerplate() -> None:
    result = extract(BOILERPLATE_HTML.encode(), ContentType.HTML, mime_type="text/html")

    assert result.status == "ok" and result.extractor == "trafilatura"
    boilerplate_phrases = ("Home", "About us", "Shop now", "header banner", "Copyright", "Privacy policy", "tracking")
    for boilerplate in (*boilerplate_phrases, "color"):
        assert boilerplate not in result.text
    assert "lever assembly" in result.text  # link text kept
    assert "example.com" not in result.text  # link target dropped
    assert "Frame: aluminium\nSpring: steel" in result.text
    assert [s.heading for s in result.sections] == ["Guide to Widgets", "Building widgets", "Maintaining widgets"]
    assert result.sections[1].text.startswith("Building widgets\n\nTo build a widget")
    assert result.metadata["title"] == "Guide to Widgets"
    assert result.metadata["language"] == "en"
    assert_sections_index_text(result)


def test_html_in_a_legacy_encoding_is_decoded_from_its_meta_charset() -> None:
    page = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252"></head>'
        "<body><article><h1>Caf\u00e9</h1><p>"
        + "Le caf\u00e9 co\u00fbte 5 \u20ac, \u00fcber alles. " * 20
        + "</p></article></body></html>"
    )
    result = extract(page.encode("cp1252"), ContentType.HTML)
    assert result.status == "ok"
    assert result.metadata["encoding"] == "cp1252"
    assert "Le caf\u00e9 co\u00fbte 5 \u20ac, \u00fcber alles." in result.text


def test_html_falls_back_to_body_text_when_trafilatura_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import trafilatura

    monkeypatch.setattr(trafilatura, "bare_extraction", lambda *args, **kwargs: None)
    page = (
        b"<html><body><nav>Menu Links</nav><div>Opening hours</div>"
        b"<p>Monday to <b>Friday</b></p><script>x()</script></body></html>"
    )
    result = extract(page, ContentType.HTML)
    assert result.status == "ok"
    assert result.extractor == "lxml"
    assert result.text == "Opening hours\nMonday to Friday"


def test_html_without_text_fails() -> None:
    result = extract(b"<html><head><title>t</title></head><body><img src=x></body></html>", ContentType.HTML)
    assert result.status == "failed"
    assert result.reason == "no text content in HTML"


# --- Markdown ---------------------------------------------------------------------------


def test_markdown_becomes_plain_text_split_at_headings() -> None:
    result = extract(MARKDOWN.encode(), ContentType.MARKDOWN, filename="guide.md")

    assert result.status == "ok" and result.extractor == "markdown-it-py"
    for markup in ("**", "_care_", "#", "](", "http", "`", "~~", "<div>", "<b>", "&amp;", "|---", "![", "---"):
        assert markup not in result.text, markup
    assert "Install the platform with care and read the operations guide before you begin." in result.text
    assert "first item\nsecond item with a link\nnested item" in result.text
    assert "one\ntwo" in result.text
    assert "Name | Value\nsize | 42" in result.text
    assert "plain code block" in result.text
    assert "raw html & entities" in result.text
    assert "diagram of the flow" in result.text  # image alt text
    assert "tags:" not in result.text  # front matter is not content
    assert [s.heading for s in result.sections] == ["Getting started", "Checklist", "Next steps"]
    assert result.metadata["title"] == "Front Matter Title"
    assert_sections_index_text(result)


def test_markdown_title_is_the_first_h1_without_front_matter() -> None:
    result = extract(b"Preamble line.\n\n# The Title\n\nBody.\n", ContentType.MARKDOWN)
    assert result.metadata["title"] == "The Title"
    assert [s.heading for s in result.sections] == [None, "The Title"]


# --- plain text and encodings -----------------------------------------------------------

ACCENTED = (
    "Le caf\u00e9 co\u00fbte 5 \u20ac. \u00dcber alles, na\u00efve fa\u00e7ade.\n"
    "Zweite Zeile mit Gr\u00fc\u00dfen.\n"
)


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (ACCENTED.encode("cp1252"), "cp1252"),
        (ACCENTED.encode("utf-8"), "utf-8"),
        (ACCENTED.encode("utf-16"), "utf-16"),  # with BOM
        ("\ufeff".encode() + ACCENTED.encode("utf-8"), "utf-8"),
        (b"Plain ASCII only.", "ascii"),
    ],
)
def test_text_encodings_are_detected(encoded: bytes, encoding: str) -> None:
    result = extract(encoded, ContentType.TEXT, mime_type="text/plain")
    assert result.status == "ok", result.reason
    assert result.metadata["encoding"] == encoding
    assert result.extractor == "charset-normalizer"
    assert result.text == normalize_text(encoded.decode(encoding if encoding != "utf-8" else "utf-8-sig"))
    assert "\ufeff" not in result.text
    assert_sections_index_text(result)


def test_declared_charset_is_honoured_for_legacy_bytes() -> None:
    data = "Stra\u00dfe \u00e0 Z\u00fcrich, \u00a9 2024".encode("latin-1")
    result = extract(data, ContentType.TEXT, mime_type="text/plain; charset=ISO-8859-1")
    assert result.status == "ok"
    assert result.metadata["encoding"] == "cp1252"
    assert result.text == "Stra\u00dfe \u00e0 Z\u00fcrich, \u00a9 2024"


def test_text_is_normalized() -> None:
    raw = "Cafe\u0301\x00 ok\r\nline\x07 two\t tab   \n\n\n\n\nlast\x0cpage\u2028end\x1b   "
    expected = "Caf\u00e9 ok\nline two\t tab\n\nlast\npage\nend"
    assert normalize_text(raw) == expected
    # A few stray control characters in a real file are noise to remove, not a sign of binary.
    prose = "\n\nA paragraph of ordinary prose that makes up most of the file. " * 5
    result = extract((raw + prose).encode("utf-8"), ContentType.TEXT)
    assert result.status == "ok"
    assert result.text == expected + "\n\n" + normalize_text(prose)


def test_whitespace_only_text_fails() -> None:
    result = extract(b" \n\t\n ", ContentType.TEXT)
    assert result.status == "failed" and result.reason == "no text content"


# --- documents, images, videos ----------------------------------------------------------


def test_office_documents_are_reported_unsupported() -> None:
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    result = extract(b"PK\x03\x04 not really a docx", ContentType.DOCUMENT, mime_type=mime, filename="a.docx")
    assert result.status == "failed"
    assert result.reason.startswith("unsupported document format")
    assert mime in result.reason


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")]
)
def test_image_metadata(fmt: str, mime: str) -> None:
    result = extract(make_image(fmt, (64, 48)), ContentType.IMAGE, mime_type=mime)
    assert result.status == "metadata_only" and result.reason is None
    assert result.text == "" and result.sections == ()
    assert result.extractor == "pillow"
    assert result.metadata["width"] == 64 and result.metadata["height"] == 48
    assert result.metadata["format"] == fmt
    assert result.metadata["mime_type"] == mime
    assert "mode" in result.metadata


def test_truncated_image_fails() -> None:
    data = make_image("PNG", (300, 300))
    result = extract(data[: len(data) // 2], ContentType.IMAGE, mime_type="image/png")
    assert result.status == "failed"
    assert result.reason.startswith("declared image/png but bytes are not a decodable image")


def test_pdf_declared_as_image_fails_naming_the_declared_type() -> None:
    result = extract(make_pdf(["x"]), ContentType.IMAGE, mime_type="image/jpeg")
    assert result.status == "failed"
    assert result.reason == "declared image/jpeg but bytes are not a decodable image"


def test_svg_metadata() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 80"><rect/></svg>'
    result = extract(svg, ContentType.IMAGE, mime_type="image/svg+xml")
    assert result.status == "metadata_only"
    assert (result.metadata["format"], result.metadata["width"], result.metadata["height"]) == ("SVG", 120, 80)


def test_video_metadata() -> None:
    result = extract(make_video(frames=10, size=32, rate=10), ContentType.VIDEO, mime_type="video/mp4")
    assert result.status == "metadata_only", result.reason
    assert result.extractor == "av"
    meta = result.metadata
    assert (meta["width"], meta["height"], meta["codec"]) == (32, 32, "mpeg4")
    assert meta["duration_seconds"] == pytest.approx(1.0, abs=0.2)
    assert meta["frames"] == 10
    assert meta["fps"] == pytest.approx(10.0)


def test_truncated_video_fails() -> None:
    data = make_video()
    result = extract(data[: len(data) // 3], ContentType.VIDEO, mime_type="video/mp4")
    assert result.status == "failed"
    assert result.reason.startswith("declared video/mp4 but")


def test_audio_declared_as_video_fails() -> None:
    result = extract(make_audio_only(), ContentType.VIDEO, mime_type="video/x-wav")
    assert result.status == "failed"
    assert result.reason == "declared video/x-wav but the file has no video stream"


# --- bad input of every kind ------------------------------------------------------------


@pytest.mark.parametrize("content_type", list(ContentType))
def test_empty_file_fails(content_type: ContentType) -> None:
    result = extract(b"", content_type)
    assert (result.status, result.reason, result.text, result.sections) == ("failed", "empty file", "", ())


def test_oversize_file_fails_before_parsing() -> None:
    result = extract(make_pdf(["hello"]), ContentType.PDF, max_bytes=100)
    assert result.status == "failed"
    assert result.reason.startswith("file of ") and result.reason.endswith(" exceeds the 100 B limit")
    big = extract(bytes(60 * 2**20), ContentType.TEXT)
    assert big.reason == "file of 60 MB exceeds the 50 MB limit"


@pytest.mark.parametrize("content_type", list(ContentType))
@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_fail_with_a_reason(content_type: ContentType, seed: int) -> None:
    data = random.Random(seed).randbytes(2048)
    result = extract(data, content_type, mime_type=f"application/x-declared-{content_type.value}")
    assert result.status == "failed"
    assert result.reason and "\n" not in result.reason
    assert result.text == "" and result.sections == ()


def _valid_samples() -> list[tuple[bytes, ContentType]]:
    samples = [
        (make_pdf(["Some text on a page. " * 20] * 2), ContentType.PDF),
        (make_image("PNG", (80, 60)), ContentType.IMAGE),
        (make_image("JPEG", (80, 60)), ContentType.IMAGE),
        (BOILERPLATE_HTML.encode(), ContentType.HTML),
        (MARKDOWN.encode(), ContentType.MARKDOWN),
    ]
    try:
        samples.append((make_video(), ContentType.VIDEO))
    except pytest.skip.Exception:
        pass
    return samples


def test_damaged_files_never_raise() -> None:
    """Truncated and bit-flipped copies of valid files come back as results, never exceptions."""
    rng = random.Random(20240601)
    for data, content_type in _valid_samples():
        for _ in range(60):
            damaged = bytearray(data[: rng.randint(1, len(data))])
            for _ in range(rng.randint(0, 12)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            result = extract(bytes(damaged), content_type)
            assert result.status in ("ok", "failed", "metadata_only")
            if result.status == "failed":
                assert result.reason
            else:
                assert result.reason is None
            if result.status == "ok":
                assert_sections_index_text(result)


@pytest.mark.parametrize("data", ["text", 42, None, ["b"]])
def test_non_bytes_are_a_programming_error(data: object) -> None:
    with pytest.raises(TypeError):
        extract(data, ContentType.TEXT)  # type: ignore[arg-type]


def test_bytes_like_input_and_string_content_type_are_accepted() -> None:
    result = extract(bytearray(b"hello there"), "text")
    assert result.status == "ok" and result.text == "hello there"


def test_metadata_is_plain_json() -> None:
    """Metadata is stored as a JSON column: no library objects may leak into it."""
    import json

    samples = _valid_samples() + [(b"", ContentType.TEXT), (b"plain", ContentType.TEXT)]
    for data, content_type in samples:
        result = extract(data, content_type)
        assert json.loads(json.dumps(result.metadata)) == result.metadata
        assert result.metadata["extractor"] == result.extractor
