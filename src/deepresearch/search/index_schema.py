"""The local index's schema: numbered, named migrations, and the one query that ranks passages.

A user's index lives for years and is never rebuilt behind their back, so the schema only grows:
each change is a new ``mNNN_name`` function appended below, applied once in its own transaction and
recorded in the ``migrations`` table (``migrate``). An existing function is never edited. The ranking
query sits here too because it is written against these tables and nothing else.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from deepresearch.errors import SearchError
from deepresearch.migrations import Migrations, NotOurs, apply_migrations

logger = logging.getLogger(__name__)

MIGRATIONS = Migrations()
_migration = MIGRATIONS.register


@_migration
def m001_documents_and_passages(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            path TEXT NOT NULL,          -- the file it was read from (a JSONL file holds many)
            content_type TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            mtime REAL,
            added_at TEXT NOT NULL,      -- when this version of the content was indexed
            text TEXT NOT NULL           -- the whole extracted text: get_document, and rebuilding passages
        )
        """
    )
    db.execute("CREATE INDEX documents_path ON documents (path)")
    db.execute(
        """
        CREATE TABLE passages (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            heading TEXT NOT NULL,       -- Title > Section > Subsection
            text TEXT NOT NULL,
            heading_cjk TEXT NOT NULL,   -- CJK bigrams of heading, space-separated ('' when none)
            text_cjk TEXT NOT NULL,      -- CJK bigrams of text
            UNIQUE (document_id, ordinal)
        )
        """
    )


@_migration
def m002_passage_search(db: sqlite3.Connection) -> None:
    # External content: FTS5 keeps only its inverted index and reads column values from passages;
    # the triggers keep the two in step.
    db.execute(
        """
        CREATE VIRTUAL TABLE passages_fts USING fts5 (
            heading, text, heading_cjk, text_cjk,
            content = 'passages', content_rowid = 'id',
            tokenize = 'porter unicode61 remove_diacritics 2'
        )
        """
    )
    columns = "heading, text, heading_cjk, text_cjk"
    new = "new.id, new.heading, new.text, new.heading_cjk, new.text_cjk"
    old = "'delete', old.id, old.heading, old.text, old.heading_cjk, old.text_cjk"
    insert = f"INSERT INTO passages_fts (rowid, {columns}) VALUES ({new});"
    delete = f"INSERT INTO passages_fts (passages_fts, rowid, {columns}) VALUES ({old});"
    db.execute(f"CREATE TRIGGER passages_fts_insert AFTER INSERT ON passages BEGIN {insert} END")
    db.execute(f"CREATE TRIGGER passages_fts_delete AFTER DELETE ON passages BEGIN {delete} END")
    db.execute(f"CREATE TRIGGER passages_fts_update AFTER UPDATE ON passages BEGIN {delete} {insert} END")


@_migration
def m003_roots(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE roots (path TEXT PRIMARY KEY, added_at TEXT NOT NULL)")
    # Indexes made before roots were recorded: each indexed file becomes a root of its own.
    db.execute("INSERT INTO roots (path, added_at) SELECT path, min(added_at) FROM documents GROUP BY path")


@_migration
def m004_document_dates(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE documents ADD COLUMN published TEXT NOT NULL DEFAULT ''")


@_migration
def m005_links(db: sqlite3.Connection) -> None:
    # Outgoing links in document order; a target is a URL, indexed or not (the index may grow to
    # hold it). Documents indexed before this migration have none until their folder is added again.
    db.execute(
        """
        CREATE TABLE links (
            document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            target TEXT NOT NULL,        -- absolute, without a fragment
            text TEXT NOT NULL,          -- the anchor text ('' when none)
            PRIMARY KEY (document_id, ordinal)
        )
        """
    )
    db.execute("CREATE INDEX links_target ON links (target)")


SEARCH_SQL = """
-- Parameters: the four column weights, the MATCH expression, the sample size (-1: every match), K,
-- the per-document cap, the row limit.
-- Only the best K matches are joined and numbered: numbering every match of a query made of common
-- words cost ~100 ms on 100k passages. The caller widens K when the per-document cap leaves too few
-- rows (or too few pages) while more matches exist, so the result is the same as unbounded. A query
-- of function words alone scores only the first matches (the sample): scoring all of them is what
-- costs, ~1 µs a match, and they are most of the index.
WITH matched AS (
    SELECT passage_id, score FROM (
        SELECT rowid AS passage_id, bm25(passages_fts, ?, ?, ?, ?) AS score
        FROM passages_fts WHERE passages_fts MATCH ? LIMIT ?
    )
    ORDER BY score LIMIT ?
),
ranked AS (
    SELECT m.passage_id, m.score, p.document_id,
           row_number() OVER (PARTITION BY p.document_id ORDER BY m.score, p.ordinal) AS nth
    FROM matched AS m JOIN passages AS p ON p.id = m.passage_id
)
SELECT p.heading, p.text, d.url, d.published, r.score
FROM ranked AS r
JOIN passages AS p ON p.id = r.passage_id
JOIN documents AS d ON d.id = r.document_id
WHERE r.nth <= ?
ORDER BY r.score, p.id
LIMIT ?
"""


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the index's schema up to date (``SearchError`` for a file that is not an index of ours)."""
    try:
        apply_migrations(db, MIGRATIONS, what=f"index ({path})")
    except NotOurs as exc:
        raise SearchError(f"{path}: {exc}") from exc


COUNT_UP_TO_SQL = "SELECT count(*) FROM (SELECT 1 FROM passages_fts WHERE passages_fts MATCH ? LIMIT ?)"
"""How many passages match, counting no further than the given bound."""
