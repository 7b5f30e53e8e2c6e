"""``search_cache``: an identical query (backend, text, limit) is answered from the file, across
connections (the concurrent rollouts of a trainer); errors are not cached; a damaged file is refused
with its name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from deepresearch.config import Settings
from deepresearch.errors import ConfigError, SearchError
from deepresearch.search.backends import open_search
from deepresearch.search.cache import CachedSearch
from deepresearch.search.local import LocalIndex
from tests.fakes.search_providers import API_KEY, FakeSearchProviders


def tavily(search_fake: FakeSearchProviders, cache: Path) -> Settings:
    return Settings.model_validate(
        {
            "search": "tavily",
            "search_endpoint": search_fake.endpoint("tavily"),
            "tavily_api_key": API_KEY,
            "search_cache": cache,
        }
    )


def test_identical_queries_are_answered_from_the_cache_across_connections(
    search_fake: FakeSearchProviders, tmp_path: Path
) -> None:
    settings = tavily(search_fake, tmp_path / "cache.sqlite")

    async def run() -> None:
        first, second = open_search(settings), open_search(settings)  # two rollouts, two connections
        try:
            fresh = await first.search("raft consensus", limit=5)
            again = await second.search("raft consensus", limit=5)
            assert [hit.url for hit in again] == [hit.url for hit in fresh] and fresh
            assert [(hit.title, hit.snippet) for hit in again] == [(hit.title, hit.snippet) for hit in fresh]
            assert len(search_fake.sent("tavily")) == 1
            await second.search("raft consensus", limit=3)  # another limit is another query
            await second.search("Raft consensus", limit=5)  # so is other text
            assert len(search_fake.sent("tavily")) == 3
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(run())


def test_errors_are_not_cached(search_fake: FakeSearchProviders, tmp_path: Path) -> None:
    settings = tavily(search_fake, tmp_path / "cache.sqlite")
    search_fake.fail("tavily", "500")  # every request, retries included

    async def run() -> None:
        backend = open_search(settings)
        try:
            with pytest.raises(SearchError):
                await backend.search("raft", limit=5)
            failed = len(search_fake.sent("tavily"))
            search_fake.failures.clear()
            assert await backend.search("raft", limit=5)  # asked again, answered, now cached
            assert await backend.search("raft", limit=5)
            assert len(search_fake.sent("tavily")) == failed + 1
        finally:
            await backend.aclose()

    asyncio.run(run())


def test_a_damaged_cache_file_is_refused_with_its_name(
    search_fake: FakeSearchProviders, tmp_path: Path
) -> None:
    damaged = tmp_path / "cache.sqlite"
    damaged.write_bytes(b"this is not a database" * 100)
    settings = tavily(search_fake, damaged)
    with pytest.raises(ConfigError, match=r"cache\.sqlite"):
        open_search(settings)


def test_the_local_index_keeps_its_documents_behind_the_cache(
    corpus_index: LocalIndex, tmp_path: Path
) -> None:
    settings = Settings(search="local", index=corpus_index.path, search_cache=tmp_path / "c.sqlite")

    async def run() -> None:
        backend = open_search(settings)
        try:
            hits = await backend.search("BM25", limit=3)
            assert hits
            inner = backend
            while not isinstance(inner, CachedSearch):
                inner = inner.backend  # type: ignore[attr-defined]
            assert await backend.get_document(hits[0].url) is not None  # type: ignore[attr-defined]
            await backend.search("BM25", limit=3)
            assert (inner.hits, inner.misses) == (1, 1)
        finally:
            await backend.aclose()

    asyncio.run(run())
