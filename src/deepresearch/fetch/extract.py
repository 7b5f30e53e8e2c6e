"""Turn a response body into readable text and a title, whatever the server said it was.

The agent reads pages as Markdown-ish text: HTML goes through trafilatura (main content only, headings
and tables kept, navigation and footers dropped, the publication date taken from the page's
metadata), PDFs through pypdf, Word documents natively and slides/spreadsheets through markitdown
(``office.py``), CSV becomes a Markdown table, text and JSON pass through. The functions here are pure
— bytes in, strings out — so the HTTP fetcher and the local index share them and tests need no server.

Servers lie about what they send, so the body has the first word: magic bytes win over the declared
type (a PDF or a DOCX behind ``text/html`` or ``application/octet-stream``, an image behind
``text/html``), and text is decoded as a browser would (``charset.py``: byte-order mark, declared
charset, UTF-8, then a statistical guess).
Anything we cannot read — an unsupported type, a damaged file, a page with no text at all — raises
``FetchError`` naming the URL and the reason, so the model learns why a URL gave nothing instead of
receiving an empty page.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import re
import threading
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from deepresearch.errors import FetchError
from deepresearch.fetch.charset import declared_charset, decode_text
from deepresearch.fetch.office import docx_to_markdown, markdown_table, markitdown_to_markdown, office_kind
from deepresearch.lifecycle import freeze_long_lived, is_one_shot

if TYPE_CHECKING:
    from trafilatura.settings import Extractor

logger = logging.getLogger(__name__)

Kind = Literal["html", "pdf", "json", "text", "csv", "docx", "pptx", "xlsx"]

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TABLE_MAX_CHARS = 300_000
"""Larger CSV files stay plain text: a huge table helps nobody and costs a lot to render."""
CSV_TABLE_MAX_ROWS = 2_000

_MIME_KINDS: dict[str, Kind] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "application/json": "json",
    "text/json": "json",
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/xml": "text",
    "application/x-ndjson": "text",
    "application/jsonl": "text",
    DOCX_TYPE: "docx",
    PPTX_TYPE: "pptx",
    XLSX_TYPE: "xlsx",
}
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown"})
_SUFFIX_KINDS: dict[str, Kind] = {
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
    ".json": "json",
    ".md": "text",
    ".markdown": "text",
    ".txt": "text",
    ".rst": "text",
    ".csv": "csv",
    ".tsv": "csv",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
}
_MARKDOWN_TYPES = frozenset({"text/markdown", "text/x-markdown"})
_OFFICE_KINDS: frozenset[Kind | None] = frozenset({"docx", "pptx", "xlsx"})
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"RIFF", "a RIFF (WebP, WAV or AVI) file"),
    (b"\x1f\x8b", "gzip data"),
    (b"PK\x03\x04", "a zip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "an executable"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
    (b"\x00\x00\x01\x00", "an icon"),
    (b"wOFF", "a web font"),
    (b"wOF2", "a web font"),
)
_ATX_TITLE_RE = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_WHITESPACE_RE = re.compile(r"\s+")
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
_TITLE_MAX_CHARS = 200
_EMPTY_REASONS: dict[Kind, str] = {
    "html": "the page has no readable text (it may need JavaScript, or be a login or consent wall)",
    "pdf": "the PDF has no text layer (a scan without OCR?)",
}


@dataclass(frozen=True, slots=True)
class Extracted:
    """What a document says: its title, its text (Markdown-ish), its date if stated, and its kind."""

    title: str
    text: str
    published: str = ""
    """``YYYY-MM-DD`` from the document's metadata, else empty."""
    kind: Kind = "text"


def extract(body: bytes, content_type: str, url: str) -> tuple[str, str]:
    """``(title, text)`` of a document; raises ``FetchError`` for content we cannot read."""
    document = extract_document(body, content_type, url)
    return document.title, document.text


