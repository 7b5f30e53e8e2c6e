"""The ``debian-docs`` corpus: manuals Debian packages as HTML, indexed by section with upstream URLs.

Debian ships the Python, PostgreSQL and Linux kernel manuals and the Debian Administrator's Handbook
as ``*-doc`` packages under free licences. One ``apt-get download`` and ``dpkg -x`` each (no
installation, no root, no crawl) gives about 8,000 pages, and ``html_sections`` cuts them into about
28,000 sections in well under a minute. Each section is indexed under the URL of the same section on
the project's own site, so the agent cites the public page, not a file on this machine.

Where each package keeps its HTML and where that HTML lives upstream (``DOC_SETS``; versions follow
the package name, so ``python3.13-doc`` or ``postgresql-doc-17`` on newer releases work too):

- ``python3.X-doc``: ``usr/share/doc/python3.X/html/`` → ``https://docs.python.org/3.X/``
- ``postgresql-doc-N``: ``usr/share/doc/postgresql-doc-N/html/`` → ``https://www.postgresql.org/docs/N/``
- ``linux-doc-X.Y``: ``usr/share/doc/linux-doc-X.Y/html/`` → ``https://www.kernel.org/doc/html/vX.Y/``
- ``debian-handbook``: ``usr/share/doc/debian-handbook/html/en-US/`` →
  ``https://debian-handbook.info/browse/en-US/stable/``

A page's path below its folder is appended to the prefix, and a section's anchor becomes the URL
fragment (``…/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY``).

The kernel's URLs name the version (``v6.1``) because ``docs.kernel.org`` serves the latest tree,
where pages move. Only the handbook's English edition is indexed, and the kernel's ``translations/``
are left out, so an English query is not answered three times. Indexes, search pages, tables of
contents and the landing pages are skipped: they are navigation.

The work directory (the caller passes one under the user's cache dir) holds::

    debs/<package>_<version>_all.deb      kept: a package already here is not downloaded again
    unpacked/<package>_<version>_all/     dpkg -x output, removed once the sections are written
    sections/<package>.jsonl              {id, title, url, text} per section, added to the index
    sections/<package>.json               which .deb and splitter version made the JSONL file

A rerun whose ``.deb`` and splitter version match the manifest reuses the JSONL file as it is, and
the index skips every unchanged section by its content hash. To pick up a newer package version,
delete its ``.deb``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

from deepresearch.errors import ConfigError
from deepresearch.search.corpora import CorpusPart, CorpusReport, Progress
from deepresearch.search.corpora.html_sections import SPLITTER_VERSION, Section, split_page
from deepresearch.search.local import LocalIndex

logger = logging.getLogger(__name__)

DEFAULT_PACKAGES = ("python3.11-doc", "postgresql-doc-15", "linux-doc-6.1", "debian-handbook")
"""The Debian 12 (bookworm) names; other releases pass their own with ``--packages``."""
DOWNLOAD_TIMEOUT_S = 900.0
UNPACK_TIMEOUT_S = 300.0

Downloader = Callable[[str, Path], Path]
"""``(package, folder) -> .deb path``: fetches a package into the folder, or finds it there."""

_URL_SAFE = "!$&'()*+,;=:@/?-._~"
_SIGNPOST = (
    "The debian-docs corpus downloads Debian packages with apt-get and unpacks them with dpkg, "
    "so it needs Debian or a derivative (Ubuntu, Mint…); elsewhere, index your own documents with "
    "`deepresearch index add PATH`."
)


@dataclass(frozen=True, slots=True)
class DocSet:
    """A family of documentation packages: where their HTML is and where it lives upstream."""

    pattern: str
    """Regular expression for the package name; its ``version`` group fills the templates."""
    label: str
    """Manual name that starts every section title (``Python {version}``)."""
    doc_root: str
    """Folder of the HTML inside the package."""
    url_prefix: str
    """Upstream URL of that folder, ending in ``/``."""
    skip: tuple[str, ...] = ("index.html",)
    """``fnmatch`` patterns of page paths (relative to ``doc_root``) that are navigation, not text."""
    objects: frozenset[str] = frozenset()
    """Sphinx domains whose object descriptions become sections of their own."""


@dataclass(frozen=True, slots=True)
class DocPackage:
    """One package's entry of ``DOC_SETS`` with its version filled in."""

    name: str
    label: str
    doc_root: str
    url_prefix: str
    skip: tuple[str, ...]
    objects: frozenset[str]


