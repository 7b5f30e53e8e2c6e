"""The base of backends that wrap another one (re-rankers): documents and closing go to the inner one."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from deepresearch.fetch import Page
from deepresearch.search import DocumentStore, SearchBackend


class WrappedBackend:
    """Keeps the inner backend's ``name``; subclasses implement ``search``."""

    def __init__(self, backend: SearchBackend) -> None:
        self.backend = backend
        self.name = backend.name

    async def get_document(self, url: str) -> Page | None:
        """The wrapped backend's stored document, or ``None`` when it holds no documents."""
        if isinstance(self.backend, DocumentStore):
            return await self.backend.get_document(url)
        return None

    def close(self) -> None:
        """Close the wrapped backend if it has a synchronous ``close``."""
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()

    async def aclose(self) -> None:
        """Close the wrapped backend."""
        await self.backend.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
