"""Reading the user's files for the local index: which files count, and what documents each holds.

The index stores documents, not files: a Markdown file is one document, a JSONL file one per record.
This module finds the supported files under the paths the user gave (folders recursively, hidden
entries skipped), turns each into documents with the same extractors the web fetcher uses (so a PDF
or a DOCX reads the same from disk as from a URL), and serves a ``file://`` URL that was never
indexed but lies inside an indexed folder, read on the fly (``read_file_url``). That last one is the
only way the model reads a local file outside the workspace, so it resolves symlinks and refuses any
path that escapes the indexed roots, and any hidden entry, which indexing would have skipped too.

A document also carries its outgoing links (``Link``: target URL resolved against the document's own
URL, fragment dropped, with the anchor text): ``<a href>`` in HTML, ``[text](target)`` in Markdown and
JSONL text, and a JSONL record's optional ``links`` list. The index keeps them so a walk can go from
document to document (``synth walk``).

Problems with one file or one JSONL line are collected as ``path[:line]: reason`` strings, so one bad
file never stops a folder from being indexed.

A file is what its real path names: a symlink is followed, the document's URL is its target's, and
its type comes from the target's name, as it does when ``read_file_url`` serves that URL. A link whose
name looks like a document but whose target's name does not (``notes.md`` → ``notes``) is skipped
with a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.request import url2pathname

import lxml.etree
import lxml.html

from deepresearch.errors import ContentTooLarge, FetchError, URLBlocked
from deepresearch.fetch.charset import decode_text
from deepresearch.fetch.extract import DOCX_TYPE, PPTX_TYPE, XLSX_TYPE, Kind, extract_document
from deepresearch.search.passages import Markup, document_title

TEXT_SUFFIXES: dict[str, Markup] = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".rst": "rst"}
EXTRACTED_SUFFIXES: dict[str, str] = {
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": DOCX_TYPE,
    ".pptx": PPTX_TYPE,
    ".xlsx": XLSX_TYPE,
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
}
"""Files read through ``deepresearch.fetch.extract``; ``.pptx``/``.xlsx`` need the ``office`` extra."""
JSONL_SUFFIX = ".jsonl"
SUPPORTED_SUFFIXES = frozenset({*TEXT_SUFFIXES, *EXTRACTED_SUFFIXES, JSONL_SUFFIX})
INDEX_FORMAT = "passages-v1"
"""Mixed into content hashes: changing how documents are cut must re-index unchanged files."""
MAX_FILE_BYTES = 100_000_000
"""Largest file read on the fly through ``read_file_url``."""

MAX_LINKS = 500
"""Outgoing links kept per document (a generated index page may have thousands)."""

_MARKDOWN_KINDS: frozenset[Kind] = frozenset({"html", "docx", "pptx", "xlsx", "csv"})
_MARKDOWN_LINK = re.compile(
    r"(?<!!)\[([^\]\n]{0,300})\]\(\s*(?:<([^>\n]+)>|([^)\s]+))(?:\s+\"[^\"]*\")?\s*\)"
)
"""``[text](target)`` or ``[text](<target> "title")``; an image (``![alt](src)``) is no link."""
_LINK_SCHEMES = frozenset({"http", "https", "file"})


@dataclass(frozen=True, slots=True)
class Link:
    """One outgoing link of a document."""

    url: str
    """The target, absolute, without its fragment."""
    text: str
    """The anchor text (or the link's title), for choosing which link to follow."""


@dataclass(slots=True)
class Document:
    """One document ready to be indexed."""

    url: str
    title: str
    text: str
    markup: Markup
    content_type: str
    content_hash: str
    published: str = ""
    links: list[Link] = field(default_factory=list)


def iter_files(paths: Iterable[Path | str], errors: list[str]) -> Iterator[Path]:
    """Supported files under ``paths`` (folders recursively, hidden entries skipped), each once, resolved;
    the type is the resolved path's (a symlink's target's)."""
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root, name)
                    if name.startswith(".") or not (_supported(candidate) or candidate.is_symlink()):
                        continue
                    file = candidate.resolve()
                    if not _supported(file):
                        if _supported(candidate):  # named like a document, links to something else
                            errors.append(_unsupported_target(candidate, file))
                        continue
                    if file not in seen:
                        seen.add(file)
                        yield file
        elif path.is_file():
            file = path.resolve()
            if not _supported(file):
                if _supported(path):
                    errors.append(_unsupported_target(path, file))
                else:
                    supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
                    errors.append(f"{path}: unsupported file type (supported: {supported})")
            elif file not in seen:
                seen.add(file)
                yield file
        else:
            errors.append(f"{path}: no such file or directory")


