"""Cut one documentation page (Sphinx, DocBook, plain HTML) into titled sections with their anchors.

A manual page is long and covers many things, so the local index should hold its sections, each with
the URL a reader can follow (``sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY``) and the heading
path that says where it sits. ``fetch.extract`` (trafilatura) gives one text per page and forgets the
element ids, so documentation gets this splitter instead.

What counts as a section: an ``h1``–``h4`` heading outside admonitions, sidebars, lists and tables
(DocBook puts ``h3`` titles on notes; those stay text). Its anchor is the heading's own id, else the
id of the element it opens (Sphinx ``<section id>``, DocBook ``div.sect2``/``refsect1``), else an
``<a id|name>`` inside it (Publican), else an empty ``<a>``/``<span>`` just before it. The first
heading is the page itself and gets no anchor. On request, a Sphinx object description of the
named domains (``dl.py.function`` with ``<dt id="asyncio.gather">``) is a section too, so an API
lookup lands on ``#asyncio.gather`` rather than on a long section listing twenty functions.
Navigation (sidebars, "previous/next" bars, breadcrumbs, tables of contents, permalinks) is dropped
before anything is read.

The text is Markdown-ish, the dialect ``passages.py`` cuts: paragraphs separated by blank lines,
fenced code blocks, ``-`` lists, pipe tables, inline code in backticks. A section too short to stand
alone, or without an anchor of its own, joins the section whose text it follows under a ``##``
line, so every section keeps a URL no other section of the page has.

Everything here is a pure function of the HTML text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import lxml.etree
import lxml.html

from deepresearch.search.passages import count_words

SPLITTER_VERSION = "html-sections-v2"  # v2: sections carry their links
"""Changes whenever the output of ``split_page`` changes, so stored sections get rebuilt."""
MIN_SECTION_WORDS = 25
"""A section with fewer words joins the one before it."""
MIN_PAGE_WORDS = 10
"""Sections with fewer words than this after merging are dropped (landing pages, link lists)."""
SECTION_LEVELS = 4
"""``h1``–``h4`` open sections; ``h5``/``h6`` stay in the text as paragraphs."""

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BLOCK_TAGS = frozenset(
    {"address", "article", "aside", "blockquote", "center", "dd", "details", "dialog", "div", "dl"}
    | {"dt", "fieldset", "figcaption", "figure", "hr", "li", "main", "ol", "p", "pre", "section"}
    | {"summary", "table", "ul", "caption", *_HEADINGS}
)
_BOX_TAGS = frozenset({"aside", "blockquote", "li", "table", "dl", "figure", "details"})
"""Headings inside these are text, not sections."""
_BOX_CLASSES = frozenset(
    {"admonition", "attention", "caution", "danger", "error", "example", "hint", "important", "note"}
    | {"informalexample", "seealso", "sidebar", "tip", "topic", "warning", "table", "figure"}
)
_DROP_TAGS = frozenset(
    {"script", "style", "noscript", "nav", "footer", "form", "button", "input", "select"}
    | {"textarea", "iframe", "svg", "template", "link", "meta", "object", "embed", "canvas", "map"}
)
_DROP_CLASSES = frozenset(
    {"headerlink", "navheader", "navfooter", "docnav", "related", "sphinxsidebar", "footer", "toc"}
    | {"toctree-wrapper", "contents", "rst-footer-buttons", "breadcrumbs", "wy-breadcrumbs"}
    | {"mobile-nav", "menu-wrapper", "list-of-tables", "list-of-figures", "list-of-examples"}
    | {"viewcode-link", "copybutton"}
)
_DROP_ROLES = frozenset({"navigation", "search", "banner", "contentinfo"})
_DROP_IDS = frozenset({"banner", "searchbox"})
_CODE_TAGS = frozenset({"code", "tt", "kbd", "samp"})
_MAIN_XPATHS = (
    "//*[@role='main']",
    "//main",
    "//div[contains(concat(' ', normalize-space(@class), ' '), ' body ')]",
    "//article",
    "//body",
)
_BR = "\x00"
"""Stands for ``<br>`` while whitespace is collapsed."""
_TITLE_SUFFIX_RE = re.compile(r"\s+[—–|]\s+.*$")
_PERMALINK_CHARS = "¶#§ \t\n"
_NEEDS_ESCAPE_RE = re.compile(r"^(#{1,6}(\s|$)|```|~~~|[=\-]{3,}\s*$)")
_LANGUAGE_RE = re.compile(r"\bhighlight-([\w+-]+)")


@dataclass(frozen=True, slots=True)
class Section:
    """One part of a page: where it sits, where it links to, and what it says."""

    path: tuple[str, ...]
    """Headings from the page title down to this section's own."""
    anchor: str
    """Fragment id for the URL; empty for the top of the page."""
    text: str
    """Markdown-ish text without the section's own heading."""
    links: tuple[tuple[str, str], ...] = ()
    """``(href, anchor text)`` of the page's links whose text is in this section (as written: resolve
    them against the page's URL); a link whose text is in no section belongs to the first."""

    @property
    def title(self) -> str:
        return self.path[-1] if self.path else ""


