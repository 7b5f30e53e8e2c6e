"""A local SQLite cache of extracted pages, so resumed runs and benchmark reruns do not refetch.

Reading a page costs the site a request, costs us seconds, and may give a different answer next time;
a run that is resumed, or a benchmark question asked again, should read what it read before. The
cache stores the *extracted* page (final URL, status, content type, title, text, date), keyed by the
normalised URL (``deepresearch.sources.normalize_url`` without the fragment), so ``http``/``https``,
tracking parameters and trailing slashes do not split entries. Only pages that were read successfully
are stored; errors are always retried.

The contract: the file is created on the first write and never by a read; entries older than the
TTL are misses (and are pruned when the cache is first opened for writing); the schema grows only
through the numbered migrations below, recorded in ``migrations``. A cache that cannot be used (a
corrupt file, someone else's database, a full disk) is reported once as a warning and then bypassed
— a cache must never be the reason a fetch fails. SQLite calls block, so the async methods run them
in a worker thread; one connection, guarded by a lock, serves all threads (``migrations.CacheFile``,
shared with the judge cache).

A page that the SSRF guard let through only by an exemption (``allow_private`` or the allowlist) is
marked, so the fetcher checks its URL again under the current configuration before serving it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag

from deepresearch.fetch import Page
from deepresearch.migrations import CacheFile, Migrations, transaction
from deepresearch.sources import normalize_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedPage:
    """A cache hit: the page, when it was fetched (Unix time), and whether it needed an exemption."""

    page: Page
    fetched_at: float
    exempted: bool


MIGRATIONS = Migrations()
_migration = MIGRATIONS.register


@_migration
def m001_pages(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE pages (
            key TEXT PRIMARY KEY,          -- normalised requested or final URL, without fragment
            url TEXT NOT NULL,             -- the final URL (after redirects)
            status INTEGER NOT NULL,
            content_type TEXT NOT NULL,
            title TEXT NOT NULL,
            text TEXT NOT NULL,
            published TEXT NOT NULL,
            exempted INTEGER NOT NULL,     -- 1: passed the SSRF guard only by allow_private/allowlist
            fetched_at REAL NOT NULL       -- Unix time
        )
        """
    )
    db.execute("CREATE INDEX pages_fetched_at ON pages (fetched_at)")


def cache_key(url: str) -> str:
    """The key two URLs share when they name the same page."""
    return normalize_url(urldefrag(url.strip())[0])


class FetchCache:
    """Extracted pages by URL, fresh for ``ttl_s`` seconds, in one SQLite file at ``path``."""

    def __init__(self, path: Path, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self._clock = clock
        self._file = CacheFile(
            path,
            MIGRATIONS,
            what="fetch cache",
            without="fetching without it",
            log=logger,
            prepare=self._prepare,
        )

    def close(self) -> None:
        """Close the connection; a later call opens it again."""
        self._file.close()

    async def get(self, url: str) -> CachedPage | None:
        """The fresh cached page for ``url``, or ``None`` (a miss, an expired entry, or no usable cache)."""
        return await asyncio.to_thread(self._get, cache_key(url))

    async def put(self, url: str, page: Page, *, exempted: bool) -> None:
        """Store ``page`` under ``url`` and under its final URL (``page.url``)."""
        keys = list(dict.fromkeys([cache_key(url), cache_key(page.url)]))
        await asyncio.to_thread(self._put, keys, page, exempted)

    def _get(self, key: str) -> CachedPage | None:
        with self._file.session(create=False) as db:
            if db is None:
                return None
            row = db.execute(
                "SELECT url, status, content_type, title, text, published, exempted, fetched_at"
                " FROM pages WHERE key = ? AND fetched_at >= ?",
                (key, self._clock() - self.ttl_s),
            ).fetchone()
            if row is None:
                return None
            url, status, content_type, title, text, published, exempted, fetched_at = row
            page = Page(url, title, text, content_type=content_type, status=status, published=published)
            return CachedPage(page, fetched_at, bool(exempted))
        return None  # the session swallowed an SQLite error

    def _put(self, keys: list[str], page: Page, exempted: bool) -> None:
        with self._file.session(create=True) as db:
            if db is None:
                return
            now = self._clock()
            with transaction(db):
                db.executemany(
                    "INSERT OR REPLACE INTO pages (key, url, status, content_type, title, text, published,"
                    " exempted, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            key,
                            page.url,
                            page.status,
                            page.content_type,
                            page.title,
                            page.text,
                            page.published,
                            int(exempted),
                            now,
                        )
                        for key in keys
                    ],
                )

    def _prepare(self, db: sqlite3.Connection, created: bool) -> None:
        """A new connection: faster commits, and expired pages pruned when it is opened for a write."""
        db.execute("PRAGMA synchronous = NORMAL")
        if created:
            pruned = db.execute(
                "DELETE FROM pages WHERE fetched_at < ?", (self._clock() - self.ttl_s,)
            ).rowcount
            if pruned:
                logger.debug("fetch cache %s: pruned %d expired pages", self.path, pruned)
