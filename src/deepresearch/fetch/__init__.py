"""Reading pages: a fetcher protocol, the HTTP fetcher, and extractors from bytes to text.

``Fetcher.fetch(url)`` returns a ``Page`` (readable text plus title) or raises ``FetchError``; every
refusal (private address, oversized body, timeout) is a ``FetchError`` subclass whose message the
model can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(slots=True)
class Page:
    """A document read for the agent: ``text`` is Markdown-ish plain text, ``url`` the final URL."""

    url: str
    title: str
    text: str
    content_type: str = ""
    status: int = 200
    published: str = ""
    """Publication date (``YYYY-MM-DD``) when the document states one, else empty."""


@runtime_checkable
class Fetcher(Protocol):
    async def fetch(self, url: str) -> Page: ...
