"""The local index: the user's own documents, searchable offline by paragraph, in one SQLite file.

It is the default search backend, so the agent works with no web provider and no network. Documents
(Markdown, text, reStructuredText, HTML, PDF, JSONL records) are cut into paragraph passages
(``passages.py``) and ranked with SQLite FTS5's BM25; a hit is one passage with its heading path, and
the whole document stays stored so ``batch_open`` can read it (``get_document``). Re-adding a folder
only re-indexes files whose content changed.

Chinese and Japanese: FTS5's ``unicode61`` tokenizer treats a run of CJK characters as one token, so
"检索" would never match inside "全文检索系统". We index every CJK run a second time as overlapping
character bigrams (in the ``*_cjk`` columns) and turn CJK in queries into the same bigrams. We chose
bigrams over FTS5's ``trigram`` tokenizer because most Chinese words are two characters long and a
trigram index cannot match a query shorter than three characters; bigrams also leave the English
index (porter-stemmed words) untouched instead of duplicating all text into a second, three times
larger trigram table.

The schema only grows through the numbered migration functions below, recorded in ``migrations``.
SQLite calls block, so the async methods run them in a worker thread; one connection, guarded by a
lock, serves all threads. The file is in WAL mode, so another process may search while one adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from deepresearch.errors import FetchError, SearchError
from deepresearch.fetch import Page
from deepresearch.fetch.extract import decode_text, extract
from deepresearch.search import SearchHit
from deepresearch.search.passages import (
    CJK_RUN_RE,
    Markup,
    cjk_grams,
    document_title,
    make_snippet,
    split_passages,
)

logger = logging.getLogger(__name__)

TEXT_SUFFIXES: dict[str, Markup] = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".rst": "rst"}
EXTRACTED_SUFFIXES: dict[str, str] = {".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf"}
JSONL_SUFFIX = ".jsonl"
SUPPORTED_SUFFIXES = frozenset({*TEXT_SUFFIXES, *EXTRACTED_SUFFIXES, JSONL_SUFFIX})

MAX_PASSAGES_PER_DOCUMENT = 3
"""Hits per document in one result list, so one long document cannot fill it."""
BM25_WEIGHTS = (0.5, 1.0, 0.5, 1.0)
"""Column weights for heading, text, heading_cjk, text_cjk: every passage of a document repeats its
heading path, so a heading match only breaks ties between passages whose text matches."""
MAX_QUERY_TERMS = 32
INDEX_FORMAT = "passages-v1"
"""Mixed into content hashes: changing how documents are cut must re-index unchanged files."""

_WORD_RE = re.compile(r"\w+")
# Dropped from queries unless nothing else is left: they would pull in every passage.
_STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "in", "is", "it"}
    | {"not", "of", "on", "or", "that", "the", "this", "to", "was", "what", "when", "where", "which", "who"}
    | {"why", "with"}
)


def default_index_path() -> Path:
    """``$XDG_DATA_HOME/deepresearch/index.sqlite``, else ``~/.local/share/deepresearch/index.sqlite``.

    Nothing is created here. (Reading the environment belongs to the config module; it will pass
    the path explicitly once it exists.)
    """
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "deepresearch" / "index.sqlite"


@dataclass(slots=True)
class AddReport:
    """What ``add_paths`` did; ``errors`` holds one ``path[:line]: reason`` per document it could not load."""

    added: int = 0
    replaced: int = 0
    """Documents whose content changed and whose passages were rebuilt."""
    skipped: int = 0
    """Documents whose content hash matched the stored one."""
    removed: int = 0
    """Documents dropped because they disappeared from a re-added JSONL file."""
    passages: int = 0
    """Passages written for added and replaced documents."""
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IndexStats:
    path: Path
    documents: int
    passages: int
    sources: int
    """Distinct files the documents came from."""
    size_bytes: int


class FtsQuery(NamedTuple):
    """A free-text query made safe for FTS5 ``MATCH``, plus the terms used to place snippets."""

    match: str
    terms: list[str]


def build_fts_query(text: str) -> FtsQuery | None:
    """Quote each word and OR them; CJK runs become bigrams. ``None`` when nothing searchable is left.

    Only ``\\w`` runs survive, so FTS5 syntax in the input (quotes, ``*``, ``:``, parentheses, ``-``,
    ``NEAR``) is either dropped or quoted into a plain term and can never raise.
    """
    words: list[str] = []
    grams: list[str] = []
    for token in _WORD_RE.findall(text.lower()):
        position = 0
        for run in CJK_RUN_RE.finditer(token):
            words.extend(part for part in token[position : run.start()].split("_") if part)
            grams.extend(cjk_grams(run.group()))
            position = run.end()
        words.extend(part for part in token[position:].split("_") if part)
    content_words = [w for w in words if w not in _STOPWORDS] or words
    terms = list(dict.fromkeys([*content_words, *grams]))[:MAX_QUERY_TERMS]
    if not terms:
        return None
    # A lone CJK character is only indexed inside bigrams: match it as a prefix.
    match = " OR ".join(f'"{t}"*' if len(t) == 1 and CJK_RUN_RE.fullmatch(t) else f'"{t}"' for t in terms)
    return FtsQuery(match=match, terms=terms)


# --- schema -------------------------------------------------------------------------------------

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def _migration(function: Migration) -> Migration:
    MIGRATIONS.append(function)
    return function


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


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_SEARCH_SQL = """
WITH matched AS (
    SELECT rowid AS passage_id, bm25(passages_fts, ?, ?, ?, ?) AS score
    FROM passages_fts WHERE passages_fts MATCH ?
),
ranked AS (
    SELECT m.passage_id, m.score, p.document_id,
           row_number() OVER (PARTITION BY p.document_id ORDER BY m.score, p.ordinal) AS nth
    FROM matched AS m JOIN passages AS p ON p.id = m.passage_id
)
SELECT p.heading, p.text, d.url, r.score
FROM ranked AS r
JOIN passages AS p ON p.id = r.passage_id
JOIN documents AS d ON d.id = r.document_id
WHERE r.nth <= ?
ORDER BY r.score, p.id
LIMIT ?
"""


# --- loading files ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Document:
    url: str
    title: str
    text: str
    markup: Markup
    content_type: str
    content_hash: str


def _digest(*parts: bytes | str) -> str:
    sha = hashlib.sha256(INDEX_FORMAT.encode())
    for part in parts:
        sha.update(b"\0")
        sha.update(part.encode() if isinstance(part, str) else part)
    return sha.hexdigest()


def _fallback_title(path: Path) -> str:
    return path.stem.replace("_", " ").replace("-", " ").strip() or path.name


def _load_file(path: Path, data: bytes, errors: list[str]) -> list[_Document]:
    """The documents in one file; problems are appended to ``errors`` as ``path[:line]: reason``."""
    suffix = path.suffix.lower()
    url = path.as_uri()
    if suffix == JSONL_SUFFIX:
        return _load_jsonl(path, data, errors)
    if suffix in TEXT_SUFFIXES:
        markup = TEXT_SUFFIXES[suffix]
        text = decode_text(data, None).strip()
        title = document_title(text, markup=markup, fallback=_fallback_title(path))
        content_type = "text/markdown" if markup == "markdown" else "text/plain"
        return [_Document(url, title, text, markup, content_type, _digest(data))]
    content_type = EXTRACTED_SUFFIXES[suffix]
    try:
        title, text = extract(data, content_type, url)
    except FetchError as exc:
        errors.append(f"{path}: {exc}")
        return []
    extracted_markup: Markup = "markdown" if content_type == "text/html" else "text"
    return [
        _Document(url, title or _fallback_title(path), text, extracted_markup, content_type, _digest(data))
    ]


def _load_jsonl(path: Path, data: bytes, errors: list[str]) -> list[_Document]:
    """One document per line ``{id, title, url, text}``; a bad line is reported and the rest still load."""
    documents: list[_Document] = []
    for number, line in enumerate(decode_text(data, None).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            errors.append(f"{path}:{number}: invalid JSON ({exc})")
            continue
        if not isinstance(record, dict):
            errors.append(f"{path}:{number}: expected an object with id, title, url and text")
            continue
        text, title, url, key = (record.get(name) for name in ("text", "title", "url", "id"))
        if not isinstance(text, str) or not text.strip():
            errors.append(f"{path}:{number}: missing or empty 'text'")
            continue
        if any(value is not None and not isinstance(value, str | int) for value in (title, url, key)):
            errors.append(f"{path}:{number}: 'id', 'title' and 'url' must be strings")
            continue
        if not url:
            url = f"{path.as_uri()}#{key if key not in (None, '') else f'line-{number}'}"
        title = str(title).strip() if title else document_title(text, markup="markdown", fallback=str(url))
        documents.append(
            _Document(
                str(url), title, text.strip(), "markdown", "text/markdown", _digest(str(url), title, text)
            )
        )
    return documents


def _iter_files(paths: Iterable[Path | str], errors: list[str]) -> Iterator[Path]:
    """Supported files under ``paths`` (folders recursively, hidden entries skipped), each once, resolved."""
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                candidates = [Path(root, name) for name in sorted(files) if not name.startswith(".")]
                found = [p.resolve() for p in candidates if p.suffix.lower() in SUPPORTED_SUFFIXES]
                for file in found:
                    if file not in seen:
                        seen.add(file)
                        yield file
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
                errors.append(f"{path}: unsupported file type (supported: {supported})")
            elif path.resolve() not in seen:
                seen.add(path.resolve())
                yield path.resolve()
        else:
            errors.append(f"{path}: no such file or directory")


# --- the index ----------------------------------------------------------------------------------


class LocalIndex:
    """Paragraph-level BM25 search over local documents in one SQLite file; also a ``DocumentStore``."""

    name = "local"

    def __init__(self, path: Path, *, max_per_document: int = MAX_PASSAGES_PER_DOCUMENT) -> None:
        self.path = path
        self.max_per_document = max_per_document
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> LocalIndex:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection; the next call opens it again."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- writing --

    def add_paths(self, paths: Iterable[Path | str]) -> AddReport:
        """Index files and folders; unchanged documents are skipped, changed ones re-indexed."""
        report = AddReport()
        for file in _iter_files(paths, report.errors):
            try:
                data = file.read_bytes()
                mtime = file.stat().st_mtime
            except OSError as exc:
                report.errors.append(f"{file}: {exc.strerror or exc}")
                continue
            documents = _load_file(file, data, report.errors)
            with self._lock:
                db = self._connect(create=True)
                try:
                    with _transaction(db):
                        self._store(db, file, mtime, documents, report)
                except sqlite3.Error as exc:
                    raise SearchError(
                        f"could not write {file} to the local index at {self.path}: {exc}"
                    ) from exc
        logger.info(
            "local index %s: %d added, %d replaced, %d unchanged, %d removed, %d passages, %d errors",
            self.path,
            report.added,
            report.replaced,
            report.skipped,
            report.removed,
            report.passages,
            len(report.errors),
        )
        return report

    def _store(
        self, db: sqlite3.Connection, file: Path, mtime: float, documents: list[_Document], report: AddReport
    ) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for doc in documents:
            row = db.execute("SELECT id, content_hash FROM documents WHERE url = ?", (doc.url,)).fetchone()
            if row is not None and row[1] == doc.content_hash:
                report.skipped += 1
                continue
            values = (doc.title, str(file), doc.content_type, doc.content_hash, mtime, now, doc.text)
            if row is None:
                document_id = db.execute(
                    "INSERT INTO documents"
                    " (title, path, content_type, content_hash, mtime, added_at, text, url)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, doc.url),
                ).lastrowid
                report.added += 1
            else:
                document_id = row[0]
                db.execute("DELETE FROM passages WHERE document_id = ?", (document_id,))
                db.execute(
                    "UPDATE documents SET title = ?, path = ?, content_type = ?, content_hash = ?, mtime = ?,"
                    " added_at = ?, text = ? WHERE id = ?",
                    (*values, document_id),
                )
                report.replaced += 1
            passages = split_passages(doc.text, title=doc.title, markup=doc.markup)
            db.executemany(
                "INSERT INTO passages (document_id, ordinal, heading, text, heading_cjk, text_cjk)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        document_id,
                        p.ordinal,
                        p.heading,
                        p.text,
                        " ".join(cjk_grams(p.heading)),
                        " ".join(cjk_grams(p.text)),
                    )
                    for p in passages
                ],
            )
            report.passages += len(passages)
        # Records that vanished from a re-added JSONL file (or a file that now yields nothing) go.
        kept = {doc.url for doc in documents}
        stale = [
            document_id
            for document_id, url in db.execute("SELECT id, url FROM documents WHERE path = ?", (str(file),))
            if url not in kept
        ]
        report.removed += self._delete(db, stale)

    @staticmethod
    def _delete(db: sqlite3.Connection, document_ids: list[int]) -> int:
        for document_id in document_ids:
            db.execute("DELETE FROM passages WHERE document_id = ?", (document_id,))
            db.execute("DELETE FROM documents WHERE id = ?", (document_id,))
        return len(document_ids)

    def remove(self, items: Iterable[Path | str]) -> int:
        """Remove documents by URL, or by file or folder path; returns how many documents went."""
        with self._lock:
            db = self._connect(create=False)
            try:
                with _transaction(db):
                    ids: list[int] = []
                    for item in items:
                        if isinstance(item, str) and "://" in item:
                            rows = db.execute("SELECT id FROM documents WHERE url = ?", (item,))
                        else:
                            path = str(Path(item).expanduser().resolve())
                            prefix = path.rstrip(os.sep) + os.sep
                            rows = db.execute(
                                "SELECT id FROM documents WHERE path = ? OR substr(path, 1, ?) = ?",
                                (path, len(prefix), prefix),
                            )
                        ids.extend(row[0] for row in rows if row[0] not in ids)
                    removed = self._delete(db, ids)
            except sqlite3.Error as exc:
                raise SearchError(
                    f"could not remove documents from the local index at {self.path}: {exc}"
                ) from exc
        logger.info("local index %s: removed %d documents", self.path, removed)
        return removed

    # -- reading --

    def stats(self) -> IndexStats:
        """Counts of documents, passages and source files, and the file size."""
        with self._lock:
            db = self._connect(create=False)
            try:
                documents, sources = db.execute(
                    "SELECT count(*), count(DISTINCT path) FROM documents"
                ).fetchone()
                (passages,) = db.execute("SELECT count(*) FROM passages").fetchone()
            except sqlite3.Error as exc:
                raise SearchError(f"could not read the local index at {self.path}: {exc}") from exc
        return IndexStats(self.path, documents, passages, sources, self.path.stat().st_size)

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        """Best passages for ``query`` by BM25, at most ``max_per_document`` per document."""
        return await asyncio.to_thread(self._search, query, limit)

    def _search(self, query: str, limit: int) -> list[SearchHit]:
        fts = build_fts_query(query)
        with self._lock:
            db = self._connect(create=False)
            if fts is None or limit <= 0:
                return []
            try:
                rows = db.execute(
                    _SEARCH_SQL, (*BM25_WEIGHTS, fts.match, self.max_per_document, limit)
                ).fetchall()
            except sqlite3.Error as exc:
                raise SearchError(f"local index search for {query!r} failed: {exc}") from exc
        logger.debug("local search %r -> %s: %d hits", query, fts.match, len(rows))
        return [
            SearchHit(
                title=heading,
                url=url,
                snippet=make_snippet(text, fts.terms),
                content=text,
                rank=rank,
                score=round(-score, 4),
            )
            for rank, (heading, text, url, score) in enumerate(rows, start=1)
        ]

    async def get_document(self, url: str) -> Page | None:
        """The whole stored text of the document at ``url``, or ``None`` if it is not in the index."""
        return await asyncio.to_thread(self._get_document, url)

    def _get_document(self, url: str) -> Page | None:
        with self._lock:
            db = self._connect(create=False)
            try:
                row = db.execute(
                    "SELECT title, text, content_type FROM documents WHERE url = ?", (url,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise SearchError(f"could not read {url} from the local index at {self.path}: {exc}") from exc
        if row is None:
            return None
        title, text, content_type = row
        return Page(url=url, title=title, text=text, content_type=content_type, status=200)

    # -- connection --

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        """The open connection, migrated; call with the lock held. Only writers may create the file."""
        if self._db is not None:
            return self._db
        if not create and not self.path.is_file():
            raise SearchError(f"no local index at {self.path}: add documents to it first")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target = str(self.path)
        else:
            # mode=rw: never create an empty database as a side effect of reading.
            target = self.path.absolute().as_uri() + "?mode=rw"
        try:
            db = sqlite3.connect(
                target, uri=not create, timeout=10, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise SearchError(f"cannot open the local index at {self.path}: {exc}") from exc
        try:
            db.execute("PRAGMA foreign_keys = ON")
            # WAL lets searches run while documents are being added; with synchronous=NORMAL a commit
            # does not wait for the disk (a power cut may lose the last files added, never corrupt the
            # index, and everything in it can be re-added from its sources).
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            _migrate(db, self.path)
        except sqlite3.Error as exc:
            db.close()
            if "fts5" in str(exc):
                raise SearchError(
                    f"this Python's SQLite lacks FTS5, which the local index needs ({exc})"
                ) from exc
            raise SearchError(
                f"the local index at {self.path} is unreadable ({exc}); delete it and add the documents again"
            ) from exc
        except BaseException:
            db.close()
            raise
        self._db = db
        return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations this database has not seen, each in its own transaction."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "migrations" not in tables:
        raise SearchError(f"{path} is an SQLite database but not a deepresearch index")
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    applied = {row[0] for row in db.execute("SELECT name FROM migrations")}
    for migration in MIGRATIONS:
        if migration.__name__ in applied:
            continue
        with _transaction(db):
            migration(db)
            db.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                (migration.__name__, datetime.now(UTC).isoformat(timespec="seconds")),
            )
        logger.info("local index %s: applied migration %s", path, migration.__name__)
