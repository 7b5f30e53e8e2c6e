"""The local index over the sample corpus: adding, re-adding, removing, ranking, CJK, and failures."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from deepresearch.errors import SearchError
from deepresearch.search import DocumentStore, SearchBackend, SearchHit
from deepresearch.search.local import MIGRATIONS, LocalIndex, build_fts_query, default_index_path
from tests.fakes.web_server import PDF_PAGES, PDF_TITLE, make_pdf

CORPUS_FILES = 9
CORPUS_DOCUMENTS = 12  # 8 files + 4 JSONL records


def search(index: LocalIndex, query: str, limit: int = 10) -> list[SearchHit]:
    return asyncio.run(index.search(query, limit=limit))


def file_name(hit: SearchHit) -> str:
    return hit.url.rsplit("/", 1)[-1]


# --- adding and updating


def test_adding_the_corpus(index: LocalIndex, corpus: Path) -> None:
    report = index.add_paths([corpus])
    assert report.errors == []
    assert (report.added, report.replaced, report.skipped, report.removed) == (CORPUS_DOCUMENTS, 0, 0, 0)
    stats = index.stats()
    assert (stats.documents, stats.sources, stats.passages) == (
        CORPUS_DOCUMENTS,
        CORPUS_FILES,
        report.passages,
    )
    assert stats.passages > CORPUS_DOCUMENTS
    assert stats.size_bytes > 0 and stats.path == index.path
    assert isinstance(index, SearchBackend) and isinstance(index, DocumentStore)
    assert index.name == "local"


def test_migrations_are_recorded(shared_index: LocalIndex) -> None:
    with sqlite3.connect(shared_index.path) as db:
        names = [row[0] for row in db.execute("SELECT name FROM migrations ORDER BY name")]
    db.close()
    assert names == [m.__name__ for m in MIGRATIONS] == ["m001_documents_and_passages", "m002_passage_search"]


def test_re_adding_skips_unchanged_and_replaces_changed(corpus_index: LocalIndex, corpus: Path) -> None:
    again = corpus_index.add_paths([corpus])
    assert (again.added, again.replaced, again.skipped, again.passages) == (0, 0, CORPUS_DOCUMENTS, 0)

    caching = corpus / "web" / "http-caching.md"
    caching.write_text(
        caching.read_text().replace("heuristic", "guesswork rule") + "\n## Stale-while-revalidate\n\n"
        "A cache may serve a stale copy briefly while it refreshes it in the background.\n"
    )
    (corpus / "search" / "inverted-index.txt").touch()  # new mtime, same content
    changed = corpus_index.add_paths([corpus])
    assert (changed.added, changed.replaced, changed.skipped) == (0, 1, CORPUS_DOCUMENTS - 1)
    assert changed.passages == 6
    assert corpus_index.stats().documents == CORPUS_DOCUMENTS

    hits = search(corpus_index, "stale while revalidate background refresh")
    assert hits[0].title == "HTTP caching for crawlers and agents > Stale-while-revalidate"
    assert any("guesswork rule" in hit.content for hit in search(corpus_index, "guesswork"))
    assert search(corpus_index, "heuristic freshness lifetime")[0].title.endswith("> Heuristic freshness")
    assert not any(
        "heuristic" in hit.content.lower()
        for hit in search(corpus_index, "heuristic")
        if "caching" in hit.url
    )


def test_jsonl_records_are_updated_and_dropped_individually(corpus_index: LocalIndex, corpus: Path) -> None:
    notes = corpus / "notes.jsonl"
    records = [json.loads(line) for line in notes.read_text().splitlines()]
    records[1]["text"] += " It was later refined as Snowball."
    del records[2]
    notes.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    report = corpus_index.add_paths([notes])
    assert (report.added, report.replaced, report.skipped, report.removed) == (0, 1, 2, 1)
    assert (
        asyncio.run(corpus_index.get_document("https://notes.example.org/robots-exclusion-protocol")) is None
    )
    assert search(corpus_index, "snowball")[0].url == "https://notes.example.org/porter-stemmer"


def test_malformed_jsonl_lines_are_reported_and_the_rest_load(index: LocalIndex, tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(
            {"id": "a", "title": "Good one", "url": "https://example.org/a", "text": "Alpha record text."}
        ),
        '{"id": "b", "title": "Broken", "text": "unterminated',
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": "c", "title": "No text"}),
        "",
        json.dumps({"id": 7, "text": "# Heading as title\n\nGamma record without url or title."}),
        json.dumps({"id": "d", "title": {"nested": True}, "text": "Bad title type."}),
    ]
    path.write_text("\n".join(lines) + "\n")
    report = index.add_paths([path])
    assert report.added == 2
    assert len(report.errors) == 4
    assert report.errors[0].startswith(f"{path}:2: invalid JSON")
    assert report.errors[1].startswith(f"{path}:3: expected an object")
    assert report.errors[2] == f"{path}:4: missing or empty 'text'"
    assert report.errors[3].startswith(f"{path}:7: ")
    gamma = asyncio.run(index.get_document(f"{path.as_uri()}#7"))
    assert gamma is not None and gamma.title == "Heading as title"


def test_pdf_and_problem_paths(index: LocalIndex, tmp_path: Path) -> None:
    pdf = tmp_path / "docs" / "hashing.pdf"
    pdf.parent.mkdir()
    pdf.write_bytes(make_pdf(PDF_TITLE, PDF_PAGES))
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4 nothing useful")
    (tmp_path / "docs" / "image.png").write_bytes(b"\x89PNG")  # ignored inside a folder
    (tmp_path / "docs" / ".hidden.md").write_text("# Hidden\n\nnot indexed")
    (tmp_path / "notes.docx").write_bytes(b"PK")
    report = index.add_paths([tmp_path / "docs", tmp_path / "notes.docx", tmp_path / "missing"])
    assert report.added == 1
    assert [error.split(": ", 1)[0] for error in report.errors] == [
        str(tmp_path / "docs" / "broken.pdf"),
        str(tmp_path / "notes.docx"),
        str(tmp_path / "missing"),
    ]
    assert "could not read PDF" in report.errors[0]
    assert "unsupported file type" in report.errors[1]
    assert "no such file or directory" in report.errors[2]
    hits = search(index, "virtual nodes load")
    assert hits[0].title == PDF_TITLE and hits[0].url == pdf.resolve().as_uri()


# --- removing


def test_remove_by_file_folder_and_url(corpus_index: LocalIndex, corpus: Path) -> None:
    assert corpus_index.remove([corpus / "search" / "bm25-ranking.md"]) == 1
    assert not any(file_name(hit) == "bm25-ranking.md" for hit in search(corpus_index, "bm25 saturation"))
    assert corpus_index.remove(["https://notes.example.org/porter-stemmer", "https://unknown.example/"]) == 1
    assert corpus_index.remove([str(corpus / "web")]) == 3
    assert corpus_index.remove([corpus / "notes.jsonl"]) == 3
    stats = corpus_index.stats()
    assert (stats.documents, stats.sources) == (CORPUS_DOCUMENTS - 8, CORPUS_FILES - 5)
    assert corpus_index.remove([corpus / "we"]) == 0  # a prefix of a folder name is not that folder
    assert corpus_index.remove([corpus]) == 4
    assert corpus_index.stats().passages == 0
    assert search(corpus_index, "bm25") == []  # an empty index answers with no hits


# --- searching


def test_bm25_ranks_the_passage_about_the_query_first(shared_index: LocalIndex) -> None:
    hits = search(shared_index, "term frequency saturation k1")
    top = hits[0]
    assert top.title == "Okapi BM25 > The formula > Term frequency saturation"
    assert file_name(top) == "bm25-ranking.md" and top.url.startswith("file:///")
    assert top.content.startswith("The first occurrence of a term")
    assert "saturation" in top.snippet and len(top.snippet) <= 310
    assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    scores = [hit.score or 0.0 for hit in hits]
    assert all(score > 0 for score in scores)
    assert scores == sorted(scores, reverse=True)


def test_heading_paths_from_markdown_html_and_rst(shared_index: LocalIndex) -> None:
    assert search(shared_index, "bm25 column weights title body")[0].title == (
        "SQLite FTS5 in practice > Ranking with bm25() > Column weights"
    )
    assert search(shared_index, "Disallow line excludes a path prefix")[0].title == (
        "Polite crawling | Field Notes > Respecting robots.txt"
    )
    assert search(shared_index, "porter stemmer suffixes lemmatization")[0].title == (
        "Tokenization for search > Unicode word boundaries > Stemming and lemmatization"
    )


def test_html_boilerplate_is_not_indexed(shared_index: LocalIndex) -> None:
    assert search(shared_index, "newsletter subscribe cookie") == []


def test_at_most_a_few_passages_per_document(shared_index: LocalIndex) -> None:
    hits = search(shared_index, "bm25", limit=50)
    per_document: dict[str, int] = {}
    for hit in hits:
        per_document[hit.url] = per_document.get(hit.url, 0) + 1
    assert max(per_document.values()) == shared_index.max_per_document == 3
    assert len(per_document) >= 3
    assert len(search(shared_index, "bm25", limit=2)) == 2
    assert search(shared_index, "bm25", limit=0) == []
    single = LocalIndex(shared_index.path, max_per_document=1)
    try:
        urls = [hit.url for hit in search(single, "bm25", limit=50)]
    finally:
        single.close()
    assert len(urls) == len(set(urls)) == len(per_document)


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"unbalanced quote',
        "*",
        "prefix*",
        "title:sqlite",
        "(bm25",
        "bm25)",
        "AND",
        "NOT OR AND",
        "-",
        "bm25 -sqlite",
        "NEAR(bm25 sqlite)",
        "^start",
        "{heading text}: bm25",
        "a + b",
        "'single'",
        "",
        "   \n\t",
        "C++ vs. C#",
        "x" * 2000,
    ],
)
def test_fts_syntax_in_queries_never_raises(shared_index: LocalIndex, query: str) -> None:
    hits = search(shared_index, query)
    assert isinstance(hits, list)


def test_query_with_fts_syntax_still_finds_its_words(shared_index: LocalIndex) -> None:
    hits = search(shared_index, 'unbalanced "quote AND (syntax) error:')
    assert hits[0].title == "SQLite FTS5 in practice > Query syntax pitfalls"
    fts = build_fts_query('AND "x" y* near:(z) -w')
    assert fts is not None
    assert fts.match == '"x" OR "y" OR "near" OR "z" OR "w"'
    assert build_fts_query("the of and") == ('"the" OR "of" OR "and"', ["the", "of", "and"])
    assert build_fts_query("!!! ???") is None


def test_chinese_queries_match_inside_longer_runs(shared_index: LocalIndex) -> None:
    for query in ("中文分词", "二元切分", "检索", "分词 BM25"):
        hits = search(shared_index, query)
        assert hits, query
        assert file_name(hits[0]) == "chinese-word-segmentation.md", query
    top = search(shared_index, "不需要任何词典")[0]
    assert top.title == "中文分词与全文检索 > 二元切分"
    assert "词典" in top.snippet
    # A single character still matches, through the bigrams that start with it.
    assert search(shared_index, "汉")[0].title == "中文分词与全文检索 > 二元切分"


def test_get_document_returns_the_whole_text(shared_index: LocalIndex, corpus_root: Path) -> None:
    url = (corpus_root / "search" / "bm25-ranking.md").resolve().as_uri()
    page = asyncio.run(shared_index.get_document(url))
    assert page is not None
    assert (page.url, page.title, page.status, page.content_type) == (url, "Okapi BM25", 200, "text/markdown")
    assert page.text.startswith("# Okapi BM25")
    assert "## Variants" in page.text and "BM25+ adds a small constant" in page.text
    html = asyncio.run(
        shared_index.get_document((corpus_root / "web" / "polite-crawling.html").resolve().as_uri())
    )
    assert (
        html is not None and html.title == "Polite crawling | Field Notes" and "## Rate limits" in html.text
    )
    record = asyncio.run(shared_index.get_document("https://notes.example.org/reciprocal-rank-fusion"))
    assert record is not None and record.title == "Reciprocal rank fusion"
    no_url = asyncio.run(
        shared_index.get_document(f"{(corpus_root / 'notes.jsonl').resolve().as_uri()}#retry-after")
    )
    assert no_url is not None and no_url.title == "The Retry-After header"
    assert asyncio.run(shared_index.get_document("https://example.org/not-indexed")) is None


def test_concurrent_searches_share_one_connection_safely(shared_index: LocalIndex) -> None:
    async def many() -> list[list[SearchHit]]:
        queries = ["bm25 saturation", "robots.txt", "中文分词", "cache validation etag"] * 8
        return await asyncio.gather(*(shared_index.search(query, limit=5) for query in queries))

    results = asyncio.run(many())
    for i, hits in enumerate(results):
        assert [hit.url for hit in hits] == [hit.url for hit in results[i % 4]]


# --- failures and locations


def test_missing_index_is_a_search_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "index.sqlite"
    index = LocalIndex(path)
    with pytest.raises(SearchError, match=f"no local index at {path}"):
        search(index, "anything")
    with pytest.raises(SearchError, match="no local index"):
        asyncio.run(index.get_document("file:///x"))
    with pytest.raises(SearchError, match="no local index"):
        index.stats()
    with pytest.raises(SearchError, match="no local index"):
        index.remove(["file:///x"])
    assert not path.exists() and not path.parent.exists()


def test_corrupt_or_foreign_database_is_a_search_error(tmp_path: Path, corpus: Path) -> None:
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not an sqlite database, just some bytes " * 100)
    with pytest.raises(SearchError, match=f"the local index at {corrupt} is unreadable"):
        search(LocalIndex(corrupt), "bm25")
    with pytest.raises(SearchError, match="unreadable"):
        LocalIndex(corrupt).add_paths([corpus])

    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    db.close()
    with pytest.raises(SearchError, match="not a deepresearch index"):
        search(LocalIndex(foreign), "bm25")


def test_default_index_path_follows_xdg_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_index_path() == tmp_path / "data" / "deepresearch" / "index.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_index_path() == tmp_path / "home" / ".local" / "share" / "deepresearch" / "index.sqlite"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # not absolute: ignored, as the spec says
    assert default_index_path() == tmp_path / "home" / ".local" / "share" / "deepresearch" / "index.sqlite"
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()
