import logging
import sqlite3

import pytest

from deepresearch.migrations import CacheFile, Migrations, NotOurs, apply_migrations


def test_migrations_apply_once_in_order_and_refuse_foreign_or_newer_files(tmp_path):
    migrations = Migrations()

    @migrations.register
    def m001_things(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE things (x INTEGER)")

    db = sqlite3.connect(tmp_path / "a.sqlite", isolation_level=None)
    assert apply_migrations(db, migrations, what="test store") == ["m001_things"]
    assert apply_migrations(db, migrations, what="test store") == []

    @migrations.register
    def m002_more(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE things ADD COLUMN y TEXT")

    assert apply_migrations(db, migrations, what="test store") == ["m002_more"]
    older = Migrations([m001_things])
    with pytest.raises(NotOurs, match="newer version"):
        apply_migrations(db, older, what="test store")
    db.close()

    foreign = sqlite3.connect(tmp_path / "b.sqlite", isolation_level=None)
    foreign.execute("CREATE TABLE other (z)")
    with pytest.raises(NotOurs, match="not a deepresearch test store"):
        apply_migrations(foreign, migrations, what="test store")
    assert [r[0] for r in foreign.execute("SELECT name FROM sqlite_master")] == ["other"]
    foreign.close()


def test_a_failing_migration_leaves_nothing_half_done(tmp_path):
    migrations = Migrations()

    @migrations.register
    def m001_broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE t (x)")
        raise RuntimeError("boom")

    db = sqlite3.connect(tmp_path / "c.sqlite", isolation_level=None)
    with pytest.raises(RuntimeError):
        apply_migrations(db, migrations, what="test store")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert "t" not in tables and list(db.execute("SELECT * FROM migrations")) == []
    db.close()


def _cache_file(tmp_path, log_name="tests.cache"):
    migrations = Migrations()

    @migrations.register
    def m001_items(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE items (k TEXT PRIMARY KEY)")

    prepared: list[bool] = []
    cache = CacheFile(
        tmp_path / "deep" / "c.sqlite",
        migrations,
        what="test cache",
        without="working without it",
        log=logging.getLogger(log_name),
        prepare=lambda db, created: prepared.append(created),
    )
    return cache, prepared


def test_a_cache_file_is_created_by_a_write_only_and_prepared_per_connection(tmp_path):
    cache, prepared = _cache_file(tmp_path)
    with cache.session(create=False) as db:
        assert db is None  # nothing to read, and the read created nothing
    assert not (tmp_path / "deep").exists() and prepared == []
    with cache.session(create=True) as db:
        assert db is not None
        db.execute("INSERT INTO items VALUES ('a')")
    with cache.session(create=False) as again:
        assert again is db  # one connection serves every call
    assert prepared == [True]
    cache.close()
    with cache.session(create=False) as db:
        assert db is not None and db.execute("SELECT k FROM items").fetchall() == [("a",)]
    assert prepared == [True, False]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    cache.close()


def test_a_busy_cache_skips_one_call_and_a_broken_one_is_bypassed_with_one_warning(tmp_path, caplog):
    cache, _ = _cache_file(tmp_path)
    after: list[str] = []
    for reason in ("database is locked", "database is busy"):
        with cache.session(create=True) as db:
            assert db is not None
            raise sqlite3.OperationalError(reason)
        after.append(reason)  # the session swallowed it
    with cache.session(create=True) as db:
        assert db is not None  # still in use
    with caplog.at_level(logging.DEBUG, logger="tests.cache"):
        with cache.session(create=True) as db:
            assert db is not None
            raise sqlite3.DatabaseError("database disk image is malformed")
        for create in (True, False, True):
            with cache.session(create=create) as db:
                assert db is None  # disabled for good: no second warning either
    assert after == ["database is locked", "database is busy"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"test cache {cache.path} is unusable (database disk image is malformed); working without it"
    ]


def test_a_cache_file_that_is_not_ours_is_left_untouched(tmp_path, caplog):
    cache, prepared = _cache_file(tmp_path)
    cache.path.parent.mkdir()
    with sqlite3.connect(cache.path) as foreign:
        foreign.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    foreign.close()
    before = cache.path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="tests.cache"):
        for create in (False, True):
            with cache.session(create=create) as db:
                assert db is None
    assert prepared == [] and cache.path.read_bytes() == before
    [warning] = caplog.records
    assert "not a deepresearch test cache" in warning.getMessage()