def extract_document(body: bytes, content_type: str, url: str) -> Extracted:
    """Title, text and date of a document; raises ``FetchError`` naming ``url`` when it has no text."""
    kind = detect_kind(body, content_type, url)
    if kind is None:
        mime = _mime(content_type) or "unknown"
        what = _binary_name(body)
        detail = f" (the body is {what})" if what else ""
        raise FetchError(f"unsupported content type {mime!r} at {url}{detail}")
    document = _extract(kind, body, content_type, url)
    if not document.text.strip():
        reason = _EMPTY_REASONS.get(kind, "the document is empty")
        raise FetchError(f"no readable text at {url}: {reason}")
    return document


def _extract(kind: Kind, body: bytes, content_type: str, url: str) -> Extracted:
    charset = _charset(content_type)
    if kind == "pdf":
        return Extracted(*_extract_pdf(body, url), kind=kind)
    if kind == "docx":
        return Extracted(*docx_to_markdown(body, url), kind=kind)
    if kind in ("pptx", "xlsx"):
        return Extracted(*markitdown_to_markdown(body, kind, url), kind=kind)
    if kind == "html":
        return _extract_html(decode_text(body, charset or declared_charset(body)), url)
    if charset is None and _mime(content_type).endswith("xml"):
        charset = declared_charset(body)
    text = decode_text(body, charset)
    if kind == "json":
        return Extracted(*_extract_json(text, url), kind=kind)
    if kind == "csv":
        tab = _mime(content_type) == "text/tab-separated-values" or _suffix(url) == ".tsv"
        table = csv_to_markdown(text, delimiter="\t" if tab else None)
        return Extracted(_url_name(url), table if table is not None else text.strip(), kind=kind)
    is_markdown = _mime(content_type) in _MARKDOWN_TYPES or _suffix(url) in (".md", ".markdown")
    return Extracted(_text_title(text, markdown=is_markdown), text.strip(), kind=kind)


def detect_kind(body: bytes, content_type: str, url: str) -> Kind | None:
    """Which extractor applies: magic bytes first, then the content type, then the URL suffix, then
    a look at the body; ``None`` for content we do not read (images, archives, media)."""
    # Servers label PDFs as octet-stream (or HTML, behind download pages); the magic number does not lie.
    if b"%PDF-" in body[:1024]:
        return "pdf"
    office = office_kind(body)
    if office is not None:
        return office
    mime = _mime(content_type)
    kind = _MIME_KINDS.get(mime)
    binary = _binary_name(body)
    if binary is not None:
        # A damaged Office file is still reported as one (its extractor says what is wrong).
        declared = kind or (_SUFFIX_KINDS.get(_suffix(url)) if mime in _UNTYPED else None)
        return declared if binary == "a zip archive" and declared in _OFFICE_KINDS else None
    if kind is None:
        if mime.endswith("+json"):
            kind = "json"
        elif mime.startswith("text/") or mime.endswith("+xml"):
            kind = "text"
    if kind == "text" and mime == "text/plain" and _SUFFIX_KINDS.get(_suffix(url)) in ("csv", "json"):
        return _SUFFIX_KINDS[_suffix(url)]  # raw file hosts serve every file as text/plain
    if kind == "html" and _looks_like_json(body):
        return "json"  # APIs behind frameworks that label everything text/html
    if kind is not None or mime not in _UNTYPED:
        return kind
    by_suffix = _SUFFIX_KINDS.get(_suffix(url))
    if by_suffix is not None:
        return by_suffix
    head = body[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    if _looks_like_json(body):
        return "json"
    return "text" if _looks_like_text(body) else None


def csv_to_markdown(text: str, *, delimiter: str | None = None) -> str | None:
    """A CSV document as a Markdown table, or ``None`` when it is too big or not really a table."""
    if len(text) > CSV_TABLE_MAX_CHARS:
        return None
    try:
        if delimiter is None:
            try:
                delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
            except csv.Error:
                delimiter = ","
        rows = [
            row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in row)
        ]
    except csv.Error:
        return None
    if not rows or len(rows) > CSV_TABLE_MAX_ROWS or max(len(row) for row in rows) < 2:
        return None
    return markdown_table([[" ".join(cell.split()).replace("|", "\\|") for cell in row] for row in rows])