@dataclass(frozen=True, slots=True)
class Page:
    title: str
    sections: list[Section]


@dataclass(frozen=True, slots=True)
class _Heading:
    level: int
    title: str
    anchor: str


@dataclass(frozen=True, slots=True)
class _Object:
    """A Sphinx object description (function, class…) that becomes a section; its id is its anchor."""

    anchor: str


@dataclass(frozen=True, slots=True)
class _ObjectEnd:
    """Where an object description ends: the text after it belongs to its section again."""


_OBJECT_END = _ObjectEnd()
_Event = _Heading | _Object | _ObjectEnd | str


@dataclass(eq=False, slots=True)
class _Draft:
    """A section being built; compared by identity so it can key a dict."""

    path: tuple[str, ...]
    anchor: str
    before: _Draft | None
    """The section whose text came just before this one's heading: its home if it cannot stand alone."""
    words: int = 0
    blocks: list[str] = field(default_factory=list)
    """The text of the section as kept, sections merged into it included."""


_Segment = tuple[_Draft, list[str]]
"""A run of blocks that belongs to one section; a section continues after an object description."""


def split_page(
    html: bytes | str,
    *,
    objects: frozenset[str] = frozenset(),
    min_words: int = MIN_SECTION_WORDS,
    min_page_words: int = MIN_PAGE_WORDS,
) -> Page:
    """The page's title and its sections in page order; a page that does not parse has none.

    ``objects`` names the Sphinx domains (``py``, ``c``…) whose object descriptions become sections
    of their own, so a hit can link to ``#asyncio.gather`` rather than to the whole section.
    """
    document = _parse(html)
    if document is None:
        return Page("", [])
    root = _main_element(document)
    _drop_navigation(root)
    links = _links(root)
    events: list[_Event] = []
    _Walker(root, objects).walk(root, events, in_box=False)
    title = next((e.title for e in events if isinstance(e, _Heading)), "") or _head_title(document)
    sections = [
        Section(draft.path, draft.anchor, text)
        for draft in _merge(_group(events, title), min_words)
        if count_words(text := "\n\n".join(draft.blocks)) >= min_page_words
    ]
    return Page(title, _place_links(sections, links))


def _links(root: Any) -> list[tuple[str, str]]:
    """``(href, text)`` of the links in the page's main part, in page order; links within the page
    (``#…``) and those without text are left out."""
    found = []
    for anchor in root.iter("a"):
        href = (anchor.get("href") or "").strip()
        text = " ".join(anchor.text_content().split())
        if href and not href.startswith("#") and text:
            found.append((href, text))
    return found


