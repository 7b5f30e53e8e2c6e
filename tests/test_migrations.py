import sqlite3

import pytest

from deepresearch.migrations import Migrations, NotOurs, apply_migrations


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