def strip_tags(html: str) -> str:
    """Visible text of HTML with headings as ``#`` lines: the fallback when trafilatura finds nothing."""
    parser = _TextCollector()
    parser.feed(html)
    parser.close()
    return parser.text()


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None


def _binary_name(body: bytes) -> str | None:
    """What a binary body is, by its magic number, or ``None`` when it may be text."""
    for magic, name in _BINARY_MAGIC:
        if body.startswith(magic):
            return name
    if body[4:8] == b"ftyp":
        return "an MP4 or QuickTime video"
    return None


def _looks_like_text(body: bytes) -> bool:
    head = body[:4096]
    if not head or b"\x00" in head:
        return False
    return len(_CONTROL_RE.findall(head)) <= len(head) // 100


def _looks_like_json(body: bytes) -> bool:
    head = body[:64].lstrip()
    if not head.startswith((b"{", b"[")) or len(body) > 20_000_000:
        return False
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _suffix(url: str) -> str:
    path = unquote(urlsplit(url).path).lower()
    name = path.rsplit("/", 1)[-1]
    return name[name.rfind(".") :] if "." in name else ""


def _url_name(url: str) -> str:
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _TITLE_MAX_CHARS else line[: _TITLE_MAX_CHARS - 1].rstrip() + "…"


def _text_title(text: str, *, markdown: bool) -> str:
    if markdown and (match := _ATX_TITLE_RE.search(text)):
        return _one_line(match.group(1))
    for line in text.splitlines():
        if line.strip():
            return _one_line(line)
    return ""


_WARM_PARAGRAPH = (
    "<p>Retrieval systems rank passages by how well their terms match the question, and they weigh "
    "rare terms more than common ones, so that a passage naming the subject itself comes first.</p>"
)
_WARM_PAGE = (
    "<html><head><title>Warm-up</title><meta property='article:published_time' content='2024-01-02'>"
    "</head><body><nav><a href='/'>Home</a> <a href='/docs'>Docs</a></nav><article><h1>Warm-up</h1>"
    + "".join(_WARM_PARAGRAPH.replace("Retrieval", f"Retrieval ({n})") for n in range(6))
    + "<table><tr><th>term</th><th>weight</th></tr><tr><td>rare</td><td>high</td></tr></table>"
    "</article><footer>About</footer></body></html>"
)
"""An ordinary article page (dated, with a table): long enough that trafilatura keeps its own result
and never builds jusText's stoplist of every language (~35 MB) for it, as a real page would not."""
_warming: threading.Thread | None = None
_warm_lock = threading.Lock()


def warm_up() -> None:
    """Extract one small page: trafilatura, lxml and courlan are imported and the public suffix list
    parsed once, here, instead of inside the first ``batch_open`` — where three pages extracted in
    parallel each triggered the same lazy loading (a 190–260 ms CPU spike, the list parsed thrice)."""
    try:
        _extract_html(_WARM_PAGE, "https://www.example.com/2024/01/warm-up")
    except Exception:
        logger.debug("extraction warm-up failed", exc_info=True)
    freeze_long_lived()  # the modules just imported live as long as the process


def warm_up_in_background() -> None:
    """``warm_up`` once in a daemon thread, so it overlaps the first model call; a page extracted
    meanwhile waits for it (``_extract_html`` joins the thread) instead of racing it. Only in a
    one-shot process (``lifecycle``): where many runs share a process (a server, a benchmark), the
    one-time cost is paid by the first page, not by whatever runs happen to be starting."""
    global _warming
    if not is_one_shot():
        return
    with _warm_lock:
        if _warming is None:
            _warming = threading.Thread(target=warm_up, name="warm-extraction", daemon=True)
            _warming.start()


