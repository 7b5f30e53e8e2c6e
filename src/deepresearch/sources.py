"""The run's source registry: every URL the agent saw gets one citation key, and only the registry
knows which URL a key stands for.

The model cites keys (``\\cite{web_1a2b3c4d}``); the report renderer asks this registry what they mean,
so a key the model invents resolves to nothing instead of to a plausible link. A key is a stable
function of the *normalised* URL, so the same page found by two queries, with or without tracking
parameters, is one source with one number in the report.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

KEY_PREFIX = "web_"
KEY_PATTERN = re.compile(r"web_[0-9a-f]{8,16}")
_TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z_]+|gclid|fbclid|msclkid|dclid|yclid|mc_cid|mc_eid|ref_src|_hsenc|_hsmi|igshid)$", re.I
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str) -> str:
    """The form two URLs share when they name the same page (for keys; never shown to users)."""
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return url
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port if parts.port and parts.port != _DEFAULT_PORTS.get(scheme) else None
    netloc = f"{host}:{port}" if port else host
    path = re.sub(r"/{2,}", "/", parts.path or "/")
    if len(path) > 1:
        path = path.rstrip("/")
    query = urlencode(
        sorted(
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING_PARAMS.match(k)
        )
    )
    fragment = "" if parts.fragment.startswith(":~:") else parts.fragment
    return urlunsplit(("https", netloc, path, query, fragment))


def cite_key(url: str, length: int = 8) -> str:
    """``web_`` + the first ``length`` hex digits of the SHA-1 of the normalised URL."""
    return KEY_PREFIX + hashlib.sha1(normalize_url(url).encode("utf-8")).hexdigest()[:length]


@dataclass(slots=True)
class Source:
    """One URL the agent saw: as a search hit (``fetched`` False) or as a page it opened."""

    key: str
    url: str
    title: str = ""
    snippet: str = ""
    fetched: bool = False
    step: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SourceRegistry:
    """URL → key → source, in order of first sight."""

    def __init__(self) -> None:
        self._by_key: dict[str, Source] = {}
        self._by_norm: dict[str, Source] = {}

    def add(
        self, url: str, *, title: str = "", snippet: str = "", fetched: bool = False, step: int = 0
    ) -> Source:
        """Register a sighting; a known URL keeps its key and gains a better title, snippet or ``fetched``."""
        norm = normalize_url(url)
        source = self._by_norm.get(norm)
        if source is None:
            key = cite_key(url)
            length = 8
            while key in self._by_key:  # a 32-bit collision: lengthen deterministically
                length += 2
                key = cite_key(url, length)
            source = Source(
                key=key, url=url.strip(), title=title, snippet=snippet, fetched=fetched, step=step
            )
            self._by_key[key] = source
            self._by_norm[norm] = source
            return source
        if title and (not source.title or fetched):
            source.title = title
        if snippet and not source.snippet:
            source.snippet = snippet
        source.fetched = source.fetched or fetched
        return source

    def get(self, key: str) -> Source | None:
        return self._by_key.get(key)

    def lookup_url(self, url: str) -> Source | None:
        return self._by_norm.get(normalize_url(url))

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        """Replay sightings recorded in events (resume): same order, hence the same keys."""
        for record in records:
            self.add(
                record["url"],
                title=record.get("title", ""),
                snippet=record.get("snippet", ""),
                fetched=bool(record.get("fetched")),
                step=int(record.get("step", 0)),
            )

    def __iter__(self) -> Iterator[Source]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key
