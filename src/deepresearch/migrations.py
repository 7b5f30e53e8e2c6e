"""Schema evolution for the package's SQLite files (the local index, the fetch cache, later the
benchmark store): numbered, named migration functions, applied once each and recorded in a
``migrations`` table — a user's file is upgraded in place, never rebuilt behind their back.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
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