def _supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def _unsupported_target(link: Path, target: Path) -> str:
    return (
        f"{link}: links to {target}, whose name has no supported file type "
        "(a link's target decides how it is read)"
    )


def root_of(raw: Path | str) -> Path | None:
    """The resolved folder or supported file that adding ``raw`` makes readable, else ``None``."""
    path = Path(raw).expanduser()
    if path.is_dir() or (path.is_file() and _supported(path.resolve())):
        return path.resolve()
    return None


def load_file(path: Path, data: bytes, errors: list[str]) -> list[Document]:
    """The documents in one file; problems are appended to ``errors`` as ``path[:line]: reason``."""
    suffix = path.suffix.lower()
    url = path.as_uri()
    if suffix == JSONL_SUFFIX:
        return _load_jsonl(path, data, errors)
    if suffix in TEXT_SUFFIXES:
        markup = TEXT_SUFFIXES[suffix]
        text = decode_text(data, None).strip()
        title = document_title(text, markup=markup, fallback=fallback_title(path))
        content_type = "text/markdown" if markup == "markdown" else "text/plain"
        links = markdown_links(text, url) if markup == "markdown" else []
        return [Document(url, title, text, markup, content_type, content_digest(data), links=links)]
    extracted_type = EXTRACTED_SUFFIXES.get(suffix)
    if extracted_type is None:  # iter_files yields supported names only; another caller may not
        errors.append(f"{path}: unsupported file type {suffix or '(none)'}")
        return []
    try:
        extracted = extract_document(data, extracted_type, url)
    except FetchError as exc:
        errors.append(f"{path}: {exc}")
        return []
    kind_markup: Markup = "markdown" if extracted.kind in _MARKDOWN_KINDS else "text"
    title = extracted.title or fallback_title(path)
    digest = content_digest(data)
    links = html_links(data, url) if extracted_type == "text/html" else []
    return [
        Document(url, title, extracted.text, kind_markup, extracted_type, digest, extracted.published, links)
    ]


def read_file_url(url: str, roots: list[Path]) -> Document:
    """The document at a ``file://`` URL whose real path lies inside one of ``roots``, read now.

    Raises ``URLBlocked`` for a path outside the roots (after resolving symlinks) or a hidden one,
    and ``FetchError`` for a missing, unsupported or unreadable file.
    """
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise URLBlocked(f"refused {url}: only files on this machine can be opened")
    requested = file_url_path(url)
    if not requested.is_absolute():
        raise URLBlocked(f"refused {url}: the path is not absolute")
    real = Path(os.path.realpath(requested))
    root = next((r for r in roots if real == r or real.is_relative_to(r)), None)
    if root is None:
        raise URLBlocked(
            f"refused {url}: only files inside the indexed folders can be opened "
            "(add its folder with `deepresearch index add`)"
        )
    if any(part.startswith(".") for part in real.relative_to(root).parts):
        raise URLBlocked(f"refused {url}: hidden files and folders are not opened")
    suffix = real.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise FetchError(f"cannot open {url}: unsupported file type {suffix or '(none)'}")
    try:
        size = real.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ContentTooLarge(f"{url} is {size} bytes, more than the {MAX_FILE_BYTES}-byte limit")
        data = real.read_bytes()
    except OSError as exc:
        raise FetchError(f"cannot open {url}: {exc.strerror or exc}") from exc
    if suffix == JSONL_SUFFIX and not parts.fragment:
        # A JSONL file without a record id: the whole file, as text.
        text = decode_text(data, None).strip()
        return Document(url, real.name, text, "text", "application/jsonl", content_digest(data))
    errors: list[str] = []
    documents = load_file(real, data, errors)
    if suffix == JSONL_SUFFIX:
        wanted = f"{real.as_uri()}#{parts.fragment}"
        documents = [document for document in documents if document.url == wanted]
    if not documents:
        raise FetchError(errors[0] if errors else f"cannot open {url}: no such record in {real.name}")
    return documents[0]


def file_url_path(url: str) -> Path:
    """The local path a ``file://`` URL names (percent-escapes undone; fragment and query ignored)."""
    return Path(url2pathname(urlsplit(url).path))


def content_digest(*parts: bytes | str) -> str:
    """SHA-256 of ``parts`` and ``INDEX_FORMAT``: equal digests mean nothing needs re-indexing."""
    sha = hashlib.sha256(INDEX_FORMAT.encode())
    for part in parts:
        sha.update(b"\0")
        sha.update(part.encode() if isinstance(part, str) else part)
    return sha.hexdigest()