def _place_links(sections: list[Section], links: list[tuple[str, str]]) -> list[Section]:
    """Each link goes to the first section whose text holds its anchor text (the splitter keeps the
    text of a link, not its target), else to the first section."""
    if not sections or not links:
        return sections
    placed: list[list[tuple[str, str]]] = [[] for _ in sections]
    for href, text in links:
        at = next((i for i, section in enumerate(sections) if text in section.text), 0)
        if (href, text) not in placed[at]:
            placed[at].append((href, text))
    return [replace(section, links=tuple(found)) for section, found in zip(sections, placed, strict=True)]


def _parse(html: bytes | str) -> Any:
    if isinstance(html, str):
        # lxml refuses str input that carries an XML encoding declaration.
        html = html.encode("utf-8")
    if not html.strip():
        return None
    try:
        return lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return None


def _main_element(document: Any) -> Any:
    for xpath in _MAIN_XPATHS:
        found = document.xpath(xpath)
        if found:
            return found[0]
    return document


def _classes(element: Any) -> set[str]:
    return set((element.get("class") or "").split())


def _drop_navigation(root: Any) -> None:
    doomed = [
        element
        for element in root.iterdescendants()
        if not isinstance(element.tag, str)
        or element.tag in _DROP_TAGS
        or element.get("role") in _DROP_ROLES
        or element.get("id") in _DROP_IDS
        or not _classes(element).isdisjoint(_DROP_CLASSES)
    ]
    for element in doomed:
        # A descendant of an element already dropped is detached with it; dropping it again is harmless.
        element.drop_tree()


def _head_title(document: Any) -> str:
    found = document.xpath("//title")
    text = " ".join(found[0].text_content().split()) if found else ""
    return _TITLE_SUFFIX_RE.sub("", text)


def _flat(element: Any) -> str:
    return " ".join(element.text_content().split())


def _first_heading(element: Any) -> Any:
    return next(element.iter(*_HEADINGS), None)


