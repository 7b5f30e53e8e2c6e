"""Schema evolution for the package's SQLite files (the local index, the caches, the benchmark and
job stores): numbered, named migration functions, applied once each and recorded in a ``migrations``
table — a user's file is upgraded in place, never rebuilt behind their back.

Opening a file follows one of two policies. A store whose loss would be the user's (the benchmark
results, the server's jobs) opens with ``connect``, and a file that is not ours is an error naming it.
A cache (fetched pages, judge verdicts) opens through ``CacheFile``: created on the first write and
never by a read, and bypassed — reported once — when it cannot be used, because a cache must never be
the reason the work it speeds up fails.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

Migration = Callable[[sqlite3.Connection], None]


class Migrations(list[Migration]):
    """An ordered list of migrations; ``@migrations.register`` appends one (name it ``mNNN_what``)."""

    def register(self, function: Migration) -> Migration:
        self.append(function)
        return function


class NotOurs(Exception):
    """The file is an SQLite database this package cannot use; the message says why."""


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """An immediate write transaction (the connection runs in autocommit mode)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def apply_migrations(db: sqlite3.Connection, migrations: Migrations, *, what: str) -> list[str]:
    """Apply the migrations ``db`` has not seen, each in its own transaction; return their names.

    Raises ``NotOurs`` for a database without our ``migrations`` table (left untouched) or one that
    a newer version wrote (migrations we do not know).
    """
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "migrations" not in tables:
        raise NotOurs(f"it is an SQLite database, but not a deepresearch {what}")
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    applied = {row[0] for row in db.execute("SELECT name FROM migrations")}
    unknown = applied - {migration.__name__ for migration in migrations}
    if unknown:
        raise NotOurs(
            f"written by another program or a newer version (migrations {', '.join(sorted(unknown))})"
        )
    done = []
    for migration in migrations:
        if migration.__name__ in applied:
            continue
        with transaction(db):
            migration(db)
            db.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                (migration.__name__, datetime.now(UTC).isoformat(timespec="seconds")),
            )
        logger.info("%s: applied migration %s", what, migration.__name__)
        done.append(migration.__name__)
    return done


def connect(path: Path, migrations: Migrations, *, what: str) -> sqlite3.Connection:
    """Open (or create) one of our SQLite files for several threads: autocommit, up to date, WAL.

    For the stores whose loss would be the user's (the benchmark results, the server's jobs): a file
    that is not ours is a ``ConfigError`` naming it. The caches decide for themselves (they disable).
    """
    from deepresearch.errors import ConfigError

    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        apply_migrations(db, migrations, what=f"{what} ({path})")
        db.execute("PRAGMA journal_mode = WAL")
    except NotOurs as exc:
        db.close()
        raise ConfigError(f"{path}: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


_BUSY_WORDS = ("locked", "busy")
"""Errors that only mean another process holds the file right now: skip this call, keep the cache."""


class CacheFile:
    """One cache's SQLite file: one connection, guarded by a lock, shared by every thread.

    ``session(create=...)`` holds the lock and yields the open, migrated connection, or ``None`` when
    there is nothing to read (a read never creates the file) or the cache is unusable. SQLite errors
    raised inside it are swallowed there: a busy file skips that one call, anything else — a corrupt
    file, someone else's database, a full disk — disables the cache for this object, with one warning
    on ``log`` (``"{what} {path} is unusable (…); {without}"``). ``prepare(db, created)`` runs after the
    migrations on each new connection (pragmas, pruning); ``created`` says it was opened for a write.
    """

    def __init__(
        self,
        path: Path,
        migrations: Migrations,
        *,
        what: str,
        without: str,
        log: logging.Logger,
        prepare: Callable[[sqlite3.Connection, bool], None] | None = None,
    ) -> None:
        self.path = path
        self._migrations = migrations
        self._what = what
        self._without = without
        self._log = log
        self._prepare = prepare
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._broken = False

    def close(self) -> None:
        """Close the connection; a later session opens it again."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextlib.contextmanager
    def session(self, *, create: bool) -> Iterator[sqlite3.Connection | None]:
        """The connection under the lock (``None``: skip the call); code after the ``with`` runs when an
        SQLite error was swallowed."""
        with self._lock:
            try:
                db = self._connect(create=create)
            except sqlite3.Error as exc:
                self._bypass(exc, create)
                db = None
            try:
                yield db
            except sqlite3.Error as exc:
                self._bypass(exc, create)

    def _bypass(self, exc: sqlite3.Error, create: bool) -> None:
        """A busy file skips one call; any other SQLite error disables the cache."""
        if any(word in str(exc).lower() for word in _BUSY_WORDS):
            action = "write" if create else "read"
            self._log.debug("%s %s busy, skipping one %s: %s", self._what, self.path, action, exc)
        else:
            self._disable(str(exc))

    def _disable(self, reason: str) -> None:
        if not self._broken:
            self._log.warning("%s %s is unusable (%s); %s", self._what, self.path, reason, self._without)
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
            target, uri = self.path.absolute().as_uri() + "?mode=rw", True  # a read never creates it
        db = sqlite3.connect(target, uri=uri, timeout=5, isolation_level=None, check_same_thread=False)
        try:
            # first: a file that is not ours is left untouched
            apply_migrations(db, self._migrations, what=f"{self._what} ({self.path})")
            db.execute("PRAGMA journal_mode = WAL")
            if self._prepare is not None:
                self._prepare(db, create)
        except NotOurs as exc:
            db.close()
            self._disable(str(exc))
            return None
        except BaseException:
            db.close()
            raise
        self._db = db
        return db