DOC_SETS = (
    DocSet(
        r"python(?P<version>3\.\d+)-doc",
        "Python {version}",
        "usr/share/doc/python{version}/html",
        "https://docs.python.org/{version}/",
        skip=(
            "index.html",
            "contents.html",
            "genindex*.html",
            "py-modindex.html",
            "search.html",
            "download.html",
        ),
        objects=frozenset({"py", "c"}),
    ),
    DocSet(
        r"postgresql-doc-(?P<version>\d+)",
        "PostgreSQL {version}",
        "usr/share/doc/postgresql-doc-{version}/html",
        "https://www.postgresql.org/docs/{version}/",
        skip=("index.html", "bookindex.html"),
    ),
    DocSet(
        r"linux-doc-(?P<version>\d+\.\d+)",
        "Linux {version}",
        "usr/share/doc/linux-doc-{version}/html",
        "https://www.kernel.org/doc/html/v{version}/",
        skip=("index.html", "genindex.html", "search.html", "translations/*"),
    ),
    DocSet(
        r"debian-handbook",
        "Debian Handbook",
        "usr/share/doc/debian-handbook/html/en-US",
        "https://debian-handbook.info/browse/en-US/stable/",
    ),
)


def resolve_package(name: str) -> DocPackage:
    """The ``DOC_SETS`` entry for a package name; ``ConfigError`` for a package we cannot map."""
    for doc_set in DOC_SETS:
        match = re.fullmatch(doc_set.pattern, name)
        if match:
            version = match.groupdict().get("version") or ""
            return DocPackage(
                name=name,
                label=doc_set.label.format(version=version),
                doc_root=doc_set.doc_root.format(version=version),
                url_prefix=doc_set.url_prefix.format(version=version),
                skip=doc_set.skip,
                objects=doc_set.objects,
            )
    known = ", ".join(f"{s.pattern.replace('(?P<version>', '(')}" for s in DOC_SETS)
    raise ConfigError(
        f"debian-docs does not know where {name!r} keeps its HTML or which site it mirrors; "
        f"supported packages (regular expressions): {known}"
    )


def build(
    *,
    index: LocalIndex,
    packages: list[str] | None,
    work_dir: Path,
    progress: Progress | None,
    downloader: Downloader | None = None,
    apt_get: str = "apt-get",
    dpkg: str = "dpkg",
) -> CorpusReport:
    """Download, unpack and split each package (``DEFAULT_PACKAGES`` by default) and index its sections.

    ``downloader`` replaces ``apt-get download`` (tests hand over a ``.deb`` they built);
    ``apt_get`` and ``dpkg`` name the programs to run.
    """
    started = time.monotonic()
    wanted = [resolve_package(name) for name in dict.fromkeys(packages or DEFAULT_PACKAGES)]
    download = downloader or partial(apt_download, apt_get=apt_get)
    say = progress or (lambda _line: None)
    report = CorpusReport("debian-docs")
    for package in wanted:
        report.parts.append(_build_package(package, index, work_dir, download, dpkg, say))
    report.seconds = time.monotonic() - started
    return report


def _build_package(
    package: DocPackage, index: LocalIndex, work_dir: Path, download: Downloader, dpkg: str, say: Progress
) -> CorpusPart:
    started = time.monotonic()
    say(f"{package.name}: getting the package")
    deb = download(package.name, work_dir / "debs")
    records = work_dir / "sections" / f"{package.name}.jsonl"
    manifest_path = records.with_suffix(".json")
    manifest = _manifest(deb, package)
    previous = _read_manifest(manifest_path)
    reused = records.is_file() and previous is not None and _same_build(previous, manifest)
    if reused and previous is not None:
        pages, sections = int(previous.get("pages", 0)), int(previous.get("sections", 0))
        say(f"{package.name}: sections up to date ({sections} from {pages} pages)")
    else:
        say(f"{package.name}: unpacking {deb.name}")
        tree = unpack(deb, work_dir / "unpacked" / deb.stem, dpkg=dpkg)
        try:
            say(f"{package.name}: splitting pages into sections")
            pages, sections = write_records(tree, package, records)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
            with contextlib.suppress(OSError):
                tree.parent.rmdir()  # only when no other package is being unpacked there
        _write_json(manifest_path, {**manifest, "pages": pages, "sections": sections})
        say(f"{package.name}: {sections} sections from {pages} pages")
    say(f"{package.name}: adding to the index")
    added = index.add_paths([records])
    seconds = time.monotonic() - started
    logger.info(
        "debian-docs %s: %d pages, %d sections, %d added, %d updated, %d unchanged in %.1f s",
        package.name,
        pages,
        sections,
        added.added,
        added.replaced,
        added.skipped,
        seconds,
    )
    return CorpusPart(package.name, deb, records, pages, sections, reused, added, seconds)


# --- download and unpack ------------------------------------------------------------------------


def apt_download(package: str, folder: Path, *, apt_get: str = "apt-get") -> Path:
    """The newest ``<package>_*.deb`` in ``folder``, downloaded with ``apt-get download`` if none is there."""
    found = _debs(folder, package)
    if found:
        return found[-1]
    folder.mkdir(parents=True, exist_ok=True)
    _run([apt_get, "download", package], cwd=folder, timeout=DOWNLOAD_TIMEOUT_S, hint=_apt_hint(package))
    found = _debs(folder, package)
    if not found:
        raise ConfigError(f"`{apt_get} download {package}` succeeded but left no {package}_*.deb in {folder}")
    return found[-1]


