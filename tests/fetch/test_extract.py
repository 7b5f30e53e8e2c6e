"""Extraction from bytes: HTML main text and date, PDFs, text in declared and undeclared charsets, JSON,
CSV, and bodies whose content type lies."""

from __future__ import annotations

import pytest

from deepresearch.errors import FetchError
from deepresearch.fetch.charset import decode_text
from deepresearch.fetch.extract import (
    CSV_TABLE_MAX_CHARS,
    CSV_TABLE_MAX_ROWS,
    csv_to_markdown,
    detect_kind,
    extract,
    extract_document,
    strip_tags,
)
from tests.fakes.web_server import (
    ARTICLE_HTML,
    ARTICLE_TITLE,
    CP1252_TEXT,
    CSV_BODY,
    DATED_HTML,
    GBK_TEXT,
    PDF_PAGES,
    PDF_TITLE,
    SJIS_TEXT,
    make_pdf,
)

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
    # An unknown charset label is ignored and the charset guessed, as browsers do.
    assert decode_text(b"caf\xe9", "no-such-charset") == "café"


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
    assert detect_kind(b"x", "text/csv", URL) == "csv"
    assert detect_kind(b"x", "application/rss+xml", URL) == "text"
    assert detect_kind(b"x", "", "https://x.org/notes.rst") == "text"
    assert detect_kind(b"x", "application/ld+json", URL) == "json"
    assert detect_kind(b"x", "image/gif", URL) is None


# --- legacy charsets


@pytest.mark.parametrize(
    ("text", "encoding", "content_type"),
    [
        (SJIS_TEXT, "shift_jis", "text/plain; charset=Shift_JIS"),
        (SJIS_TEXT, "shift_jis", "text/plain"),
        (GBK_TEXT, "gbk", "text/plain; charset=GBK"),
        (GBK_TEXT, "gbk", "text/plain; charset=gb2312"),  # a common mislabel: GBK text called GB2312
        (GBK_TEXT, "gbk", "text/plain"),
        (CP1252_TEXT, "cp1252", "text/plain; charset=windows-1252"),
        (CP1252_TEXT, "cp1252", "text/plain; charset=ISO-8859-1"),  # curly quotes only exist in cp1252
        (CP1252_TEXT, "cp1252", "text/plain"),
        (CP1252_TEXT, "utf-16", "text/plain"),  # with its byte-order mark
    ],
)
def test_legacy_charsets_decode_with_and_without_a_declaration(
    text: str, encoding: str, content_type: str
) -> None:
    body = "\n\n".join([text, text]).encode(encoding)
    title, extracted = extract(body, content_type, URL)
    assert title == text
    assert extracted == "\n\n".join([text, text])
    assert "\ufffd" not in extracted


@pytest.mark.parametrize(
    ("text", "encoding", "meta"),
    [
        (SJIS_TEXT, "shift_jis", '<meta charset="shift_jis">'),
        (GBK_TEXT, "gbk", '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">'),
        (GBK_TEXT, "gbk", ""),
        (CP1252_TEXT, "cp1252", ""),
        (SJIS_TEXT, "shift_jis", ""),
    ],
)
def test_html_in_legacy_charsets(text: str, encoding: str, meta: str) -> None:
    head = f"<head>{meta}<title>{text[:8]}</title></head>"
    html = f"<html>{head}<body><article><p>{text}</p></article></body></html>"
    title, extracted = extract(html.encode(encoding), "text/html", URL)
    assert title == text[:8]
    assert text in extracted


def test_xml_declaration_names_the_charset() -> None:
    body = f'<?xml version="1.0" encoding="Shift_JIS"?>\n<note>{SJIS_TEXT}</note>'.encode("shift_jis")
    assert SJIS_TEXT in extract(body, "application/xml", URL)[1]


def test_utf8_with_a_few_broken_bytes_stays_utf8() -> None:
    body = ("Zürich café " * 20).encode() + b"\xff\xfe broken tail"
    text = decode_text(body, None)
    assert text.startswith("Zürich café Zürich") and text.count("\ufffd") == 2


