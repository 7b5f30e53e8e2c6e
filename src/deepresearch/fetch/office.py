"""Office documents as Markdown: Word natively, PowerPoint and Excel through markitdown (extra ``office``).

Reports, papers and policies often exist only as ``.docx``, so Word is read here with the standard
library alone: a DOCX is a zip whose ``word/document.xml`` holds paragraphs (``w:p``), runs of text
(``w:r``/``w:t``) and tables (``w:tbl``). Headings come from paragraph styles (``Title``,
``Heading 1``–``6``, resolved through ``word/styles.xml`` so localised style ids work too), list
paragraphs become ``- `` items and tables become Markdown tables — the shape the passage splitter and
the model read best. Slides and spreadsheets are rarer and harder to read well, so they go through
markitdown's converters when that optional extra is installed; without it the error names the extra.

These files come from the web, so parsing is defensive: any DOCTYPE declaration is refused (no
entity can be declared, so neither external entities nor "billion laughs" expansion can happen), and
the zip's declared sizes are checked before anything is inflated (a zip bomb stops there).
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any, Literal
from xml.etree import ElementTree
from xml.parsers import expat

from deepresearch.errors import ContentTooLarge, FetchError

OfficeKind = Literal["docx", "pptx", "xlsx"]

OFFICE_EXTRA_HINT = "pip install 'deepresearch[office]'"
MAX_UNZIPPED_BYTES = 200_000_000
"""Largest total size the zip's members may declare once inflated."""
MAX_ZIP_MEMBERS = 20_000

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_CONTENT_TYPES = "[Content_Types].xml"
_MAIN_TYPE_MARKERS: tuple[tuple[str, OfficeKind], ...] = (
    ("wordprocessingml", "docx"),
    ("ms-word", "docx"),
    ("presentationml", "pptx"),
    ("ms-powerpoint", "pptx"),
    ("spreadsheetml", "xlsx"),
    ("ms-excel", "xlsx"),
)
_DEFAULT_MAIN_PARTS: dict[OfficeKind, str] = {
    "docx": "word/document.xml",
    "pptx": "ppt/presentation.xml",
    "xlsx": "xl/workbook.xml",
}
_HEADING_NAME_RE = re.compile(r"^heading\s*([1-9])$")
_SLIDE_COMMENT_RE = re.compile(r"^<!-- Slide number: \d+ -->\n?", re.MULTILINE)
# Elements whose content is not document text: properties, and the fallback copy of content that
# markup-compatibility blocks carry twice.
_NOT_TEXT = frozenset({_MC_FALLBACK, _W + "pPr", _W + "rPr", _W + "tblPr", _W + "trPr", _W + "tcPr"})


