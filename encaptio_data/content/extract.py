"""Text and metadata out of uploaded bytes.

``extract`` is a pure function from bytes to an ``Extraction``. A bad upload (empty,
oversize, encrypted, corrupt, mislabelled, binary noise) is a normal outcome, not an
error: it comes back as ``status="failed"`` with a one-line reason, so a pipeline step
can record it next to the content row and carry on with the rest of the batch. Only a
caller's own mistake (``data`` that is not bytes) raises.

The text of an extraction is the concatenation of its sections joined by a blank line, and
each section knows its character span in that text, its page (PDF) and its nearest heading,
so chunks cut later can cite where they came from.

``EXTRACTOR_VERSION`` is part of the contract: bump it whenever the text produced for the
same bytes changes, so stored extractions can be recognised as stale and redone.
"""

from __future__ import annotations

import bisect
import codecs
import html
import io
import re
import struct
import threading
import unicodedata
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import PurePosixPath
from typing import Any, Literal

from encaptio_data.db.enums import ContentType

EXTRACTOR_VERSION = "1"
DEFAULT_MAX_BYTES = 50 * 2**20

Status = Literal["ok", "failed", "metadata_only"]


@dataclass(frozen=True)
class Section:
    text: str
    start: int
    end: int
    page: int | None = None
    heading: str | None = None


