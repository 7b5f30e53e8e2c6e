"""Office documents: Word read natively (with hostile-XML defences), slides and sheets via markitdown.

The DOCX files are built in the tests from minimal OOXML parts (``make_docx``); the PPTX/XLSX tests
build theirs with python-pptx and openpyxl, which come with ``markitdown[pptx,xlsx]``, and are skipped
when that extra is not installed. Missing markitdown is simulated by hiding the module.
"""

from __future__ import annotations

import io
import sys
import zipfile

import pytest

from deepresearch.errors import ContentTooLarge, FetchError
from deepresearch.fetch import office
from deepresearch.fetch.extract import DOCX_TYPE, PPTX_TYPE, XLSX_TYPE, detect_kind, extract_document
from deepresearch.fetch.office import office_kind, parse_xml
from tests.fakes.web_server import DOCX_BLOCKS, make_docx

URL = "https://reports.example.org/annual"
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def replace_part(docx: bytes, name: str, data: bytes) -> bytes:
    """``docx`` with the part ``name`` replaced by ``data``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, data if info.filename == name else source.read(info.filename))
    return out.getvalue()


def test_docx_headings_lists_and_tables_become_markdown() -> None:
    blocks = [*DOCX_BLOCKS[:5], ("li2", "In Lisbon and Osaka"), *DOCX_BLOCKS[5:], ("p", "Pipes | stay text.")]
    document = extract_document(make_docx(blocks, title="Annual report 2024"), DOCX_TYPE, URL)
    assert document.kind == "docx"
    assert document.title == "Annual report 2024"  # docProps/core.xml wins over the Title paragraph
    assert document.text.split("\n\n") == [
        "# Annual report",
        "# Summary",
        "Revenue grew by twelve percent while costs stayed flat.",
        "- Opened two offices\n- Hired forty engineers\n  - In Lisbon and Osaka",
        "## Figures",
        "| Year | Revenue |\n| --- | --- |\n| 2023 | 10.2 |\n| 2024 | 11.4 |",
        "Pipes | stay text.",
    ]


def test_docx_runs_breaks_and_what_is_not_text() -> None:
    extra = (
        "<w:p><w:pPr><w:tabs><w:tab w:val='left' w:pos='720'/></w:tabs></w:pPr>"
        "<w:r><w:t>Split </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>across</w:t></w:r>"
        "<w:hyperlink><w:r><w:t xml:space='preserve'> runs</w:t></w:r></w:hyperlink>"
        "<w:r><w:tab/><w:t>tabbed</w:t><w:br/><w:t>next line</w:t></w:r>"
        "<w:del><w:r><w:delText>deleted words</w:delText></w:r></w:del>"
        '<w:r><w:instrText>HYPERLINK "http://field.code"</w:instrText></w:r>'
        "<mc:AlternateContent><mc:Choice><w:r><w:t> chosen</w:t></w:r></mc:Choice>"
        "<mc:Fallback><w:r><w:t> fallback copy</w:t></w:r></mc:Fallback></mc:AlternateContent></w:p>"
        "<w:sdt><w:sdtContent><w:p><w:r><w:t>Inside a content control.</w:t></w:r></w:p>"
        "</w:sdtContent></w:sdt>"
        "<w:tbl><w:tr><w:tc><w:tcPr><w:gridSpan w:val='2'/></w:tcPr><w:p><w:r><w:t>Wide</w:t></w:r></w:p>"
        "</w:tc></w:tr><w:tr><w:tc><w:p><w:r><w:t>a|b</w:t></w:r></w:p></w:tc><w:tc><w:p/></w:tc>"
        "<w:tc><w:p><w:r><w:t>extra</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"
    )
    text = extract_document(make_docx([("p", "Intro.")], extra_xml=extra), DOCX_TYPE, URL).text
    assert "Split across runs\ttabbed\nnext line chosen" in text
    for hidden in ("deleted words", "field.code", "fallback copy"):
        assert hidden not in text
    assert "Inside a content control." in text
    assert "| Wide |  |  |\n| --- | --- | --- |\n| a\\|b |  | extra |" in text


def edit_part(docx: bytes, name: str, old: bytes, new: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(docx)) as archive:
        data = archive.read(name)
    return replace_part(docx, name, data.replace(old, new))


def test_docx_titles_and_style_ids_without_styles_xml() -> None:
    docx = make_docx([("p", "Preface line."), ("Heading2", "Real title"), ("p", "Body.")])
    assert extract_document(docx, DOCX_TYPE, URL).title == "Real title"  # no core title: first heading
    without_styles = replace_part(docx, "word/styles.xml", f'<w:styles xmlns:w="{W}"/>'.encode())
    # "Berschrift2" means nothing without styles.xml: it stays a paragraph, and the title is line one.
    document = extract_document(without_styles, DOCX_TYPE, URL)
    assert document.text.split("\n\n")[1] == "Real title" and document.title == "Preface line."
    # English built-in style ids are understood even without styles.xml.
    english = edit_part(without_styles, "word/document.xml", b"Berschrift", b"Heading")
    assert extract_document(english, DOCX_TYPE, URL).text.split("\n\n")[1] == "## Real title"


@pytest.mark.parametrize(
    ("content_type", "url"),
    [
        (DOCX_TYPE, URL),
        ("application/octet-stream", "https://x.org/download?id=4"),
        ("text/html; charset=utf-8", "https://x.org/page"),  # a lying server
        ("application/zip", "https://x.org/file.zip"),
        ("", "https://x.org/report.docx"),
    ],
)
def test_docx_is_recognised_by_its_parts_whatever_the_label(content_type: str, url: str) -> None:
    docx = make_docx(DOCX_BLOCKS)
    assert office_kind(docx) == "docx"
    assert detect_kind(docx, content_type, url) == "docx"
    assert "## Figures" in extract_document(docx, content_type, url).text


def test_doctype_and_entity_expansion_are_refused() -> None:
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        f'<w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>&lol3;</w:t></w:r></w:p></w:body></w:document>'
    )
    docx = replace_part(make_docx(DOCX_BLOCKS), "word/document.xml", laughs.encode())
    with pytest.raises(FetchError, match=r"refused .*word/document\.xml.*DOCTYPE"):
        extract_document(docx, DOCX_TYPE, URL)
    external = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    with pytest.raises(FetchError, match="DOCTYPE"):
        parse_xml(external.encode(), "test.xml")
    with pytest.raises(FetchError, match=r"could not parse test\.xml"):
        parse_xml(b"<unclosed>", "test.xml")
    assert parse_xml(b"<a x='1'><b>text</b></a>", "ok").find("b").text == "text"  # type: ignore[union-attr]


def test_damaged_and_oversized_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FetchError, match=r"could not read DOCX at .*: not a valid zip archive"):
        extract_document(b"PK\x03\x04 this is not really a zip", DOCX_TYPE, URL)
    no_body = replace_part(
        make_docx(DOCX_BLOCKS), "word/document.xml", f'<w:document xmlns:w="{W}"/>'.encode()
    )
    with pytest.raises(FetchError, match="has no document body"):
        extract_document(no_body, DOCX_TYPE, URL)
    empty = make_docx([("p", "   ")])
    with pytest.raises(FetchError, match=rf"no readable text at {URL}: the document is empty"):
        extract_document(empty, DOCX_TYPE, URL)
    monkeypatch.setattr(office, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(ContentTooLarge, match=r"unpacks to .* more than the 1000-byte limit"):
        extract_document(make_docx(DOCX_BLOCKS), DOCX_TYPE, URL)


def test_a_zip_that_is_no_office_document_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert office_kind(out.getvalue()) is None
    with pytest.raises(FetchError, match=r"unsupported content type 'application/zip' .*a zip archive"):
        extract_document(out.getvalue(), "application/zip", URL)
    # A content-types part inflating to megabytes is not read whole just to sniff the kind.
    huge = io.BytesIO()
    with zipfile.ZipFile(huge, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"<Types>" + b" " * 3_000_000 + b"</Types>")
    assert office_kind(huge.getvalue()) is None


def test_pptx_and_xlsx_name_the_extra_when_markitdown_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "markitdown", None)  # import markitdown now raises ImportError
    fake = replace_part(
        make_docx(DOCX_BLOCKS),
        "[Content_Types].xml",
        b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override '
        b'PartName="/ppt/presentation.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        b'presentationml.presentation.main+xml"/></Types>',
    )
    assert office_kind(fake) == "pptx"
    with pytest.raises(FetchError, match=r"\.pptx files need the optional 'office' extra \(pip install"):
        extract_document(fake, "application/octet-stream", "https://x.org/deck")
    with pytest.raises(FetchError, match=r"\.xlsx files need the optional 'office' extra"):
        extract_document(b"PK\x03\x04", XLSX_TYPE, "https://x.org/sheet.xlsx")


def test_pptx_and_xlsx_through_markitdown() -> None:
    pytest.importorskip("markitdown", reason="needs the office extra: pip install 'deepresearch[office]'")
    pptx = pytest.importorskip("pptx")
    openpyxl = pytest.importorskip("openpyxl")

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Quarterly review"
    slide.placeholders[1].text = "Revenue grew by twelve percent"
    buffer = io.BytesIO()
    deck.save(buffer)
    slides = extract_document(buffer.getvalue(), "application/octet-stream", "https://x.org/q3")
    assert slides.kind == "pptx" and slides.title == "Quarterly review"
    assert "# Quarterly review" in slides.text and "Revenue grew by twelve percent" in slides.text
    assert "Slide number" not in slides.text

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Prices"
    for row in (["Item", "Price"], ["Tea", 3.5], ["Coffee", 4]):
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    table = extract_document(buffer.getvalue(), XLSX_TYPE, "https://x.org/prices.xlsx")
    assert table.kind == "xlsx" and table.title == "Prices"
    assert "| Item | Price |" in table.text and "| Tea | 3.5 |" in table.text
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "not a presentation")
    with pytest.raises(FetchError, match=r"could not read PPTX at https://x\.org/broken"):
        extract_document(out.getvalue(), PPTX_TYPE, "https://x.org/broken")