def office_kind(body: bytes) -> OfficeKind | None:
    """Which Office document a zip holds, from the main part its ``[Content_Types].xml`` names."""
    if not body.startswith(b"PK\x03\x04"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            found = _main_part(archive)
    except (zipfile.BadZipFile, FetchError, OSError, ValueError):
        return None
    return found[0] if found is not None else None


def docx_to_markdown(body: bytes, url: str) -> tuple[str, str]:
    """``(title, text)`` of a Word document, with headings, lists and tables in Markdown."""
    with _open_zip(body, url, "DOCX") as archive:
        found = _main_part(archive)
        part = found[1] if found is not None and found[0] == "docx" else _DEFAULT_MAIN_PARTS["docx"]
        document = parse_xml(_read_part(archive, part, url), f"{url} ({part})")
        styles = _Styles.read(archive, url)
        title = _core_title(archive, url)
    body_element = document.find(f"{_W}body")
    if body_element is None:
        raise FetchError(f"could not read DOCX at {url}: {part} has no document body")
    blocks = _render_blocks(body_element, styles)
    text = "\n\n".join(blocks).strip()
    if not title:
        heading = next((b.lstrip("#").strip() for b in blocks if b.startswith("#")), "")
        title = heading or next((line.strip() for line in text.splitlines() if line.strip()), "")
    return " ".join(title.split()), text


def markitdown_to_markdown(body: bytes, kind: Literal["pptx", "xlsx"], url: str) -> tuple[str, str]:
    """``(title, text)`` of slides or a workbook, converted by markitdown (the ``office`` extra)."""
    needs_extra = FetchError(
        f"cannot read {url}: .{kind} files need the optional 'office' extra ({OFFICE_EXTRA_HINT})"
    )
    try:
        from markitdown import MissingDependencyException, StreamInfo
        from markitdown.converters import PptxConverter, XlsxConverter
    except ImportError as exc:
        raise needs_extra from exc
    _open_zip(body, url, kind.upper()).close()  # only the size checks: markitdown reads the bytes itself
    # markitdown's classes are not annotated; Any keeps mypy strict quiet whether it is installed or not.
    converter_class: Any = PptxConverter if kind == "pptx" else XlsxConverter
    converter = converter_class()
    # markitdown and the libraries under it raise many exception types on damaged files; at this
    # boundary they all mean "this document cannot be read".
    try:
        result = converter.convert(io.BytesIO(body), StreamInfo(extension=f".{kind}"))
    except MissingDependencyException as exc:
        raise needs_extra from exc
    except Exception as exc:
        raise FetchError(f"could not read {kind.upper()} at {url}: {exc or type(exc).__name__}") from exc
    text = _SLIDE_COMMENT_RE.sub("", result.markdown or "").strip()
    title = (result.title or "").strip()
    if not title:
        match = re.search(r"^#{1,6}\s+(.+)$", text, re.MULTILINE)
        title = match.group(1).strip() if match else ""
    return " ".join(title.split()), text


def parse_xml(data: bytes, where: str) -> ElementTree.Element:
    """Parse untrusted XML into an ElementTree, refusing any DOCTYPE (and so every entity declaration)."""
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")

    def start(name: str, attributes: dict[str, str]) -> None:
        builder.start(_qualified(name), {_qualified(key): value for key, value in attributes.items()})

    def end(name: str) -> None:
        builder.end(_qualified(name))

    def refuse(*_: object) -> None:
        raise FetchError(f"refused {where}: XML with a DOCTYPE declaration")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise FetchError(f"could not parse {where}: {exc}") from exc
    return builder.close()


def _qualified(name: str) -> str:
    """expat's ``uri}local`` as ElementTree's ``{uri}local``."""
    return "{" + name if "}" in name else name


def _open_zip(body: bytes, url: str, label: str) -> zipfile.ZipFile:
    """The archive, once its declared sizes are known to be sane (zipfile stops reading at them)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FetchError(f"could not read {label} at {url}: not a valid zip archive ({exc})") from exc
    members = archive.infolist()
    total = sum(info.file_size for info in members)
    if len(members) > MAX_ZIP_MEMBERS or total > MAX_UNZIPPED_BYTES:
        archive.close()
        raise ContentTooLarge(
            f"{label} at {url} unpacks to {total} bytes in {len(members)} parts, more than the "
            f"{MAX_UNZIPPED_BYTES}-byte limit"
        )
    return archive


def _read_part(archive: zipfile.ZipFile, name: str, url: str, limit: int = MAX_UNZIPPED_BYTES) -> bytes:
    """One member, inflated up to ``limit`` bytes (a larger one is refused, never read whole)."""
    try:
        with archive.open(name) as handle:
            data = handle.read(limit + 1)
    except KeyError as exc:
        raise FetchError(f"could not read {url}: the document has no {name}") from exc
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as exc:
        raise FetchError(f"could not read {name} in {url}: {exc}") from exc
    if len(data) > limit:
        raise ContentTooLarge(f"{name} in {url} is larger than the {limit}-byte limit")
    return data


def _main_part(archive: zipfile.ZipFile) -> tuple[OfficeKind, str] | None:
    """The document kind and main part name declared in ``[Content_Types].xml``."""
    if _CONTENT_TYPES not in archive.namelist():
        return None
    types = parse_xml(_read_part(archive, _CONTENT_TYPES, "zip", limit=1_000_000), _CONTENT_TYPES)
    for override in types:
        content_type = override.get("ContentType", "")
        if not override.tag.endswith("Override") or not content_type.endswith(".main+xml"):
            continue
        for marker, kind in _MAIN_TYPE_MARKERS:
            if marker in content_type:
                return kind, override.get("PartName", _DEFAULT_MAIN_PARTS[kind]).lstrip("/")
    return None


def _core_title(archive: zipfile.ZipFile, url: str) -> str:
    if "docProps/core.xml" not in archive.namelist():
        return ""
    try:
        core = parse_xml(_read_part(archive, "docProps/core.xml", url), f"{url} (docProps/core.xml)")
    except FetchError:
        return ""  # the title is a nicety; a damaged property part must not lose the text
    element = core.find(_DC_TITLE)
    return (element.text or "").strip() if element is not None else ""


class _Styles:
    """What a paragraph style means for Markdown: a heading level, or a list item."""

    def __init__(self, levels: dict[str, int], lists: set[str]) -> None:
        self.levels = levels
        self.lists = lists

    @classmethod
    def read(cls, archive: zipfile.ZipFile, url: str) -> _Styles:
        levels: dict[str, int] = {}
        lists: set[str] = set()
        if "word/styles.xml" in archive.namelist():
            try:
                root = parse_xml(_read_part(archive, "word/styles.xml", url), f"{url} (word/styles.xml)")
            except FetchError:
                root = ElementTree.Element("styles")
            for style in root.iter(f"{_W}style"):
                style_id = style.get(f"{_W}styleId", "")
                name_element = style.find(f"{_W}name")
                name = (name_element.get(f"{_W}val", "") if name_element is not None else "").lower()
                level = _style_level(style_id, name)
                outline = style.find(f"{_W}pPr/{_W}outlineLvl")
                if level is None and outline is not None and outline.get(f"{_W}val", "").isdigit():
                    level = int(outline.get(f"{_W}val", "9")) + 1
                if level is not None and level <= 6:
                    levels[style_id] = level
                if style.find(f"{_W}pPr/{_W}numPr") is not None or name.startswith(
                    ("list bullet", "list number")
                ):
                    lists.add(style_id)
        return cls(levels, lists)

    def level(self, style_id: str) -> int | None:
        return self.levels.get(style_id, _style_level(style_id, style_id.lower()))


def _style_level(style_id: str, name: str) -> int | None:
    """Heading level of a style by its (English, built-in) name or id: Title is 1, Heading N is N."""
    for candidate in (name, style_id.lower()):
        if candidate == "title":
            return 1
        match = _HEADING_NAME_RE.match(candidate)
        if match:
            return min(int(match.group(1)), 6)
    return None


def _block_elements(container: ElementTree.Element) -> Iterator[ElementTree.Element]:
    """Paragraphs and tables in order, looking inside content controls and custom XML wrappers."""
    for child in container:
        if child.tag in (f"{_W}sdt", f"{_W}customXml"):
            content = child.find(f"{_W}sdtContent")
            yield from _block_elements(content if content is not None else child)
        elif child.tag in (f"{_W}p", f"{_W}tbl"):
            yield child


def _render_blocks(container: ElementTree.Element, styles: _Styles) -> list[str]:
    blocks: list[str] = []
    items: list[str] = []
    for element in _block_elements(container):
        if element.tag == f"{_W}p":
            kind, text = _paragraph(element, styles)
            if kind == "item":
                items.append(text)
                continue
        else:
            kind, text = "table", _table(element)
        if items:
            blocks.append("\n".join(items))
            items = []
        if text:
            blocks.append(text)
    if items:
        blocks.append("\n".join(items))
    return blocks


def _paragraph(paragraph: ElementTree.Element, styles: _Styles) -> tuple[str, str]:
    """``("heading" | "item" | "text", markdown)`` for one ``w:p``."""
    text = _text(paragraph).strip()
    properties = paragraph.find(f"{_W}pPr")
    style_element = properties.find(f"{_W}pStyle") if properties is not None else None
    style = style_element.get(f"{_W}val", "") if style_element is not None else ""
    level = styles.level(style) if style else None
    outline = properties.find(f"{_W}outlineLvl") if properties is not None else None
    if level is None and outline is not None and outline.get(f"{_W}val", "").isdigit():
        level = int(outline.get(f"{_W}val", "9")) + 1
    if text and level is not None and level <= 6:
        return "heading", "#" * level + " " + " ".join(text.split())
    numbering = properties.find(f"{_W}numPr") if properties is not None else None
    if numbering is not None or style in styles.lists:
        number_id = numbering.find(f"{_W}numId") if numbering is not None else None
        if number_id is None or number_id.get(f"{_W}val", "") != "0":
            indent = numbering.find(f"{_W}ilvl") if numbering is not None else None
            depth = int(indent.get(f"{_W}val", "0")) if indent is not None else 0
            if text:
                return "item", "  " * min(depth, 8) + "- " + " ".join(text.split())
    return "text", text


def _text(element: ElementTree.Element) -> str:
    """The visible text under ``element``: runs, tabs and breaks; not deleted text or field codes."""
    parts: list[str] = []
    for child in element:
        if child.tag in _NOT_TEXT:
            continue
        if child.tag == f"{_W}t":
            parts.append(child.text or "")
        elif child.tag == f"{_W}tab":
            parts.append("\t")
        elif child.tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
        elif child.tag == f"{_W}noBreakHyphen":
            parts.append("-")
        elif child.tag == f"{_W}p":
            parts.append(" " + _text(child) + " ")  # a paragraph inside a text box or a cell
        else:
            parts.append(_text(child))
    return "".join(parts)


def _table(table: ElementTree.Element) -> str:
    rows: list[list[str]] = []
    for row in _rows(table):
        cells: list[str] = []
        for cell in row.findall(f"{_W}tc"):
            text = " ".join(_text(p).strip() for p in cell.iter(f"{_W}p"))
            cells.append(" ".join(text.split()).replace("|", "\\|"))
            span = cell.find(f"{_W}tcPr/{_W}gridSpan")
            if span is not None and span.get(f"{_W}val", "1").isdigit():
                cells.extend([""] * (min(int(span.get(f"{_W}val", "1")), 64) - 1))
        if any(cells):
            rows.append(cells)
    return markdown_table(rows)


def _rows(container: ElementTree.Element) -> Iterator[ElementTree.Element]:
    """The rows of a table (not of tables nested in its cells), also inside content controls."""
    for child in container:
        if child.tag == f"{_W}tr":
            yield child
        elif child.tag in (f"{_W}sdt", f"{_W}customXml"):
            content = child.find(f"{_W}sdtContent")
            yield from _rows(content if content is not None else child)


def markdown_table(rows: list[list[str]]) -> str:
    """Rows of cell text as a Markdown table whose first row is the header; ragged rows are padded."""
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    lines = []
    for number, row in enumerate(rows):
        padded = row + [""] * (width - len(row))
        lines.append("| " + " | ".join(padded) + " |")
        if number == 0:
            lines.append("|" + " --- |" * width)
    return "\n".join(lines)