@dataclass(frozen=True)
class Extraction:
    status: Status
    reason: str | None
    text: str
    sections: tuple[Section, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    extractor: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def extract(
    data: bytes,
    content_type: ContentType | str,
    *,
    mime_type: str = "",
    filename: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Extraction:
    """Extract the text (or, for images and videos, the metadata) of one uploaded file."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    if not isinstance(content_type, str):
        raise TypeError(f"content_type must be a ContentType, not {type(content_type).__name__}")
    content_type = ContentType(content_type)
    if not isinstance(mime_type, str) or not isinstance(filename, str):
        raise TypeError("mime_type and filename must be strings")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int, not {type(max_bytes).__name__}")

    upload = _Upload(data, content_type, mime_type.split(";")[0].strip().lower(), mime_type, filename)
    if not data:
        return upload.failed("empty file", "")
    if len(data) > max_bytes:
        return upload.failed(f"file of {_human_size(len(data))} exceeds the {_human_size(max_bytes)} limit", "")
    return _EXTRACTORS[content_type](upload)


# --- shared plumbing --------------------------------------------------------------------


@dataclass(frozen=True)
class _Upload:
    data: bytes
    content_type: ContentType
    mime: str  # without parameters, lower case
    raw_mime: str  # as declared, parameters (charset=...) included
    filename: str

    @property
    def declared(self) -> str:
        """How the upload introduced itself, for reasons that say what was expected."""
        return self.mime or (PurePosixPath(self.filename).suffix.lower() or self.content_type.value)

    def base_metadata(self, extractor: str) -> dict[str, Any]:
        return {"extractor": extractor, "extractor_version": EXTRACTOR_VERSION, "size_bytes": len(self.data)}

    def failed(self, reason: str, extractor: str, **metadata: Any) -> Extraction:
        # One line, bounded: reasons end up in tables, logs and CLI output.
        line = " ".join(reason.split())
        if len(line) > 300:
            line = line[:297] + "..."
        meta = self.base_metadata(extractor) | metadata
        return Extraction("failed", line, "", (), meta, extractor)

    def metadata_only(self, extractor: str, **metadata: Any) -> Extraction:
        return Extraction("metadata_only", None, "", (), self.base_metadata(extractor) | metadata, extractor)

    def ok(self, extractor: str, pieces: Iterable[tuple[str, int | None, str | None]], **metadata: Any) -> Extraction:
        text, sections = _assemble(pieces)
        meta = self.base_metadata(extractor) | {"characters": len(text), "sections": len(sections)} | metadata
        return Extraction("ok", None, text, sections, meta, extractor)


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" or value == int(value) else f"{value:.1f} {unit}"


# \r and the page/line separators become newlines before control characters are removed,
# otherwise a file with old Mac line endings or PDF form feeds would lose its line structure.
_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff\ufffe\uffff\ud800-\udfff]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, no control characters but newline and tab, no run of more than one blank line."""
    text = _NEWLINES.sub("\n", text).replace("\u2029", "\n\n")
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


_SECTION_SEPARATOR = "\n\n"


def _assemble(pieces: Iterable[tuple[str, int | None, str | None]]) -> tuple[str, tuple[Section, ...]]:
    """Join normalized, non-empty pieces with a blank line, recording each one's span."""
    parts: list[str] = []
    sections: list[Section] = []
    offset = 0
    for raw, page, heading in pieces:
        text = normalize_text(raw)
        if not text:
            continue
        if parts:
            parts.append(_SECTION_SEPARATOR)
            offset += len(_SECTION_SEPARATOR)
        heading = _label(heading) if heading else None
        sections.append(Section(text, offset, offset + len(text), page, heading))
        parts.append(text)
        offset += len(text)
    return "".join(parts), tuple(sections)


# Headings and titles are labels, stored and shown with every chunk under them; a PDF
# outline entry or an <h1> can hold a whole paragraph.
MAX_LABEL_CHARS = 200


def _label(text: str) -> str | None:
    """One line of at most MAX_LABEL_CHARS characters, cut at a word."""
    text = _collapse_spaces(normalize_text(text))
    if len(text) > MAX_LABEL_CHARS:
        text = text[: MAX_LABEL_CHARS - 1].rsplit(" ", 1)[0].rstrip() + "\u2026"
    return text or None


def _title(text: str | None) -> dict[str, str]:
    label = _label(text) if text else None
    return {"title": label} if label else {}


def _collapse_spaces(text: str) -> str:
    return " ".join(text.split())


# --- text decoding ----------------------------------------------------------------------

_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_WESTERN = "cp1252"
# charset-normalizer ranks single-byte code pages by "chaos" and, on short Western text, often
# prefers a Baltic or Central European page that turns "û" into "ū". Windows-1252 is what
# such files almost always are (browsers even read "latin-1" as windows-1252), so it wins
# whenever it reads the bytes about as cleanly as the top guess.
_WESTERN_CHAOS_MARGIN = 0.1
_MULTI_BYTE_PREFIXES = ("utf", "big5", "gb", "euc", "shift_jis", "cp932", "cp949", "cp950", "iso2022", "hz", "johab")
_DECLARED_CHARSET = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)


def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode_text(data: bytes, declared_charset: str | None = None) -> tuple[str, str] | None:
    """The text and the encoding it was read with, or None when the bytes are not text."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _unless_binary(data.decode(encoding), encoding.removesuffix("-sig"))
            except UnicodeDecodeError:
                return None
    # Valid UTF-8 with any non-ASCII byte is UTF-8 beyond reasonable doubt, whatever a header
    # claims; it is also by far the commonest case and costs one decode. (UTF-16 text without
    # a BOM is valid UTF-8 too, full of NULs: the binary check sends it on to detection.)
    try:
        decoded = _unless_binary(data.decode("utf-8"), "ascii" if data.isascii() else "utf-8")
    except UnicodeDecodeError:
        decoded = None
    if decoded is not None:
        return decoded
    codec = _codec(declared_charset) if declared_charset else None
    if codec == "iso8859-1":  # as browsers read it: the C1 range is windows-1252 punctuation
        codec = _WESTERN
    if codec and not codec.startswith("utf"):
        try:
            decoded = _unless_binary(data.decode(codec), codec)
        except UnicodeDecodeError:
            decoded = None
        if decoded is not None:
            return decoded

    import charset_normalizer

    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        return None
    best = matches[0]
    if not best.encoding.startswith(_MULTI_BYTE_PREFIXES):
        western = next((m for m in matches if _codec(m.encoding) == _WESTERN), None)
        if western is not None and western.chaos <= best.chaos + _WESTERN_CHAOS_MARGIN:
            best = western
    return _unless_binary(str(best), _codec(best.encoding) or best.encoding)


# A single-byte code page decodes any bytes; what tells binary from text is how much of the
# result is control characters or replacement marks.
_BINARY_MARKS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")
_MAX_BINARY_FRACTION = 0.02


def _unless_binary(text: str, encoding: str) -> tuple[str, str] | None:
    sample = text[:65536]
    if sample and len(_BINARY_MARKS.findall(sample)) > _MAX_BINARY_FRACTION * len(sample):
        return None
    return text, encoding


def _declared_charset(upload: _Upload, sniff_html: bool = False) -> str | None:
    found = _DECLARED_CHARSET.search(upload.raw_mime.encode("ascii", "ignore"))
    if found is None and sniff_html:
        found = _DECLARED_CHARSET.search(upload.data[:4096])
    return found.group(1).decode("ascii") if found else None


def _decode_or_fail(upload: _Upload, sniff_html: bool = False) -> tuple[str, str] | Extraction:
    decoded = _decode_text(upload.data, _declared_charset(upload, sniff_html))
    if decoded is None:
        return upload.failed(f"declared {upload.declared} but bytes are not text", "charset-normalizer")
    return decoded


# --- PDF --------------------------------------------------------------------------------

# PDFium is not thread-safe, not even across different documents (pypdfium2 documents
# this), and Dagster's in-process executor or a caller's thread pool may extract PDFs
# concurrently: every PDFium call happens under this lock.
_PDFIUM_LOCK = threading.Lock()
# The spec allows junk before the header; readers look at the first kilobyte.
_PDF_HEADER_WINDOW = 1024
_MAX_TOC_ENTRIES = 10_000


class _Encrypted(Exception):
    pass


def _extract_pdf(upload: _Upload) -> Extraction:
    if b"%PDF-" not in upload.data[:_PDF_HEADER_WINDOW]:
        return upload.failed(f"declared {upload.declared} but bytes are not a PDF", "")
    import pypdfium2

    try:
        with _PDFIUM_LOCK:
            pages, meta = _pdf_pages_pdfium(upload.data)
        extractor = "pypdfium2"
    except _Encrypted as exc:
        return upload.failed(str(exc) or "encrypted PDF", "pypdfium2")
    except pypdfium2.PdfiumError as pdfium_error:
        # pypdf reads some files with damaged cross-reference tables that PDFium refuses.
        try:
            pages, meta = _pdf_pages_pypdf(upload.data)
        except _Encrypted as exc:
            return upload.failed(str(exc) or "encrypted PDF", "pypdf")
        except _pypdf_errors() as pypdf_error:
            reason = _pdfium_reason(pdfium_error)
            pypdf_reason = f"{type(pypdf_error).__name__}: {pypdf_error}"
            return upload.failed(f"corrupt PDF: {reason} (pypdf: {pypdf_reason})", "pypdf")
        extractor = "pypdf"

    if not pages:
        return upload.failed("PDF has no pages", extractor, pages=0)
    pieces = [(_dehyphenate(text), number, heading) for number, (text, heading) in enumerate(pages, start=1)]
    result = upload.ok(extractor, pieces, pages=len(pages), **meta)
    if not result.text:
        return upload.failed("no text layer (scanned PDF; OCR not available)", extractor, pages=len(pages), **meta)
    return replace(result, metadata=result.metadata | {"pages_with_text": len(result.sections)})


# PDFium marks a word hyphenated at a line end with U+0002 (older builds U+FFFE); the word
# is one word again for search.
_SOFT_HYPHEN_BREAK = re.compile(r"[\x02\ufffe\u00ad]\r?\n")


def _dehyphenate(text: str) -> str:
    return _SOFT_HYPHEN_BREAK.sub("", text)


def _pdfium_reason(error: Exception) -> str:
    message = str(error)
    found = re.search(r"PDFium: ([^)]*)", message)
    return found.group(1) if found else message


def _pdf_pages_pdfium(data: bytes) -> tuple[list[tuple[str, str | None]], dict[str, Any]]:
    import pypdfium2
    import pypdfium2.raw as pdfium_c

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise _Encrypted("encrypted PDF") from exc
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise _Encrypted("encrypted PDF (unsupported security handler)") from exc
        raise
    try:
        headings = _pdf_headings_pdfium(document)
        pages: list[tuple[str, str | None]] = []
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_bounded()
                finally:
                    textpage.close()
            finally:
                page.close()
            pages.append((text, _heading_for_page(headings, index)))
        return pages, _title(document.get_metadata_value("Title"))
    finally:
        document.close()


def _pdf_headings_pdfium(document: Any) -> list[tuple[int, int, str]]:
    """(page index, outline order, title) of the outline entries, sorted by page."""
    import pypdfium2

    entries: list[tuple[int, int, str]] = []
    try:
        for order, bookmark in enumerate(document.get_toc()):
            if order >= _MAX_TOC_ENTRIES:
                break
            destination = bookmark.get_dest()
            title = (bookmark.get_title() or "").strip()
            if destination is None or not title:
                continue
            index = destination.get_index()
            if index is not None and index >= 0:
                entries.append((index, order, title))
    except pypdfium2.PdfiumError:
        # A broken outline costs us headings, not the text.
        return []
    entries.sort()
    return entries


def _heading_for_page(headings: list[tuple[int, int, str]], page_index: int) -> str | None:
    # The last outline entry pointing at this page or before it: the section the page is in
    # (for a page where a chapter starts, that chapter).
    position = bisect.bisect_right(headings, (page_index, _MAX_TOC_ENTRIES, ""))
    return headings[position - 1][2] if position else None


@cache
def _pypdf_errors() -> tuple[type[BaseException], ...]:
    from pypdf.errors import PyPdfError

    # pypdf's parser lets internal errors of many kinds escape on malformed files (it is a
    # pure-Python reader over hostile input); these are the kinds it is known to raise.
    return (
        PyPdfError,
        ValueError,
        LookupError,
        TypeError,
        AttributeError,
        ArithmeticError,
        AssertionError,
        RecursionError,
        NotImplementedError,
        OSError,
        EOFError,
        struct.error,
        zlib.error,
    )


def _pdf_pages_pypdf(data: bytes) -> tuple[list[tuple[str, str | None]], dict[str, Any]]:
    from pypdf import PasswordType, PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        # An owner password alone (permissions) decrypts with the empty user password.
        raise _Encrypted("encrypted PDF")
    pages = [(page.extract_text() or "", None) for page in reader.pages]
    return pages, _title(str(reader.metadata.title or "") if reader.metadata is not None else None)


# --- HTML -------------------------------------------------------------------------------

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_FALLBACK_DROP = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg")
_BLOCK_TAGS = frozenset(
    "address article blockquote br dd details div dl dt figcaption figure h1 h2 h3 h4 h5 h6 hr li main ol p pre "
    "section summary table td th tr ul".split()
)


def _extract_html(upload: _Upload) -> Extraction:
    decoded = _decode_or_fail(upload, sniff_html=True)
    if isinstance(decoded, Extraction):
        return decoded
    source, encoding = decoded
    # lxml refuses a str that still carries an encoding declaration; the bytes are decoded.
    source = _XML_DECLARATION.sub("", source, count=1)
    meta: dict[str, Any] = {"encoding": encoding}

    from lxml import etree
    from lxml import html as lxml_html

    tree = None
    if source.strip():
        try:
            tree = lxml_html.document_fromstring(source)
        except (etree.ParserError, etree.XMLSyntaxError, ValueError):
            tree = None
    if tree is not None:
        meta |= _html_head_metadata(tree)

    pieces = _html_sections_trafilatura(source)
    extractor = "trafilatura"
    if not pieces and tree is not None:
        pieces = _html_body_text(tree)
        extractor = "lxml"
    result = upload.ok(extractor, pieces, **meta)
    if not result.text:
        return upload.failed("no text content in HTML", extractor, **meta)
    return result


def _html_head_metadata(tree: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    meta |= _title("".join(tree.xpath("//head/title//text()") or tree.xpath("//title//text()")))
    language = (tree.get("lang") or tree.get("{http://www.w3.org/XML/1998/namespace}lang") or "").strip()
    if re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*", language):
        meta["language"] = language.replace("_", "-").split("-")[0].lower()
    return meta


def _html_sections_trafilatura(source: str) -> list[tuple[str, None, str | None]]:
    import trafilatura

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            document = trafilatura.bare_extraction(
                source,
                include_comments=False,
                include_tables=True,
                include_images=False,
                include_links=False,
                include_formatting=False,
                with_metadata=False,
                deduplicate=False,
            )
        except (ValueError, TypeError, LookupError, RecursionError):
            # trafilatura catches its own parsing failures and returns None; what escapes is a
            # document its tree code cannot walk, which the body-text fallback still reads.
            return []
    body = getattr(document, "body", None)
    if body is None:
        return []

    # trafilatura's XML keeps headings as <head> elements: they open sections.
    pieces: list[tuple[str, None, str | None]] = []
    heading: str | None = None
    blocks: list[str] = []
    for element in body:
        if not isinstance(element.tag, str):
            continue
        if element.tag == "head":
            if blocks:
                pieces.append(("\n\n".join(blocks), None, heading))
            heading = _collapse_spaces("".join(element.itertext())) or None
            blocks = [heading] if heading else []
            continue
        lines = [line for line in _xml_lines(element) if line]
        if lines:
            blocks.append("\n".join(lines))
    if blocks:
        pieces.append(("\n\n".join(blocks), None, heading))
    return pieces


_XML_BLOCKS = frozenset({"p", "list", "item", "table", "quote", "code", "head", "div", "section"})


def _xml_lines(element: Any) -> Iterator[str]:
    """Readable lines of one trafilatura block: list items and table rows on lines of their own."""
    tag = element.tag
    if tag == "list":
        for item in element:
            if isinstance(item.tag, str):
                yield from _xml_lines(item)
    elif tag == "table":
        for row in element.iter("row"):
            cells = [_collapse_spaces("".join(cell.itertext())) for cell in row if isinstance(cell.tag, str)]
            line = " | ".join(cell for cell in cells if cell)
            if line:
                yield line
    elif tag == "code":
        yield "".join(element.itertext()).strip("\n")
    else:
        # Inline text joined; nested blocks and <lb/> break the line.
        current: list[str] = [element.text or ""]
        for child in element:
            if isinstance(child.tag, str) and child.tag in _XML_BLOCKS:
                yield _collapse_spaces("".join(current))
                current = []
                yield from _xml_lines(child)
            elif child.tag == "lb":
                yield _collapse_spaces("".join(current))
                current = []
            elif isinstance(child.tag, str):
                current.append("".join(child.itertext()))
            current.append(child.tail or "")
        yield _collapse_spaces("".join(current))


def _html_body_text(tree: Any) -> list[tuple[str, None, None]]:
    """The visible text of the body, for pages trafilatura finds no main content in."""
    body = tree.find(".//body")
    root = body if body is not None else tree
    for element in list(root.iter(*_FALLBACK_DROP)):
        if element is not root:
            element.drop_tree()
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag in _BLOCK_TAGS:
            element.tail = "\n" + (element.tail or "")
    text = root.text_content()
    lines = (_collapse_spaces(line) for line in text.split("\n"))
    return [("\n".join(line for line in lines if line), None, None)]


# --- Markdown ---------------------------------------------------------------------------

_FRONT_MATTER = re.compile(
    r"\A---[ \t]*\n"
    r"((?:[A-Za-z_][\w-]*[ \t]*:.*\n|[ \t#-].*\n|\n)*?)"  # key: value, indented or list lines, comments
    r"(?:---|\.\.\.)[ \t]*(?:\n|\Z)"
)
_FRONT_MATTER_TITLE = re.compile(r"^title[ \t]*:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_HTML_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.DOTALL)


def _extract_markdown(upload: _Upload) -> Extraction:
    decoded = _decode_or_fail(upload)
    if isinstance(decoded, Extraction):
        return decoded
    source, encoding = decoded
    meta: dict[str, Any] = {"encoding": encoding}

    # Static-site front matter (YAML between --- lines) is configuration, not prose; CommonMark
    # would read it as a thematic break and a setext heading.
    front = _FRONT_MATTER.match(source.lstrip("\ufeff"))
    if front:
        title = _FRONT_MATTER_TITLE.search(front.group(1))
        if title:
            meta |= _title(title.group(1).strip("'\" "))
        source = source.lstrip("\ufeff")[front.end() :]

    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    pieces, first_title = _markdown_sections(parser.parse(source))
    if first_title and "title" not in meta:
        meta |= _title(first_title)
    result = upload.ok("markdown-it-py", pieces, **meta)
    if not result.text:
        return upload.failed("no text content in Markdown", "markdown-it-py", **meta)
    return result


def _markdown_sections(tokens: list[Any]) -> tuple[list[tuple[str, None, str | None]], str | None]:
    pieces: list[tuple[str, None, str | None]] = []
    heading: str | None = None
    first_title: str | None = None
    blocks: list[str] = []
    list_depth = 0
    list_lines: list[str] = []
    row: list[str] = []
    table_lines: list[str] = []
    in_table = False
    in_heading = ""  # the tag (h1..h6) of the heading being read

    def add_block(text: str) -> None:
        if in_table:
            row.append(_collapse_spaces(text))
        elif list_depth:
            list_lines.append(text)
        else:
            blocks.append(text)

    for token in tokens:
        kind = token.type
        if kind == "heading_open":
            if blocks:
                pieces.append(("\n\n".join(blocks), None, heading))
            blocks = []
            in_heading = token.tag
        elif kind == "heading_close":
            in_heading = ""
        elif kind == "inline":
            text = _markdown_inline(token.children or [])
            if in_heading:
                heading = _collapse_spaces(text) or None
                if heading:
                    blocks.append(heading)
                    if first_title is None and in_heading == "h1":
                        first_title = heading
            elif text.strip() or in_table:
                add_block(text)
        elif kind in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
            if not list_depth and list_lines:
                blocks.append("\n".join(list_lines))
                list_lines = []
        elif kind == "table_open":
            in_table = True
        elif kind == "tr_close":
            line = " | ".join(cell for cell in row if cell)
            if line:
                table_lines.append(line)
            row = []
        elif kind == "table_close":
            in_table = False
            if table_lines:
                add_block("\n".join(table_lines))
            table_lines = []
        elif kind in ("fence", "code_block"):
            if token.content.strip():
                add_block(token.content.strip("\n"))
        elif kind == "html_block":
            text = _collapse_spaces(html.unescape(_HTML_TAG.sub(" ", token.content)))
            if text:
                add_block(text)
    if blocks:
        pieces.append(("\n\n".join(blocks), None, heading))
    return pieces, first_title


def _markdown_inline(children: list[Any]) -> str:
    parts: list[str] = []
    for child in children:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "image":
            parts.append(_markdown_inline(child.children or []))
        # Emphasis, links and inline HTML markers carry no text of their own: the words
        # between them are text tokens, and a link keeps its words, not its URL.
    return "".join(parts)


# --- plain text -------------------------------------------------------------------------


def _extract_text(upload: _Upload) -> Extraction:
    decoded = _decode_or_fail(upload)
    if isinstance(decoded, Extraction):
        return decoded
    text, encoding = decoded
    # One section: plain text has no structure to cite, and the chunker already cuts at
    # paragraph breaks first.
    result = upload.ok("charset-normalizer", [(text, None, None)], encoding=encoding)
    if not result.text:
        return upload.failed("no text content", "charset-normalizer", encoding=encoding)
    return result


# --- office documents -------------------------------------------------------------------


def _extract_document(upload: _Upload) -> Extraction:
    # No Word/OpenDocument reader is installed and the platform does not take a dependency
    # for one; such uploads are kept and reported, and can be re-extracted when one exists.
    return upload.failed(f"unsupported document format ({upload.declared}); no document extractor installed", "")


# --- images -----------------------------------------------------------------------------

# Formats a browser or camera produces. Pillow also knows headerless formats (TGA, raw
# scientific formats) that happily "decode" random bytes; an upload claiming to be an
# image should be one of these.
_IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "ICO", "AVIF", "JPEG2000")
# Decoding every pixel proves the file is intact, but for very large images the memory
# (4 bytes a pixel) is not worth it: above this, Pillow's structural check has to do.
_FULL_DECODE_PIXELS = 50_000_000
_SVG_ROOT = re.compile(rb"<svg\b([^>]*)>", re.IGNORECASE)
_SVG_SIZE = re.compile(rb"""\b(width|height)\s*=\s*["']\s*([0-9.]+)\s*(px)?\s*["']""", re.IGNORECASE)
_SVG_VIEWBOX = re.compile(
    rb"""\bviewBox\s*=\s*["']\s*[-0-9.]+[\s,]+[-0-9.]+[\s,]+([0-9.]+)[\s,]+([0-9.]+)""", re.IGNORECASE
)


def _extract_image(upload: _Upload) -> Extraction:
    if upload.mime == "image/svg+xml" or upload.data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return _svg_metadata(upload)

    from PIL import Image, UnidentifiedImageError

    declared = f"declared {upload.declared} but bytes are not a decodable image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data), formats=_IMAGE_FORMATS) as image:
                width, height = image.size
                meta: dict[str, Any] = {
                    "width": width,
                    "height": height,
                    "format": image.format,
                    "mode": image.mode,
                    "frames": getattr(image, "n_frames", 1),
                }
                mime = image.get_format_mimetype()
                if mime:
                    meta["mime_type"] = mime
                if width * height <= _FULL_DECODE_PIXELS:
                    image.load()
                else:
                    image.verify()
    except Image.DecompressionBombError as exc:
        return upload.failed(f"image too large to decode safely ({exc})", "pillow")
    except UnidentifiedImageError:
        return upload.failed(declared, "pillow")
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error) as exc:
        # Pillow's plugins report damage as OSError ("image file is truncated") and, for
        # some formats, SyntaxError or ValueError from the header parser.
        return upload.failed(f"{declared} ({type(exc).__name__}: {exc})", "pillow")
    if width <= 0 or height <= 0:
        return upload.failed(f"{declared} (size {width}x{height})", "pillow")
    return upload.metadata_only("pillow", **meta)


def _svg_metadata(upload: _Upload) -> Extraction:
    # Pillow cannot read SVG, and parsing untrusted XML is not worth it for a size: the root
    # tag's attributes say it.
    root = _SVG_ROOT.search(upload.data[:4096])
    if root is None:
        return upload.failed(f"declared {upload.declared} but bytes are not an SVG image", "")
    meta: dict[str, Any] = {"format": "SVG", "mime_type": "image/svg+xml"}
    attributes = root.group(1)
    sizes = {name.lower().decode(): float(value) for name, value, _ in _SVG_SIZE.findall(attributes)}
    viewbox = _SVG_VIEWBOX.search(attributes)
    if viewbox:
        sizes.setdefault("width", float(viewbox.group(1)))
        sizes.setdefault("height", float(viewbox.group(2)))
    for name in ("width", "height"):
        if name in sizes:
            meta[name] = round(sizes[name])
    return upload.metadata_only("svg", **meta)


# --- video ------------------------------------------------------------------------------


def _extract_video(upload: _Upload) -> Extraction:
    import av

    declared = f"declared {upload.declared} but bytes are not a decodable video"
    try:
        with av.open(io.BytesIO(upload.data), mode="r") as container:
            if not container.streams.video:
                return upload.failed(f"declared {upload.declared} but the file has no video stream", "av")
            stream = container.streams.video[0]
            codec = stream.codec_context
            if codec is None:  # FFmpeg has no decoder for the stream's codec
                return upload.failed(f"{declared} (unknown video codec)", "av")
            meta: dict[str, Any] = {
                "container": container.format.name if container.format else None,
                "codec": codec.name,
                "width": codec.width,
                "height": codec.height,
            }
            duration = None
            if container.duration is not None and container.duration > 0:
                duration = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            if duration is not None:
                meta["duration_seconds"] = round(duration, 3)
            if stream.frames:
                meta["frames"] = stream.frames
            if stream.average_rate:
                meta["fps"] = round(float(stream.average_rate), 3)
            if container.streams.audio:
                meta["audio_codec"] = container.streams.audio[0].codec_context.name
            # Opening only reads headers; decoding one frame proves the stream is usable.
            frame = next(container.decode(stream), None)
            if frame is None:
                return upload.failed(f"{declared} (no frame could be decoded)", "av")
            if not meta["width"] or not meta["height"]:
                meta["width"], meta["height"] = frame.width, frame.height
    except av.error.FFmpegError as exc:
        return upload.failed(f"{declared} ({type(exc).__name__}: {exc})", "av")
    except (OSError, ValueError, EOFError, IndexError, ZeroDivisionError) as exc:
        return upload.failed(f"{declared} ({type(exc).__name__}: {exc})", "av")
    return upload.metadata_only("av", **meta)


_EXTRACTORS = {
    ContentType.PDF: _extract_pdf,
    ContentType.DOCUMENT: _extract_document,
    ContentType.MARKDOWN: _extract_markdown,
    ContentType.HTML: _extract_html,
    ContentType.TEXT: _extract_text,
    ContentType.IMAGE: _extract_image,
    ContentType.VIDEO: _extract_video,
}