def unpack(deb: Path, target: Path, *, dpkg: str = "dpkg") -> Path:
    """``dpkg -x deb target`` into an emptied ``target``; returns ``target``."""
    if not deb.is_file():
        raise ConfigError(f"no such package file: {deb}")
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    _run([dpkg, "-x", str(deb), str(target)], cwd=target.parent, timeout=UNPACK_TIMEOUT_S, hint="")
    return target


def _debs(folder: Path, package: str) -> list[Path]:
    return sorted(folder.glob(f"{package}_*.deb"), key=lambda path: path.stat().st_mtime)


def _apt_hint(package: str) -> str:
    return (
        f" (check the name with `apt-cache policy {package}`; if apt knows no packages at all, "
        "run `apt-get update` first)"
    )


def _run(args: list[str], *, cwd: Path, timeout: float, hint: str) -> None:
    """Run a command; its absence, a failure (with its own message) or a timeout is a ``ConfigError``."""
    command = " ".join(args)
    if shutil.which(args[0]) is None:
        raise ConfigError(f"`{args[0]}` was not found. {_SIGNPOST}")
    logger.debug("running %s in %s", command, cwd)
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"`{command}` did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise ConfigError(f"could not run `{command}`: {exc.strerror or exc}. {_SIGNPOST}") from exc
    if done.returncode != 0:
        message = _tool_message(done.stderr or done.stdout)
        advice = hint if "Unable to locate" in message or "No packages found" in message else ""
        raise ConfigError(f"`{command}` failed (exit {done.returncode}): {message}{advice}")
    if done.stderr.strip():
        logger.debug("%s said: %s", args[0], done.stderr.strip())


def _tool_message(output: str) -> str:
    """apt's ``E:`` lines when there are any (its ``W:`` lines are noise here), else the last lines."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return " ".join(errors or lines[-3:]) or "no message"


# --- sections -----------------------------------------------------------------------------------


def write_records(tree: Path, package: DocPackage, records: Path) -> tuple[int, int]:
    """Split every page under ``tree/doc_root`` into ``records`` (JSONL); returns (pages, sections)."""
    root = tree / package.doc_root
    if not root.is_dir():
        raise ConfigError(
            f"{package.name} has no folder {package.doc_root}/; its layout differs from the one "
            "debian-docs knows (see DOC_SETS in deepresearch.search.corpora.debian_docs)"
        )
    records.parent.mkdir(parents=True, exist_ok=True)
    partial_file = records.with_name(records.name + ".part")
    pages = sections = 0
    with partial_file.open("w", encoding="utf-8") as out:
        for relative in iter_pages(root, package.skip):
            page = split_page((root / relative).read_bytes(), objects=package.objects)
            pages += 1
            for record in page_records(package, relative, page.sections):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                sections += 1
    os.replace(partial_file, records)
    return pages, sections


def iter_pages(root: Path, skip: tuple[str, ...]) -> Iterator[str]:
    """Relative POSIX paths of the ``.html`` pages under ``root``, sorted, leaving out navigation.

    Folders starting with ``_`` or ``.`` (Sphinx's ``_static``, ``_sources``…) and symbolic links
    (Debian points some files at other packages) are skipped too.
    """
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        for name in sorted(files):
            path = Path(folder, name)
            if not name.endswith(".html") or path.is_symlink():
                continue
            relative = path.relative_to(root).as_posix()
            if not any(fnmatch.fnmatchcase(relative, pattern) for pattern in skip):
                yield relative


def page_records(package: DocPackage, relative: str, sections: list[Section]) -> Iterator[dict[str, Any]]:
    """The JSONL records of one page's sections: ``{id, title, url, text, links}`` (links resolved
    against the page's URL, so a walk can follow them from section to page)."""
    page_url = package.url_prefix + quote(relative, safe="/")
    for section in sections:
        fragment = f"#{quote(section.anchor, safe=_URL_SAFE)}" if section.anchor else ""
        yield {
            "id": f"{package.name}/{relative}{fragment}",
            "title": " > ".join((package.label, *section.path)),
            "url": page_url + fragment,
            "text": section.text,
            "links": [{"url": urljoin(page_url, href), "text": text} for href, text in section.links],
        }


# --- manifest -----------------------------------------------------------------------------------


def _manifest(deb: Path, package: DocPackage) -> dict[str, Any]:
    return {
        "package": package.name,
        "deb": deb.name,
        "deb_size": deb.stat().st_size,
        "splitter": SPLITTER_VERSION,
        "doc_root": package.doc_root,
        "url_prefix": package.url_prefix,
        "skip": list(package.skip),
        "objects": sorted(package.objects),
    }


def _same_build(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    return all(previous.get(key) == value for key, value in current.items())


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial_file = path.with_name(path.name + ".part")
    partial_file.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(partial_file, path)
