"""The fetch cache: a rerun reads what it read before without a request, within the TTL, and a broken
cache file never breaks a fetch.

Fetches go through ``HttpFetcher`` against the fake site, so "no request" is counted by the server;
expiry is simulated by ageing the stored rows rather than by waiting.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from deepresearch.errors import FetchError, URLBlocked
from deepresearch.fetch import Page
from deepresearch.fetch.cache import MIGRATIONS, FetchCache, cache_key
from deepresearch.fetch.http import FetchConfig, HttpFetcher
from tests.fakes.web_server import ARTICLE_TITLE, FakeWebSite


@pytest.fixture
def cached(config: FetchConfig, tmp_path: Path) -> FetchConfig:
    """``config`` with a cache file (not created yet) and a one-hour TTL."""
    return config.model_copy(update={"cache_path": tmp_path / "cache" / "fetch.sqlite", "cache_ttl_s": 3600})


def fetch(url: str, config: FetchConfig) -> Page:
    """One fetch with a fresh fetcher, as a resumed run or a rerun would make it."""

    async def main() -> Page:
        async with HttpFetcher(config) as fetcher:
            return await fetcher.fetch(url)

    return asyncio.run(main())


def age(path: Path, seconds: float) -> None:
    """Pretend every cached page was fetched ``seconds`` earlier."""
    with sqlite3.connect(path) as db:
        db.execute("UPDATE pages SET fetched_at = fetched_at - ?", (seconds,))
    db.close()


def test_second_fetch_is_served_from_the_cache(site: FakeWebSite, cached: FetchConfig) -> None:
    assert cached.cache_path is not None
    first = fetch(site.url("/counter"), cached)
    assert cached.cache_path.is_file()  # created by the first successful fetch
    second = fetch(site.url("/counter"), cached)
    assert site.hits["/counter"] == 1
    assert second == first and first.text.endswith("Served 1 time(s).")
    # The same page under another spelling of its URL.
    for variant in ("/counter/", "/counter?utm_source=newsletter", "/counter#top"):
        assert fetch(site.url(variant), cached).text == first.text
    assert site.hits["/counter"] == 1
    with sqlite3.connect(cached.cache_path) as db:
        names = [row[0] for row in db.execute("SELECT name FROM migrations")]
        (rows,) = db.execute("SELECT count(*) FROM pages").fetchone()
    db.close()
    assert names == [m.__name__ for m in MIGRATIONS] == ["m001_pages"]
    assert rows == 1


def test_expired_entry_is_fetched_again(site: FakeWebSite, cached: FetchConfig) -> None:
    assert cached.cache_path is not None
    fetch(site.url("/counter"), cached)
    age(cached.cache_path, 3599)
    assert fetch(site.url("/counter"), cached).text.endswith("Served 1 time(s).")
    age(cached.cache_path, 2)
    assert fetch(site.url("/counter"), cached).text.endswith("Served 2 time(s).")
    assert site.hits["/counter"] == 2
    assert fetch(site.url("/counter"), cached).text.endswith("Served 2 time(s).")  # refreshed entry


def test_redirected_page_is_cached_under_both_urls(site: FakeWebSite, cached: FetchConfig) -> None:
    page = fetch(site.url("/redirect/1"), cached)
    assert fetch(site.url("/articles/bloom-filters.html"), cached) == page
    assert fetch(site.url("/redirect/1"), cached).title == ARTICLE_TITLE
    assert site.hits["/articles/bloom-filters.html"] == 1 and site.hits["/redirect/1"] == 1


def test_errors_are_not_cached_and_a_zero_ttl_means_no_cache(site: FakeWebSite, cached: FetchConfig) -> None:
    assert cached.cache_path is not None
    for _ in range(2):
        with pytest.raises(FetchError, match="HTTP 404"):
            fetch(site.url("/status/404"), cached)
    assert site.hits["/status/404"] == 2
    assert not cached.cache_path.exists()  # nothing was worth storing, so no file
    off = cached.model_copy(update={"cache_ttl_s": 0})
    fetch(site.url("/counter"), off)
    fetch(site.url("/counter"), off)
    assert site.hits["/counter"] == 2 and not cached.cache_path.exists()


def test_a_page_that_needed_an_exemption_is_checked_again(site: FakeWebSite, cached: FetchConfig) -> None:
    fetch(site.url("/counter"), cached)  # allow_private=True
    allowlisted = cached.model_copy(update={"allow_private": False, "allowlist": ["127.0.0.1"]})
    assert fetch(site.url("/counter"), allowlisted).text.endswith("Served 1 time(s).")
    strict = cached.model_copy(update={"allow_private": False})
    with pytest.raises(URLBlocked, match="loopback"):
        fetch(site.url("/counter"), strict)
    assert site.hits["/counter"] == 1


def test_a_read_miss_creates_nothing(tmp_path: Path) -> None:
    cache = FetchCache(tmp_path / "deep" / "fetch.sqlite", ttl_s=60)
    assert asyncio.run(cache.get("https://example.org/")) is None
    assert not (tmp_path / "deep").exists()
    cache.close()


@pytest.mark.parametrize("kind", ["garbage", "foreign", "future"])
def test_an_unusable_cache_file_is_reported_once_and_bypassed(
    site: FakeWebSite, cached: FetchConfig, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    path = cached.cache_path
    assert path is not None
    path.parent.mkdir()
    if kind == "garbage":
        path.write_bytes(b"this is not an SQLite database at all " * 200)
    else:
        with sqlite3.connect(path) as db:
            if kind == "foreign":
                db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
            else:
                db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
                db.execute("INSERT INTO migrations VALUES ('m999_from_the_future', '2030-01-01')")
        db.close()
    before = path.read_bytes()

    async def twice() -> list[Page]:
        async with HttpFetcher(cached) as fetcher:
            return [await fetcher.fetch(site.url("/counter")), await fetcher.fetch(site.url("/counter"))]

    with caplog.at_level(logging.WARNING, logger="deepresearch.fetch.cache"):
        pages = asyncio.run(twice())
    assert [p.text[-17:] for p in pages] == ["Served 1 time(s).", "Served 2 time(s)."]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "is unusable" in warnings[0].getMessage()
    assert str(path) in warnings[0].getMessage()
    assert path.read_bytes() == before  # left as it was, for the user to look at


def test_cache_is_safe_across_threads(tmp_path: Path) -> None:
    cache = FetchCache(tmp_path / "fetch.sqlite", ttl_s=60)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                url = f"https://example.org/{n}/{i}"
                asyncio.run(cache.put(url, Page(url, f"t{n}-{i}", "text"), exempted=False))
                hit = asyncio.run(cache.get(url))
                assert hit is not None and hit.page.title == f"t{n}-{i}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cache.close()
    assert errors == []


def test_cache_key_ignores_what_does_not_change_the_page() -> None:
    key = cache_key("https://example.org/a?x=1&y=2")
    assert cache_key("http://EXAMPLE.org/a/?y=2&x=1&utm_campaign=z#section") == key
    assert cache_key("https://example.org/a?x=2&y=2") != key