class _Walker:
    """Turns the content element into a flat list of headings and Markdown-ish blocks."""

    def __init__(self, root: Any, objects: frozenset[str]) -> None:
        self.root = root
        self.objects = objects

    def walk(self, element: Any, out: list[_Event], *, in_box: bool) -> None:
        tag = element.tag
        if tag in _HEADINGS:
            title = _flat(element).strip(_PERMALINK_CHARS)
            if not title:
                return
            if int(tag[1]) <= SECTION_LEVELS and not in_box:
                out.append(_Heading(int(tag[1]), title, self.anchor(element)))
            else:
                out.append(_escape(title))
        elif tag == "pre":
            block = _code_block(element)
            if block:
                out.append(block)
        elif tag == "table":
            out.extend(self.table(element))
        elif tag in ("ul", "ol"):
            block = self.list_block(element)
            if block:
                out.append(block)
        elif tag == "dl":
            self.definitions(element, out, in_box=in_box)
        elif tag == "hr":
            return
        else:
            boxed = in_box or tag in _BOX_TAGS or not _classes(element).isdisjoint(_BOX_CLASSES)
            self.container(element, out, in_box=boxed)

    def container(self, element: Any, out: list[_Event], *, in_box: bool) -> None:
        """Block children are walked; runs of text and inline children between them are paragraphs."""
        run = [element.text or ""]
        for child in element:
            if _is_block(child):
                _flush(run, out)
                self.walk(child, out, in_box=in_box)
                run = [child.tail or ""]
            else:
                run.append(_inline(child))
                run.append(child.tail or "")
        _flush(run, out)

    def anchor(self, heading: Any) -> str:
        """The id a URL fragment should name to land on ``heading``, or ``""``."""
        if heading.get("id"):
            return str(heading.get("id"))
        node = heading
        while (parent := node.getparent()) is not None and parent is not self.root:
            if _first_heading(parent) is not heading:
                break
            if parent.get("id"):
                return str(parent.get("id"))
            node = parent
        for link in heading.iter("a"):
            if link.get("id") or link.get("name"):
                return str(link.get("id") or link.get("name"))
        previous = heading.getprevious()
        while previous is not None and previous.tag in ("a", "span") and not _flat(previous):
            if previous.get("id") or previous.get("name"):
                return str(previous.get("id") or previous.get("name"))
            previous = previous.getprevious()
        return ""

    def blocks(self, element: Any) -> list[str]:
        """The blocks inside ``element``, where headings are text."""
        found: list[_Event] = []
        self.container(element, found, in_box=True)
        return [item for item in found if isinstance(item, str)]

    def list_block(self, element: Any) -> str:
        lines: list[str] = []
        number = 0
        for item in element.iterchildren("li"):
            body = "\n".join(self.blocks(item))
            if not body.strip():
                continue
            number += 1
            marker = f"{number}. " if element.tag == "ol" else "- "
            first, *rest = body.split("\n")
            lines.append(marker + first)
            lines.extend(" " * len(marker) + line if line else "" for line in rest)
        return "\n".join(lines)

    def definitions(self, element: Any, out: list[_Event], *, in_box: bool) -> None:
        """``<dt>`` terms as paragraphs (signatures as code), ``<dd>`` bodies as blocks of their own.

        A Sphinx object description of a domain in ``objects`` (``dl.py.function``) that stands in a
        section's own text becomes a section of its own, anchored at its ``<dt id>``.
        """
        split = not in_box and not _classes(element).isdisjoint(self.objects)
        opened = False
        for child in element.iterchildren():
            if not isinstance(child.tag, str):
                continue
            if child.tag == "dt":
                if split and not opened and child.get("id"):
                    out.append(_Object(str(child.get("id"))))
                    opened = True
                if "sig" in _classes(child):
                    signature = _flat(child).rstrip(_PERMALINK_CHARS)
                    if signature:
                        out.append(_code_span(signature))
                else:
                    _flush([_inline(child)], out)
            else:
                out.extend(self.blocks(child))
        if opened:
            out.append(_OBJECT_END)

    def table(self, element: Any) -> list[str]:
        out: list[str] = []
        caption = element.find("caption")
        if caption is not None and _flat(caption):
            out.append(_escape(_flat(caption)))
        rows: list[list[str]] = []
        for row in element.xpath("./tr | ./thead/tr | ./tbody/tr | ./tfoot/tr"):
            cells = [self.cell(cell) for cell in row.xpath("./th | ./td")]
            if any(cells):
                rows.append(cells)
        if not rows:
            return out
        width = max(len(row) for row in rows)
        if width == 1:
            out.extend(_escape(row[0]) for row in rows)
            return out
        padded = [row + [""] * (width - len(row)) for row in rows]
        lines = ["| " + " | ".join(padded[0]) + " |", "|" + " --- |" * width]
        lines.extend("| " + " | ".join(row) + " |" for row in padded[1:])
        out.append("\n".join(lines))
        return out

    def cell(self, element: Any) -> str:
        lines = [line for block in self.blocks(element) for line in block.split("\n")]
        text = " ".join(line for line in lines if not line.startswith(("```", "~~~")))
        return " ".join(text.split()).replace("|", "\\|")


def _is_block(element: Any) -> bool:
    if not isinstance(element.tag, str):
        return False
    if element.tag in _BLOCK_TAGS:
        return True
    if element.tag in _CODE_TAGS:
        return False
    return any(isinstance(d.tag, str) and d.tag in _BLOCK_TAGS for d in element.iterdescendants())


def _inline(element: Any) -> str:
    tag = element.tag
    if not isinstance(tag, str) or tag == "img":
        return ""
    if tag == "br":
        return _BR
    if tag in _CODE_TAGS:
        return _code_span(_flat(element))
    parts = [element.text or ""]
    for child in element:
        parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _code_span(text: str) -> str:
    if not text:
        return ""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def _flush(run: list[str], out: list[_Event]) -> None:
    """One paragraph from collected inline text: whitespace collapsed, ``<br>`` kept as line breaks."""
    lines = [" ".join(part.split()) for part in "".join(run).split(_BR)]
    text = "\n".join(_escape(line) for line in lines if line)
    if text:
        out.append(text)


