"""Passage windows and BM25 selection: what the guided strategy shows the model for a section."""

from __future__ import annotations

import itertools

from deepresearch.guided.select import blocks, select, terms, windows


def test_terms_drop_stopwords_fold_endings_and_split_cjk() -> None:
    assert terms("How do I build the PostgreSQL indexes without blocking writes?") == [
        "build",
        "postgresql",
        "index",
        "block",
        "write",
    ]
    assert terms("倒排索引") == ["倒排", "排索", "索引"]


def test_blocks_read_markdown_as_text() -> None:
    page = "# Title\n\nSome prose\ncontinues here.\n\n```\nCREATE INDEX CONCURRENTLY i ON t (c);\n```\n"
    page += "| a | b |\n"
    assert blocks(page) == [
        "Title",
        "Some prose continues here.",
        "CREATE INDEX CONCURRENTLY i ON t (c);",
        "a; b",
    ]


def test_windows_overlap_and_cover_the_page() -> None:
    text = " ".join(f"Sentence {i} is about topic {i}." for i in range(60))  # 6 words each, 360 words
    found = windows("web_1", "Page", text, size=40, stride=20)
    assert found[0].start == 0 and found[-1].end == 360
    assert all(b.start - a.start == 24 for a, b in itertools.pairwise(found))  # whole sentences
    assert all(w.end - w.start <= 40 for w in found) and all(w.text.endswith(".") for w in found)


def test_select_prefers_the_matching_window_and_spreads_over_pages() -> None:
    concurrently = windows(
        "web_a",
        "CREATE INDEX",
        "Building an index normally locks out writes. With CONCURRENTLY the build does not block writes, "
        "at the cost of two table scans. Unrelated sentence about syntax follows here.",
    )
    other = windows("web_b", "Row objects", "A Row instance serves as a row factory for connections.")
    also = windows(
        "web_c", "Locks", "Table locks and writes: an index build takes a SHARE lock that blocks writes."
    )
    chosen = select(concurrently + other + also, "build index without blocking writes", 3, per_source=1)
    assert sorted(w.key for w in chosen) == ["web_a", "web_c"]  # the Row page shares no term: never chosen
    assert select(concurrently, "", 3) == [] and select([], "index", 3) == []
