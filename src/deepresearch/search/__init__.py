"""Search backends: one protocol, a local paragraph index as the default, web providers by name.

A backend is anything with ``name`` and ``async search(query, limit=…)`` returning ``SearchHit``s. A
failing backend raises ``SearchError`` with a message that says which backend and why — a bad answer
is an error the model sees, never a silent empty list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from deepresearch.fetch import Page


@dataclass(slots=True)
class SearchHit:
    """One result, in the shape every backend returns."""

    title: str
    url: str
    snippet: str = ""
    content: str = ""
    """Longer text when the backend has it (a passage of a local document, a provider's page extract)."""
    published: str = ""
    rank: int = 0
    """1-based position in the backend's own ranking."""
    score: float | None = None


@runtime_checkable
class SearchBackend(Protocol):
    name: str

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]: ...

    async def aclose(self) -> None:
        """Release what the backend holds (connections, the index file)."""


@runtime_checkable
class DocumentStore(Protocol):
    """A backend that also holds whole documents (the local index): ``batch_open`` asks it first."""

    async def get_document(self, url: str) -> Page | None: ...
