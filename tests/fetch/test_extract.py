"""Extraction from bytes: HTML main text, PDFs, text in declared and undeclared charsets, JSON."""

from __future__ import annotations

import pytest

from deepresearch.errors import FetchError
from deepresearch.fetch.extract import decode_text, detect_kind, extract, strip_tags
from tests.fakes.web_server import ARTICLE_HTML, ARTICLE_TITLE, PDF_PAGES, PDF_TITLE, make_pdf

URL = "https://notes.example.org/articles/bloom-filters"


def test_html_keeps_main_content_as_markdown_and_drops_boilerplate() -> None:
    title, text = extract(ARTICLE_HTML.encode(), "text/html; charset=utf-8", URL)
    assert title == ARTICLE_TITLE
    assert text.startswith("# Bloom filters explained")
    assert "## How insertion works" in text and "## Choosing the size" in text
    assert "| 10 | 0.8% |" in text
    assert "It never forgets an item that was added" in text
    for boilerplate in ("Sign in", "All topics", "Copyright 2024", "Newsletter", "tracking", "display: flex"):
        assert boilerplate not in text


def test_html_charset_from_meta_when_the_header_has_none() -> None:
    html = (
        '<html><head><meta charset="iso-8859-1"><title>Café notes</title></head>'
        "<body><article><p>Le café était très chaud et la crème brûlée était parfaite ce jour-là.</p>"
        "</article></body></html>"
    ).encode("latin-1")
    title, text = extract(html, "text/html", URL)
    assert title == "Café notes"
    assert "Le café était très chaud" in text


def test_html_without_title_uses_its_first_heading() -> None:
    html = b"<html><body><main><h2>Release notes</h2><p>Version 2 fixes the cache.</p></main></body></html>"
    title, text = extract(html, "text/html", URL)
    assert title == "Release notes"
    assert "Version 2 fixes the cache." in text


def test_strip_tags_fallback() -> None:
    html = """<html><head><title>x</title><style>p{}</style></head><body>
      <nav><a href="/">Home</a></nav><h1>Heading &amp; more</h1><p>First <b>bold</b> paragraph.</p>
      <script>alert(1)</script><ul><li>one</li><li>two</li></ul><br/>tail<footer>foot</footer></body></html>"""
    text = strip_tags(html)
    assert text.splitlines()[0] == "# Heading & more"
    assert "First bold paragraph." in text
    assert "- one" in text and "- two" in text and "tail" in text
    for hidden in ("Home", "alert", "foot", "p{}"):
        assert hidden not in text


def test_pdf_text_and_title() -> None:
    title, text = extract(make_pdf(PDF_TITLE, PDF_PAGES), "application/pdf", "https://example.org/paper.pdf")
    assert title == PDF_TITLE
    lines = [line for page in PDF_PAGES for line in page]
    positions = [text.index(line) for line in lines]
    assert positions == sorted(positions)
    assert "\n\n" in text  # pages are separated by a blank line


def test_pdf_without_title_metadata_uses_its_first_line() -> None:
    title, _ = extract(
        make_pdf("", [["Quarterly report (draft)", "Numbers follow."]]), "application/pdf", URL
    )
    assert title == "Quarterly report (draft)"


@pytest.mark.parametrize("content_type", ["application/octet-stream", "", "text/html", "binary/octet-stream"])
def test_pdf_is_sniffed_by_its_magic_number(content_type: str) -> None:
    title, text = extract(make_pdf(PDF_TITLE, PDF_PAGES), content_type, "https://example.org/download?id=3")
    assert title == PDF_TITLE
    assert "Virtual nodes" in text


def test_damaged_pdf_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match=r"could not read PDF at https://example\.org/x\.pdf"):
        extract(b"%PDF-1.4\nthis is not really a PDF\n%%EOF", "application/pdf", "https://example.org/x.pdf")


def test_plain_text_charsets() -> None:
    body = "Grüße aus Köln\n\nÜbermorgen wird es wärmer.".encode("latin-1")
    title, text = extract(body, "text/plain; charset=ISO-8859-1", URL)
    assert (title, text) == ("Grüße aus Köln", "Grüße aus Köln\n\nÜbermorgen wird es wärmer.")
    # No charset: UTF-8, with undecodable bytes replaced rather than failing.
    _, text = extract("naïve café".encode() + b"\xff", "text/plain", URL)
    assert text == "naïve café\ufffd"
    # A byte-order mark wins over a wrong declaration.
    assert (
        decode_text("\ufeffhello".encode("utf-16-le").replace(b"\xff\xfe\xff\xfe", b"\xff\xfe"), "utf-8")
        == "hello"
    )
    assert decode_text(b"\xef\xbb\xbfhello", None) == "hello"
    assert decode_text(b"caf\xe9", "no-such-charset") == "caf\ufffd"


def test_markdown_title_is_its_first_heading() -> None:
    body = b"Some intro line\n\n# The real title\n\nBody text."
    assert extract(body, "text/markdown", URL)[0] == "The real title"
    assert extract(body, "application/octet-stream", "https://example.org/README.md")[0] == "The real title"
    assert extract(body, "text/plain", URL)[0] == "Some intro line"


def test_json_is_pretty_printed() -> None:
    title, text = extract(
        b'{"name":"caf\\u00e9","items":[1,2]}', "application/json; charset=utf-8", "https://x.org/api/v1/item"
    )
    assert title == "item"
    assert text == '{\n  "name": "café",\n  "items": [\n    1,\n    2\n  ]\n}'
    assert extract(b"{not json", "application/problem+json", URL)[1] == "{not json"


@pytest.mark.parametrize(
    ("content_type", "url"),
    [
        ("image/png", URL),
        ("application/zip", URL),
        ("video/mp4", URL),
        ("application/octet-stream", "https://x.org/a.bin"),
    ],
)
def test_unsupported_types_are_refused(content_type: str, url: str) -> None:
    with pytest.raises(FetchError, match="unsupported content type"):
        extract(b"\x89PNG\r\n\x1a\n\x00\x00", content_type, url)


def test_detect_kind() -> None:
    assert detect_kind(b"<!DOCTYPE html><html>", "application/octet-stream", "https://x.org/page") == "html"
    assert detect_kind(b"  <html lang=en>", "", "https://x.org/page") == "html"
    assert detect_kind(b"x", "application/xhtml+xml", URL) == "html"
    assert detect_kind(b"x", "text/csv", URL) == "text"
    assert detect_kind(b"x", "application/rss+xml", URL) == "text"
    assert detect_kind(b"x", "", "https://x.org/notes.rst") == "text"
    assert detect_kind(b"x", "application/ld+json", URL) == "json"
    assert detect_kind(b"x", "image/gif", URL) is None
