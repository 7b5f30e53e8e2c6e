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
in a worker thread; one connection, guarded by a lock, serves all threads.

A page that the SSRF guard let through only by an exemption (``allow_private`` or the allowlist) is
marked, so the fetcher checks its URL again under the current configuration before serving it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag

from deepresearch.fetch import Page
from deepresearch.migrations import Migrations, NotOurs, apply_migrations, transaction
from deepresearch.sources import normalize_url

logger = logging.getLogger(__name__)

_BUSY_WORDS = ("locked", "busy")
"""Errors that only mean another process holds the file right now: skip this call, keep the cache."""


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
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._broken = False

    def close(self) -> None:
        """Close the connection; a later call opens it again."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def get(self, url: str) -> CachedPage | None:
        """The fresh cached page for ``url``, or ``None`` (a miss, an expired entry, or no usable cache)."""
        return await asyncio.to_thread(self._get, cache_key(url))

    async def put(self, url: str, page: Page, *, exempted: bool) -> None:
        """Store ``page`` under ``url`` and under its final URL (``page.url``)."""
        keys = list(dict.fromkeys([cache_key(url), cache_key(page.url)]))
        await asyncio.to_thread(self._put, keys, page, exempted)

    def _get(self, key: str) -> CachedPage | None:
        with self._lock, self._guard("read"):
            db = self._connect(create=False)
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
        return None  # the guard swallowed an error

    def _put(self, keys: list[str], page: Page, exempted: bool) -> None:
        with self._lock, self._guard("write"):
            db = self._connect(create=True)
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

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn SQLite errors into a bypass: a busy file skips one call, anything else disables the cache."""
        try:
            yield
        except sqlite3.Error as exc:
            if any(word in str(exc).lower() for word in _BUSY_WORDS):
                logger.debug("fetch cache %s busy, skipping one %s: %s", self.path, action, exc)
                return
            self._disable(str(exc))

    def _disable(self, reason: str) -> None:
        if not self._broken:
            logger.warning("fetch cache %s is unusable (%s); fetching without it", self.path, reason)
        self._broken = True
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        """The open, migrated connection (lock held); ``None`` when there is nothing to read or it broke."""
        if self._broken:
            return None
        if self._db is not None:
            return self._db
        if not create and not self.path.is_file():
            return None
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._disable(f"cannot create {self.path.parent}: {exc.strerror or exc}")
                return None
            target, uri = str(self.path), False
        else:
            # mode=rw: a read never creates the file.
            target, uri = self.path.absolute().as_uri() + "?mode=rw", True
        db = sqlite3.connect(target, uri=uri, timeout=5, isolation_level=None, check_same_thread=False)
        try:
            problem = _migrate(db, self.path)  # first: a file that is not ours is left untouched
            if problem is not None:
                db.close()
                self._disable(problem)
                return None
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            if create:
                pruned = db.execute(
                    "DELETE FROM pages WHERE fetched_at < ?", (self._clock() - self.ttl_s,)
                ).rowcount
                if pruned:
                    logger.debug("fetch cache %s: pruned %d expired pages", self.path, pruned)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db


def _migrate(db: sqlite3.Connection, path: Path) -> str | None:
    """Apply the migrations this file has not seen; why it cannot be used, or ``None``."""
    try:
        apply_migrations(db, MIGRATIONS, what=f"fetch cache ({path})")
    except NotOurs as exc:
        return str(exc)
    return None