def _escape(line: str) -> str:
    """Keep a text line from reading as a Markdown heading, fence or setext underline."""
    return "\\" + line if _NEEDS_ESCAPE_RE.match(line) else line


def _code_block(element: Any) -> str:
    lines = [line.rstrip() for line in element.text_content().split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return ""
    code = "\n".join(lines)
    fence = "~~~~" if "```" in code else "```"
    return f"{fence}{_code_language(element)}\n{code}\n{fence}"


def _code_language(element: Any) -> str:
    """Sphinx wraps code in ``div.highlight-python3 > div.highlight > pre``."""
    node = element
    for _ in range(3):
        node = node.getparent()
        if node is None:
            break
        match = _LANGUAGE_RE.search(node.get("class") or "")
        if match and match.group(1) not in ("default", "none", "text"):
            return match.group(1)
    return ""


def _group(events: list[_Event], title: str) -> list[_Segment]:
    """Blocks under the heading or object they follow, in page order; the first heading is the page."""
    top = _Draft((title,) if title else (), "", None)
    segments: list[_Segment] = [(top, [])]
    section = current = top
    stack: list[tuple[int, str]] = []
    seen_first = False
    for event in events:
        if isinstance(event, _ObjectEnd):
            current = section
        elif isinstance(event, str):
            if segments[-1][0] is not current:
                segments.append((current, []))
            segments[-1][1].append(event)
            current.words += count_words(event)
        elif isinstance(event, _Object):
            current = _Draft((*section.path, event.anchor), event.anchor, current)
        else:
            if not seen_first:
                seen_first = True
                if current is top and event.title == title:
                    continue  # the page title: its text is the top section
            while stack and stack[-1][0] >= event.level:
                stack.pop()
            stack.append((event.level, event.title))
            section = current = _Draft((*top.path, *(text for _, text in stack)), event.anchor, current)
    return segments


def _merge(segments: list[_Segment], min_words: int) -> list[_Draft]:
    """Short or anchorless sections (and repeated anchors) join the section whose text they follow.

    A short top of the page (a one-line introduction) has nothing before it; it leads the first
    section that stands alone instead.
    """
    top = segments[0][0]
    kept: list[_Draft] = []
    home: dict[_Draft, _Draft | None] = {}
    anchors: set[str] = set()
    lead: list[str] = []
    for draft, blocks in segments:
        if not blocks:
            continue
        if draft not in home:
            short = draft.words < min_words
            if not kept and short and draft.before is None:
                home[draft] = None  # held back as the lead
            elif not kept:
                # Without an anchor of its own, the first section is shown as the top of the page.
                first = draft if draft.anchor or draft.before is None else top
                if first is not draft:
                    lead.append(f"## {draft.path[-1]}")
                first.blocks, lead = lead, []
                home.update({held: first for held, target in home.items() if target is None})
                home[draft] = first
                kept.append(first)
                anchors.add(first.anchor)
            elif short or not draft.anchor or draft.anchor in anchors:
                into = _home(draft.before, home) or kept[-1]
                into.blocks.append(f"## {draft.path[-1]}")
                home[draft] = into
            else:
                home[draft] = draft
                kept.append(draft)
                anchors.add(draft.anchor)
        target = home[draft]
        (lead if target is None else target.blocks).extend(blocks)
    if lead:
        top.blocks = lead
        kept.append(top)  # the page is nothing but its short top
    return kept


def _home(draft: _Draft | None, home: dict[_Draft, _Draft | None]) -> _Draft | None:
    """The kept section that holds ``draft``'s text, looking further back past sections without text."""
    while draft is not None:
        target = home.get(draft)
        if target is not None:
            return target
        draft = draft.before
    return None