def fallback_title(path: Path) -> str:
    return path.stem.replace("_", " ").replace("-", " ").strip() or path.name


def _load_jsonl(path: Path, data: bytes, errors: list[str]) -> list[Document]:
    """One document per line ``{id, title, url, text}`` (and optionally ``links``: URLs or ``{url, text}``
    objects); a bad line is reported and the rest still load."""
    documents: list[Document] = []
    for number, line in enumerate(decode_text(data, None).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            errors.append(f"{path}:{number}: invalid JSON ({exc})")
            continue
        if not isinstance(record, dict):
            errors.append(f"{path}:{number}: expected an object with id, title, url and text")
            continue
        text, title, url, key = (record.get(name) for name in ("text", "title", "url", "id"))
        if not isinstance(text, str) or not text.strip():
            errors.append(f"{path}:{number}: missing or empty 'text'")
            continue
        if any(value is not None and not isinstance(value, str | int) for value in (title, url, key)):
            errors.append(f"{path}:{number}: 'id', 'title' and 'url' must be strings")
            continue
        if not url:
            url = f"{path.as_uri()}#{key if key not in (None, '') else f'line-{number}'}"
        title = str(title).strip() if title else document_title(text, markup="markdown", fallback=str(url))
        digest = content_digest(str(url), title, text)
        links = _record_links(record.get("links"), str(url)) + markdown_links(text, str(url))
        document = Document(str(url), title, text.strip(), "markdown", "text/markdown", digest)
        document.links = _unique(links, str(url))
        documents.append(document)
    return documents


# --- links --------------------------------------------------------------------------------------


def html_links(html: bytes | str, base: str) -> list[Link]:
    """The ``<a href>`` targets of an HTML page, resolved against ``base`` (or its ``<base href>``)."""
    root = None
    for markup in (decode_text(html, None), html) if isinstance(html, bytes) else (html,):
        try:  # text first (UTF-8 hrefs); bytes when lxml refuses text with an encoding declaration
            root = lxml.html.fromstring(markup)
            break
        except (ValueError, lxml.etree.ParserError):  # empty or hopeless markup has no links
            continue
    if root is None:
        return []
    declared = root.xpath("//base/@href")
    if declared:
        base = urljoin(base, str(declared[0]))
    links = []
    for anchor in root.iter("a"):
        href = anchor.get("href")
        if href:
            text = " ".join(anchor.text_content().split()) or (anchor.get("title") or "").strip()
            links.append(_resolve(href, text, base))
    return _unique(links, base)


def markdown_links(text: str, base: str) -> list[Link]:
    """The ``[text](target)`` links of Markdown text, resolved against ``base``."""
    links = [
        _resolve(m.group(2) or m.group(3), " ".join(m.group(1).split()), base)
        for m in _MARKDOWN_LINK.finditer(text)
    ]
    return _unique(links, base)


def _record_links(value: Any, base: str) -> list[Link | None]:
    """A JSONL record's ``links``: URLs, or objects with ``url`` and optional ``text``."""
    if not isinstance(value, list):
        return []
    links: list[Link | None] = []
    for entry in value:
        if isinstance(entry, str):
            links.append(_resolve(entry, "", base))
        elif isinstance(entry, dict) and isinstance(entry.get("url"), str):
            links.append(_resolve(entry["url"], str(entry.get("text") or ""), base))
    return links


def _resolve(href: str, text: str, base: str) -> Link | None:
    """``href`` made absolute against ``base`` without its fragment; ``None`` for mail, scripts and the
    like. A ``file:`` target is spelled the way the index spells file URLs (``Path.as_uri``)."""
    try:
        target, _ = urldefrag(urljoin(base, href.strip()))
        parts = urlsplit(target)
    except ValueError:  # a malformed URL (bad IPv6 literal, bad port) leads nowhere
        return None
    if parts.scheme.lower() not in _LINK_SCHEMES:
        return None
    if parts.scheme.lower() == "file":
        path = file_url_path(target)
        if not path.is_absolute():
            return None
        target = Path(os.path.normpath(path)).as_uri()
    return Link(target, text[:200])


def _unique(links: Iterable[Link | None], base: str) -> list[Link]:
    """Each target once (its first anchor text that is not empty), never the document itself."""
    own = urldefrag(base)[0]
    if own.startswith("file:"):
        own = Path(os.path.normpath(file_url_path(own))).as_uri()
    seen: dict[str, Link] = {}
    for link in links:
        if link is None or link.url == own:
            continue
        if link.url not in seen or (not seen[link.url].text and link.text):
            seen[link.url] = link
    return list(seen.values())[:MAX_LINKS]
