"""The local index: the user's own documents, searchable offline by paragraph, in one SQLite file.

It is the default search backend, so the agent works with no web provider and no network. Documents
(Markdown, text, reStructuredText, HTML, PDF, Word, CSV, JSON, JSONL records; slides and spreadsheets
with the ``office`` extra — read by ``loaders.py``) are cut into paragraph passages (``passages.py``)
and ranked with SQLite FTS5's BM25; a hit is one passage with its heading path, and the whole
document stays stored so ``batch_open`` can read it (``get_document``). Re-adding a folder only
re-indexes files whose content changed.

How a result list is ordered (``Ranking``; ``benchmarks/retrieval_recall.py`` measures it on the
Debian documentation with a labelled question set):

* Headings weigh more than body text (``HEADING_WEIGHT``): a passage's heading path (``Title >
  Section``) names what the passage is about, where a body mentions many things in passing.
* Queries lose the words of asking ("how can I") and search a word with its particle joined as
  well ("time out" also finds ``timeout``; ``passages.build_fts_query``). Before, "How can I make
  a Python subprocess call time out?" put a What's New page that narrates the subprocess module,
  twice, above the module's own page, whose sections say "timeout".
* Function words ("the", "of", "是"…) leave the query unless quoted into a phrase (``"to be or not
  to be"``): they are in most passages and weigh almost nothing, yet scoring their matches was
  what made the slow queries slow. A query of function words alone is ranked among its first
  ``BROAD_QUERY_SAMPLE`` matches, not all of them.
* One hit per document (URL): a hit is a citation and a ``batch_open`` target, so a second passage
  of the same document adds nothing the first does not lead to. The hit shows the best passage.
* Page diversity at the top: documents that are sections of one web page (same URL up to the
  ``#fragment``) take at most one of the first ``distinct_pages`` places; the page's other sections
  follow those places in score order, pushed down, not dropped. The top few hits are what a reader
  (or the guided strategy) opens, so they should lead to different pages. Sections of one page are
  different documents all the same (each cites its own anchor), so below the top they keep their
  BM25 order. ``file://`` URLs are never grouped: a fragment there names a JSONL record, and
  records of one file are unrelated documents.

The index also remembers the folders and files it was given (its *roots*). They are the fence for
local reading: ``get_document`` serves a ``file://`` URL that is not indexed (say, a file put in an
indexed folder since it was added) only when its real path lies inside a root, and refuses the rest.

Chinese and Japanese: FTS5's ``unicode61`` tokenizer treats a run of CJK characters as one token, so
"检索" would never match inside "全文检索系统". We index every CJK run a second time as overlapping
character bigrams (in the ``*_cjk`` columns) and turn CJK in queries into the same bigrams. We chose
bigrams over FTS5's ``trigram`` tokenizer because most Chinese words are two characters long and a
trigram index cannot match a query shorter than three characters; bigrams also leave the English
index (porter-stemmed words) untouched instead of duplicating all text into a second, three times
larger trigram table.

Each document's outgoing links (HTML anchors, Markdown links, a JSONL record's ``links``; read by
``loaders.py``) are kept too, so ``links_from`` can say which indexed documents a document leads to:
the hyperlink walk of ``synth walk`` goes along them. An index made before links were kept opens as
ever, with none, and gets them when its folders are added again (unchanged documents keep their
passages; only their links are recorded).

The schema only grows through the numbered migration functions in ``index_schema.py``, recorded in
the ``migrations`` table. SQLite calls block, so the async methods run them in a worker thread; one
connection, guarded by a lock, serves all threads. The file is in WAL mode, so another process may
search while one adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from deepresearch.errors import SearchError
from deepresearch.fetch import Page
from deepresearch.migrations import transaction
from deepresearch.search import SearchHit
from deepresearch.search.index_schema import COUNT_UP_TO_SQL, SEARCH_SQL, migrate
from deepresearch.search.loaders import (
    Document,
    file_url_path,
    iter_files,
    load_file,
    read_file_url,
    root_of,
)
from deepresearch.search.passages import (
    build_fts_query,
    cjk_grams,
    function_words_only,
    make_snippet,
    split_passages,
)

logger = logging.getLogger(__name__)

HEADING_WEIGHT = 2.0
"""BM25 weight of the heading path against 1 for the body text (the CJK bigram columns alike)."""
DISTINCT_PAGES = 3
"""The first hits of a result list come from this many different pages (when the matches allow)."""
WRITE_BATCH_BYTES = 4_000_000
"""Files are written in transactions of about this many bytes read, not one each.

