"""Turn a response body into readable text and a title, whatever the server said it was.

The agent reads pages as Markdown-ish text: HTML goes through trafilatura (main content only, headings
and tables kept, navigation and footers dropped), PDFs through pypdf, text and JSON pass through. The
functions here are pure — bytes in, strings out — so the HTTP fetcher and the local index share them
and tests need no server. Anything we cannot read raises ``FetchError`` naming the content type, so the
model learns why a URL gave nothing instead of receiving an empty page.
"""

from __future__ import annotations

import codecs
import functools
import io
import json
import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from deepresearch.errors import FetchError

if TYPE_CHECKING:
    from trafilatura.settings import Extractor

Kind = Literal["html", "pdf", "json", "text"]

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
_JSON_TYPES = frozenset({"application/json", "text/json"})
_TEXT_TYPES = frozenset({"application/xml", "application/x-ndjson", "application/jsonl"})
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
    ".csv": "text",
}
_MARKDOWN_TYPES = frozenset({"text/markdown", "text/x-markdown"})
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)
_ATX_TITLE_RE = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_WHITESPACE_RE = re.compile(r"\s+")
_TITLE_MAX_CHARS = 200


def extract(body: bytes, content_type: str, url: str) -> tuple[str, str]:
    """``(title, text)`` of a document; raises ``FetchError`` for content we cannot read."""
    kind = detect_kind(body, content_type, url)
    if kind is None:
        mime = _mime(content_type) or "unknown"
        raise FetchError(f"unsupported content type {mime!r} at {url}")
    charset = _charset(content_type)
    if kind == "pdf":
        return _extract_pdf(body, url)
    if kind == "html":
        return _extract_html(decode_text(body, charset or _meta_charset(body)))
    text = decode_text(body, charset)
    if kind == "json":
        return _extract_json(text, url)
    is_markdown = _mime(content_type) in _MARKDOWN_TYPES or _suffix(url) in (".md", ".markdown")
    return _text_title(text, markdown=is_markdown), text.strip()


def detect_kind(body: bytes, content_type: str, url: str) -> Kind | None:
    """Which extractor applies: the PDF magic wins, then the content type, then the URL suffix."""
    # Servers label PDFs as octet-stream (or HTML, behind download pages); the magic number does not lie.
    if b"%PDF-" in body[:1024]:
        return "pdf"
    mime = _mime(content_type)
    if mime in _HTML_TYPES:
        return "html"
    if mime in _PDF_TYPES:
        return "pdf"  # without the magic number pypdf will say what is wrong with it
    if mime in _JSON_TYPES or mime.endswith("+json"):
        return "json"
    if mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith("+xml"):
        return "text"
    if mime in _UNTYPED:
        kind = _SUFFIX_KINDS.get(_suffix(url))
        if kind is not None:
            return kind
        head = body[:512].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            return "html"
    return None


def decode_text(body: bytes, charset: str | None) -> str:
    """Decode by byte-order mark, then the declared charset, then UTF-8; bad bytes become U+FFFD."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(encoding, errors="replace")
    if charset:
        try:
            return body.decode(codecs.lookup(charset).name, errors="replace")
        except LookupError:
            pass
    return body.decode("utf-8", errors="replace")


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


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET_RE.search(body[:4096])
    return match.group(1).decode("ascii") if match else None


def _suffix(url: str) -> str:
    path = unquote(urlsplit(url).path).lower()
    name = path.rsplit("/", 1)[-1]
    return name[name.rfind(".") :] if "." in name else ""


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


@functools.cache
def _html_options() -> Extractor:
    """trafilatura's extraction settings, built once and shared (trafilatura copies before changing them)."""
    from trafilatura.settings import Extractor

    return Extractor(output_format="markdown", recall=True, comments=False, tables=True, formatting=True)


def _extract_html(html: str) -> tuple[str, str]:
    import trafilatura

    tree = trafilatura.load_html(html)
    title = ""
    text = ""
    if tree is not None:
        title_element = tree.find(".//title")
        if title_element is not None:
            title = _one_line(title_element.text_content())
        text = trafilatura.extract(tree, options=_html_options()) or ""
    if not text.strip():
        text = strip_tags(html)
    if not title:
        title = _text_title(text, markdown=True)
    return title, text.strip()


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
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
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