def _wait_for_warm_up() -> None:
    warming = _warming
    if warming is not None and warming is not threading.current_thread():
        warming.join()


@functools.cache
def _html_options() -> Extractor:
    """trafilatura's extraction settings, built once and shared (trafilatura copies before changing them)."""
    from trafilatura.settings import Extractor

    return Extractor(output_format="markdown", recall=True, comments=False, tables=True, formatting=True)


_MAYBE_DATED = re.compile(r"date|time|publish|created|modified|updated|issued", re.IGNORECASE)
_DATED_URL = re.compile(r"(?:19|20)\d\d[/_.-]?[01]?\d")


def _may_carry_a_date(html: str, url: str) -> bool:
    """Whether metadata extraction could find a date: every place it looks with extensive search off
    (meta tags, JSON-LD, ``<time>``, date-named attributes, the URL) names one of these words or is
    the URL; a page that has none is not worth its ~1 ms."""
    return bool(_MAYBE_DATED.search(html) or _DATED_URL.search(url))


def _extract_html(html: str, url: str) -> Extracted:
    _wait_for_warm_up()
    import trafilatura
    from trafilatura.metadata import extract_metadata

    tree = trafilatura.load_html(html)
    title = ""
    text = ""
    published = ""
    if tree is not None:
        title_element = tree.find(".//title")
        if title_element is not None:
            title = _one_line(title_element.text_content())
        # Only what the page states (meta tags, JSON-LD, <time>, the URL), not dates guessed from text.
        # (date_config rather than trafilatura 2's ``extensive``, so trafilatura 1.x works too.)
        if _may_carry_a_date(html, url):
            dates = {"original_date": True, "extensive_search": False}
            published = extract_metadata(tree, default_url=url, date_config=dates).date or ""
        text = trafilatura.extract(tree, options=_html_options()) or ""
    if not text.strip():
        text = strip_tags(html)
    if not title:
        title = _text_title(text, markdown=True)
    return Extracted(title, text.strip(), published, "html")


def _extract_pdf(body: bytes, url: str) -> tuple[str, str]:
    from pypdf import PdfReader

    # pypdf raises many exception types on damaged files; at this boundary they all mean
    # "this PDF cannot be read", which the model should hear as a FetchError.
    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            raise FetchError(f"PDF at {url} is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        metadata = reader.metadata
        meta_title = metadata.title if metadata is not None else None
    except FetchError:
        raise
    except Exception as exc:
        raise FetchError(f"could not read PDF at {url}: {exc}") from exc
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    title = _one_line(meta_title) if isinstance(meta_title, str) and meta_title.strip() else ""
    return title or _text_title(text, markdown=False), text


def _extract_json(text: str, url: str) -> tuple[str, str]:
    name = _url_name(url)
    try:
        data = json.loads(text)
    except ValueError:
        return name, text.strip()
    return name, json.dumps(data, indent=2, ensure_ascii=False)


class _TextCollector(HTMLParser):
    """Collects visible text, skipping scripts and page furniture, with blank lines between blocks."""

    _SKIP = frozenset(
        {"script", "style", "noscript", "template", "svg", "head", "nav", "header", "footer", "aside", "form"}
    )
    _BLOCK = frozenset(
        {"p", "div", "section", "article", "main", "br", "li", "tr", "table", "ul", "ol", "pre", "blockquote"}
    )
    _HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag in self._HEADINGS:
            self._parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCK:
            self._parts.append("\n\n" if tag != "li" else "\n- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self._HEADINGS or tag in self._BLOCK:
            self._parts.append("" if tag == "li" else "\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._parts.append(_WHITESPACE_RE.sub(" ", data))

    def text(self) -> str:
        raw = "".join(self._parts)
        lines = [" ".join(line.split()) for line in raw.splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