Each commit makes FTS5 write a new segment of its inverted index and merge small ones: a folder of
small files cost a commit and a merge for every few passages. Batches keep memory bounded (the
documents of one batch) and a crash loses at most one batch, which adding the folder again redoes.
"""
FIRST_CANDIDATES = 160
"""Best passages a search first dedupes by document and page (at least; four per hit asked for).

Too few, and a manual whose sections all match (a page indexed as many ``#section`` documents) fills
them with one page, so the search runs again with four times as many: twice the cost, as scoring
every match is the cost, while keeping 160 instead of 40 of them adds about 1 ms (debian-docs: 4 of
the 54 labelled questions were searched twice with 40, none with 160).
"""
BROAD_QUERY_SAMPLE = 2_000
"""Matches a query of function words alone ("of and the of") is ranked among: the first ones found.

Such a query matches most passages and BM25 scores each match (~1 µs), so ranking all of them took
80-380 ms on 100k passages; a sample of 2,000 costs a few ms (``benchmarks/search.py``), and where
fewer passages match it is all of them. The words weigh almost nothing, so ranking every match would
find little that the sample misses.
"""


@dataclass(frozen=True, slots=True)
class Ranking:
    """How ``LocalIndex.search`` orders passages (module docstring). The defaults are what every search
    gets; the other values exist to measure the choices against each other on one index."""

    heading_weight: float = HEADING_WEIGHT
    text_weight: float = 1.0
    per_document: int | None = 1
    """Hits one document (URL) may have in a result list; ``None``: no cap (plain BM25 order)."""
    distinct_pages: int = DISTINCT_PAGES
    """Leading places that go to different pages; 0 turns page diversity off."""
    question_words: bool = True
    """Drop the words of asking ("how can I") from queries (``build_fts_query``)."""
    compounds: bool = True
    """Also search a word and its particle joined ("time out" → ``timeout``; ``build_fts_query``)."""

    def __post_init__(self) -> None:
        if self.per_document is not None and self.per_document < 1:
            raise ValueError(f"per_document must be >= 1 or None, got {self.per_document}")
        if self.distinct_pages < 0:
            raise ValueError(f"distinct_pages must be >= 0, got {self.distinct_pages}")

    @property
    def bm25_weights(self) -> tuple[float, float, float, float]:
        """For the FTS columns heading, text, heading_cjk, text_cjk."""
        return (self.heading_weight, self.text_weight, self.heading_weight, self.text_weight)


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


# --- the index ----------------------------------------------------------------------------------


_LEADS_TO = "(d.url = l.target OR (d.url >= l.target || '#' AND d.url < l.target || '$'))"
"""Whether document ``d`` is the page a link ``l`` names, or one of its sections (``page#…``; ``'$'``
is the character after ``'#'``, so the range is every URL that starts with ``page#``)."""
_PAGE_DOCUMENT = f"SELECT d.id FROM documents AS d WHERE {_LEADS_TO} ORDER BY length(d.url), d.id LIMIT 1"
"""The document a link ``l`` leads to: the page indexed whole (the shortest URL), else its first section."""


class LocalIndex:
    """Paragraph-level BM25 search over local documents in one SQLite file; also a ``DocumentStore``."""

    name = "local"

    def __init__(self, path: Path, *, ranking: Ranking | None = None) -> None:
        self.path = path
        self.ranking = ranking or Ranking()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> LocalIndex:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def aclose(self) -> None:
        """``close``, for callers that hold any ``SearchBackend``."""
        self.close()

    def close(self) -> None:
        """Close the database connection; the next call opens it again."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- writing --

    def add_paths(self, paths: Iterable[Path | str]) -> AddReport:
        """Index files and folders (and remember them as roots); unchanged documents are skipped."""
        report = AddReport()
        items = list(paths)
        roots = [root for root in map(root_of, items) if root is not None]
        if roots:
            with self._writing("record the roots of") as db:
                now = _now()
                db.executemany(
                    "INSERT OR IGNORE INTO roots (path, added_at) VALUES (?, ?)",
                    [(str(root), now) for root in roots],
                )
        batch: list[tuple[Path, float, list[Document]]] = []
        size = 0
        for file in iter_files(items, report.errors):
            try:
                data = file.read_bytes()
                mtime = file.stat().st_mtime
            except OSError as exc:
                report.errors.append(f"{file}: {exc.strerror or exc}")
                continue
            batch.append((file, mtime, load_file(file, data, report.errors)))
            size += len(data)
            if size >= WRITE_BATCH_BYTES:
                self._store_batch(batch, report)
                batch, size = [], 0
        if batch:
            self._store_batch(batch, report)
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

    def _store_batch(self, batch: list[tuple[Path, float, list[Document]]], report: AddReport) -> None:
        """Write the documents of several files in one transaction (``WRITE_BATCH_BYTES``)."""
        files = str(batch[0][0]) if len(batch) == 1 else f"{len(batch)} files from {batch[0][0]} on"
        with self._writing(f"write {files} to") as db:
            for file, mtime, documents in batch:
                self._store(db, file, mtime, documents, report)

    def _store(
        self, db: sqlite3.Connection, file: Path, mtime: float, documents: list[Document], report: AddReport
    ) -> None:
        now = _now()
        for doc in documents:
            row = db.execute("SELECT id, content_hash FROM documents WHERE url = ?", (doc.url,)).fetchone()
            if row is not None and row[1] == doc.content_hash:
                report.skipped += 1
                _store_links(db, row[0], doc)  # an index made before links were kept gets them now
                continue
            values = (doc.title, str(file), doc.content_type, doc.content_hash, mtime, now, doc.text)
            if row is None:
                document_id = db.execute(
                    "INSERT INTO documents"
                    " (title, path, content_type, content_hash, mtime, added_at, text, published, url)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, doc.published, doc.url),
                ).lastrowid
                report.added += 1
            else:
                document_id = row[0]
                db.execute("DELETE FROM passages WHERE document_id = ?", (document_id,))
                db.execute(
                    "UPDATE documents SET title = ?, path = ?, content_type = ?, content_hash = ?, mtime = ?,"
                    " added_at = ?, text = ?, published = ? WHERE id = ?",
                    (*values, doc.published, document_id),
                )
                report.replaced += 1
            _store_links(db, document_id, doc)
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
            db.execute("DELETE FROM links WHERE document_id = ?", (document_id,))
            db.execute("DELETE FROM documents WHERE id = ?", (document_id,))
        return len(document_ids)

    def remove(self, items: Iterable[Path | str]) -> int:
        """Remove documents by URL, or by file or folder path (which also stops it being a root).

        Returns how many documents went. A ``file://`` URL without a fragment drops that file's root
        too; removing one file inside an indexed folder leaves the folder a root.
        """
        with self._writing("remove documents from", create=False) as db:
            ids: list[int] = []
            for item in items:
                path: str | None = None
                if isinstance(item, str) and "://" in item:
                    rows = db.execute("SELECT id FROM documents WHERE url = ?", (item,)).fetchall()
                    if item.startswith("file:") and "#" not in item:
                        path = os.path.realpath(file_url_path(item))
                else:
                    path = str(Path(item).expanduser().resolve())
                    rows = db.execute(
                        "SELECT id FROM documents WHERE path = ? OR substr(path, 1, ?) = ?",
                        (path, *_under(path)),
                    ).fetchall()
                if path is not None:
                    db.execute(
                        "DELETE FROM roots WHERE path = ? OR substr(path, 1, ?) = ?", (path, *_under(path))
                    )
                ids.extend(row[0] for row in rows if row[0] not in ids)
            removed = self._delete(db, ids)
        logger.info("local index %s: removed %d documents", self.path, removed)
        return removed

    @contextlib.contextmanager
    def _writing(self, action: str, *, create: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock and inside one transaction; SQLite errors become ours."""
        with self._lock:
            db = self._connect(create=create)
            try:
                with transaction(db):
                    yield db
            except sqlite3.Error as exc:
                raise SearchError(f"could not {action} the local index at {self.path}: {exc}") from exc

    # -- reading --

    def roots(self) -> list[Path]:
        """The folders and files added to the index (resolved), which bound what ``file://`` may read."""
        with self._lock:
            if self._db is None and not self.path.is_file():
                return []
            db = self._connect(create=False)
            try:
                rows = db.execute("SELECT path FROM roots ORDER BY path").fetchall()
            except sqlite3.Error as exc:
                raise SearchError(f"could not read the local index at {self.path}: {exc}") from exc
        return [Path(path) for (path,) in rows]

    def has_documents(self) -> bool:
        """Whether the index holds any document: one row looked up, not the whole table counted
        (``stats``), since every run checks it before it starts."""
        with self._lock:
            db = self._connect(create=False)
            try:
                return db.execute("SELECT 1 FROM documents LIMIT 1").fetchone() is not None
            except sqlite3.Error as exc:
                raise SearchError(f"could not read the local index at {self.path}: {exc}") from exc

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
        """Best passages for ``query`` by weighted BM25, one per document, different pages on top."""
        return await asyncio.to_thread(self._search, query, limit)

    def _search(self, query: str, limit: int) -> list[SearchHit]:
        ranking = self.ranking
        fts = build_fts_query(query, question_words=ranking.question_words, compounds=ranking.compounds)
        with self._lock:
            db = self._connect(create=False)
            if fts is None or limit <= 0:
                return []
            sample = BROAD_QUERY_SAMPLE if function_words_only(fts.terms) else -1
            try:
                candidates = max(4 * limit, FIRST_CANDIDATES)
                while True:
                    # Each document's best passage among the best `candidates` passages is its best
                    # overall, and it outranks every document with none there: the rows are exact.
                    per_document = ranking.per_document or candidates
                    arguments = (*ranking.bm25_weights, fts.match, sample, candidates, per_document)
                    rows: list[_Row] = db.execute(SEARCH_SQL, (*arguments, candidates)).fetchall()
                    pages = len({page_of(url) for _, _, url, _, _ in rows})
                    if len(rows) >= limit and pages >= min(ranking.distinct_pages, limit):
                        break
                    if 0 <= sample <= candidates:
                        break  # the whole sample was considered
                    (matches,) = db.execute(COUNT_UP_TO_SQL, (fts.match, candidates + 1)).fetchone()
                    if matches <= candidates:
                        break  # every match was considered
                    candidates *= 4
            except sqlite3.Error as exc:
                raise SearchError(f"local index search for {query!r} failed: {exc}") from exc
        rows = _diversify(rows, ranking.distinct_pages, lambda row: row[2])[:limit]
        logger.debug("local search %r -> %s: %d hits", query, fts.match, len(rows))
        hits: list[SearchHit] = []
        for rank, (heading, text, url, published, bm25) in enumerate(rows, start=1):
            # A hit pushed down for diversity shows no more than the hit above it, so a re-ranker that
            # sorts by score (authority.rerank) keeps the order.
            score = -bm25 if not hits else min(-bm25, hits[-1].score or 0.0)
            hits.append(
                SearchHit(
                    title=heading,
                    url=url,
                    snippet=make_snippet(text, fts.terms),
                    content=text,
                    published=published,
                    rank=rank,
                    score=round(score, 4),
                )
            )
        return hits

    async def get_document(self, url: str) -> Page | None:
        """The whole text of the document at ``url``.

        An indexed document comes from the index. A ``file://`` URL that is not indexed is read now
        when its real path lies inside a root; outside the roots (symlinks resolved), or hidden, it
        raises ``URLBlocked``, and a missing or unreadable file raises ``FetchError`` — both are
        ``FetchError``s that ``batch_open`` reports for that URL alone. Any other URL that is not
        indexed gives ``None``, so the caller may fetch it from the web.
        """
        return await asyncio.to_thread(self._get_document, url)

    def _get_document(self, url: str) -> Page | None:
        with self._lock:
            db = self._connect(create=False)
            try:
                row = db.execute(
                    "SELECT title, text, content_type, published FROM documents WHERE url = ?", (url,)
                ).fetchone()
                roots = [] if row else [Path(p) for (p,) in db.execute("SELECT path FROM roots")]
            except sqlite3.Error as exc:
                raise SearchError(f"could not read {url} from the local index at {self.path}: {exc}") from exc
        if row is not None:
            title, text, content_type, published = row
            return Page(url, title, text, content_type=content_type, status=200, published=published)
        if not url.lower().startswith("file:"):
            return None
        document = read_file_url(url, roots)
        logger.info("local index %s: read %s on the fly (not indexed)", self.path, url)
        return Page(url, document.title, document.text, document.content_type, 200, document.published)

    # -- links between documents --

    def has_links(self) -> bool:
        """Whether any document has a link recorded (an index built before links were kept has none)."""
        return bool(self._read("SELECT EXISTS (SELECT 1 FROM links)", ())[0][0])

    def links_from(self, url: str) -> list[LinkedDocument]:
        """The indexed documents the document at ``url`` links to, in the order of its links.

        A link names a page; a page indexed as sections (``page#anchor``, as the documentation
        corpora are) is reached at its first section, or at the page itself when it is indexed whole.
        """
        rows = self._read(
            "SELECT target.url, target.title, picked.text FROM ("
            f" SELECT l.ordinal, l.text, ({_PAGE_DOCUMENT}) AS target_id"
            " FROM documents AS source JOIN links AS l ON l.document_id = source.id WHERE source.url = ?"
            ") AS picked JOIN documents AS target ON target.id = picked.target_id"
            " WHERE target.url != ? ORDER BY picked.ordinal",
            (url, url),
        )
        found: dict[str, LinkedDocument] = {}
        for target, title, text in rows:
            found.setdefault(target, LinkedDocument(target, title, text))
        return list(found.values())

    def random_documents(self, n: int, *, seed: int = 0, linked: bool = True) -> list[str]:
        """``n`` document URLs in an order fixed by ``seed``; a larger ``n`` extends a smaller one's list.

        ``linked``: only documents with a link to another indexed document (where a walk can start).
        """
        if linked:
            sql = (
                "SELECT DISTINCT source.url FROM links AS l"
                " JOIN documents AS source ON source.id = l.document_id"
                f" WHERE EXISTS (SELECT 1 FROM documents AS d WHERE {_LEADS_TO} AND d.id != source.id)"
                " ORDER BY source.url"
            )
        else:
            sql = "SELECT url FROM documents ORDER BY url"
        urls = [url for (url,) in self._read(sql, ())]
        random.Random(seed).shuffle(urls)
        return urls[: max(n, 0)]

    def _read(self, sql: str, arguments: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            db = self._connect(create=False)
            try:
                return db.execute(sql, arguments).fetchall()
            except sqlite3.Error as exc:
                raise SearchError(f"could not read the local index at {self.path}: {exc}") from exc

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
            migrate(db, self.path)
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


@dataclass(frozen=True, slots=True)
class LinkedDocument:
    """An indexed document another one links to."""

    url: str
    title: str
    text: str
    """The anchor text of the link ('' when it had none)."""


def _store_links(db: sqlite3.Connection, document_id: int | None, doc: Document) -> None:
    """Record ``doc``'s links, unless exactly these are stored (re-adding an unchanged folder stays cheap)."""
    stored = db.execute(
        "SELECT target, text FROM links WHERE document_id = ? ORDER BY ordinal", (document_id,)
    ).fetchall()
    if stored == [(link.url, link.text) for link in doc.links]:
        return
    db.execute("DELETE FROM links WHERE document_id = ?", (document_id,))
    db.executemany(
        "INSERT INTO links (document_id, ordinal, target, text) VALUES (?, ?, ?, ?)",
        [(document_id, ordinal, link.url, link.text) for ordinal, link in enumerate(doc.links)],
    )


_Row = tuple[str, str, str, str, float]
"""``SEARCH_SQL``'s columns: heading, text, url, published, bm25 (lower is better)."""
_T = TypeVar("_T")


def page_of(url: str) -> str:
    """The page a document belongs to: its URL without the fragment, except for ``file://`` URLs."""
    if url[:5].lower() == "file:":
        return url
    return url.partition("#")[0]


def diversify_pages(hits: Sequence[SearchHit], distinct_pages: int = DISTINCT_PAGES) -> list[SearchHit]:
    """``hits`` with the first ``distinct_pages`` places given to different pages, ``rank`` 1…n.

    The best hit of each page takes the leading places; the other hits follow in their order. For a
    re-ranker that runs after the index (say, by authority) and may bring a page's sections together.
    """
    ordered = _diversify(list(hits), distinct_pages, lambda hit: hit.url)
    return [dataclasses.replace(hit, rank=position) for position, hit in enumerate(ordered, start=1)]


def _diversify(items: list[_T], distinct_pages: int, url: Callable[[_T], str]) -> list[_T]:
    """The first item of each of the first ``distinct_pages`` pages, then all other items in order."""
    top: list[_T] = []
    rest: list[_T] = []
    seen: set[str] = set()
    for item in items:
        page = page_of(url(item))
        if len(top) < distinct_pages and page not in seen:
            seen.add(page)
            top.append(item)
        else:
            rest.append(item)
    return top + rest


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _under(path: str) -> tuple[int, str]:
    """``substr(path, 1, n) = prefix`` arguments matching everything inside the folder ``path``."""
    prefix = path.rstrip(os.sep) + os.sep
    return len(prefix), prefix