# --- lying content types and unusual bodies


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (b"<!DOCTYPE html><html><body><p>hi</p></body></html>", "application/octet-stream", "html"),
        (b'{"a": [1, 2]}', "text/html; charset=utf-8", "json"),
        (b'{"a": 1}', "application/octet-stream", "json"),
        (b"just some words\nand another line\n", "application/octet-stream", "text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "text/html", None),
        (b"GIF89a\x01\x00", "text/plain", None),
        (b"\x00\x01\x02\x03binary", "application/octet-stream", None),
        (b"a,b\n1,2\n", "text/plain", "text"),
    ],
)
def test_bodies_are_sniffed_when_the_label_lies(body: bytes, content_type: str, kind: str | None) -> None:
    assert detect_kind(body, content_type, "https://x.org/download") == kind


def test_binary_behind_a_text_label_names_what_it_is() -> None:
    with pytest.raises(
        FetchError, match=r"unsupported content type 'text/html' at .* \(the body is a PNG image\)"
    ):
        extract(b"\x89PNG\r\n\x1a\n" + bytes(32), "text/html", URL)


def test_raw_file_hosts_serving_csv_and_json_as_plain_text() -> None:
    assert (
        detect_kind(b"a,b\n1,2\n", "text/plain; charset=utf-8", "https://raw.example.org/data.csv") == "csv"
    )
    assert detect_kind(b"{}", "text/plain", "https://raw.example.org/config.json") == "json"


def test_page_without_text_is_an_error_naming_the_url() -> None:
    with pytest.raises(FetchError, match=rf"no readable text at {URL}: the page has no readable text"):
        extract(b"<html><body><script>app()</script></body></html>", "text/html", URL)
    with pytest.raises(FetchError, match=r"no readable text at .*: the PDF has no text layer"):
        extract(make_pdf("Scan", [[]]), "application/pdf", URL)
    with pytest.raises(FetchError, match="the document is empty"):
        extract(b"  \n ", "text/plain", URL)


# --- CSV


def test_csv_becomes_a_markdown_table() -> None:
    title, text = extract(CSV_BODY.encode(), "text/csv", "https://data.example.org/files/cities.csv")
    assert title == "cities.csv"
    assert text.splitlines() == [
        "| city | country | population |",
        "| --- | --- | --- |",
        "| Tokyo | Japan | 37400068 |",
        "| Paris, centre | France | 2165423 |",
    ]


def test_csv_dialects_and_limits() -> None:
    assert csv_to_markdown("a;b\n1;2\n") == "| a | b |\n| --- | --- |\n| 1 | 2 |"
    assert csv_to_markdown("a\tb|c\n1\t2\n", delimiter="\t") == "| a | b\\|c |\n| --- | --- |\n| 1 | 2 |"
    assert csv_to_markdown("a,b,c\n1\n") == "| a | b | c |\n| --- | --- | --- |\n| 1 |  |  |"
    assert csv_to_markdown("only one column\nper line\n") is None
    assert csv_to_markdown("a,b\n" + "1,2\n" * (CSV_TABLE_MAX_ROWS + 1)) is None
    big = "a,b\n" + ("x" * 1000 + ",y\n") * (CSV_TABLE_MAX_CHARS // 1000)
    assert csv_to_markdown(big) is None
    # Too big for a table: the CSV stays readable as it is.
    assert extract(big.encode(), "text/csv", URL)[1] == big.strip()
    tsv = extract(b"k\tv\nx\t1\n", "text/tab-separated-values", URL)[1]
    assert tsv == "| k | v |\n| --- | --- |\n| x | 1 |"


# --- dates


def test_html_date_comes_from_the_page_metadata() -> None:
    document = extract_document(DATED_HTML.encode(), "text/html", URL)
    assert document.published == "2023-04-05"
    assert document.title == "Release notes" and document.kind == "html"
    json_ld = (
        '<html><head><title>Post</title><script type="application/ld+json">'
        '{"@type": "NewsArticle", "datePublished": "2021-11-30T08:00:00Z", "headline": "Post"}</script>'
        "</head><body><article><p>Some text about the news of the day, long enough to count.</p>"
        "</article></body></html>"
    )
    assert extract_document(json_ld.encode(), "text/html", URL).published == "2021-11-30"
    undated = extract_document(ARTICLE_HTML.encode(), "text/html", URL)
    assert undated.published == ""
    assert extract_document(b"plain", "text/plain", URL).published == ""
