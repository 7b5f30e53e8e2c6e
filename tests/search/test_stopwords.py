"""Function words in local-index queries: dropped from the match expression, kept inside quoted phrases,
and a query of nothing else still answers, from a bounded sample of its matches (issue 17: such queries
took 100-380 ms on 100k passages). Also the indexing shortcuts that came with it: the word count's fast
path and writing several files per transaction change nothing that is stored."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from deepresearch.search import SearchHit
from deepresearch.search import local as local_module
from deepresearch.search.local import LocalIndex
from deepresearch.search.passages import build_fts_query, count_words, function_words_only

PROSE = (
    "It is kept here as ordinary prose of a realistic length, so that every record looks like a "
    "paragraph of a manual and the ranking sees passages of similar size."
)


def write_records(folder: Path, records: list[tuple[str, str]]) -> Path:
    """A JSONL file of ``(title, text)`` records at ``https://notes.example/N``, in this order."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "records.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for number, (title, text) in enumerate(records):
            record = {"id": str(number), "title": title, "url": f"https://notes.example/{number}"}
            out.write(json.dumps({**record, "text": text}) + "\n")
    return path


def build(tmp_path: Path, records: list[tuple[str, str]]) -> LocalIndex:
    index = LocalIndex(tmp_path / "index.sqlite")
    report = index.add_paths([write_records(tmp_path / "docs", records)])
    assert report.errors == []
    return index


def search(index: LocalIndex, query: str, limit: int = 10) -> list[SearchHit]:
    return asyncio.run(index.search(query, limit=limit))


def numbers(hits: list[SearchHit]) -> list[int]:
    return [int(hit.url.rsplit("/", 1)[-1]) for hit in hits]


RECORDS = [
    ("Hamlet", f"The prince asks whether to be or not to be, and the play turns on it. {PROSE}"),
    ("Being", f"To be fair, a kettle is not a teapot, or so it may be argued at length. {PROSE}"),
    ("Castles", f"The walls of the castle at Dover were rebuilt after the siege of the keep. {PROSE}"),
    ("Keeps", f"A castle keep is the last refuge; its walls are the thickest of the castle. {PROSE}"),
    ("Rivers", f"The river floods in spring and the meadows along it turn to marsh. {PROSE}"),
    ("Bread", f"Sourdough bread rises slowly because wild yeast works at the pace of the cold. {PROSE}"),
]


# --- the match expression


def test_function_words_leave_the_match_expression_but_stay_inside_a_phrase() -> None:
    fts = build_fts_query("What were the walls of the castle made of?")
    assert fts is not None
    assert fts.match == '"walls" OR "castle" OR "made"'
    phrase = build_fts_query('the "lord of the rings" in the film')
    assert phrase is not None
    assert phrase.match == '"lord of the rings" OR "film"'
    assert phrase.terms == ["lord", "of", "the", "rings", "film"]
    # One quoted word is kept even when it is a function word: the user asked for it.
    quoted = build_fts_query('"this" keyword')
    assert quoted is not None and quoted.match == '"this" OR "keyword"'


def test_a_query_of_function_words_alone_searches_them_and_says_so() -> None:
    fts = build_fts_query("of and the of")
    assert fts is not None
    assert fts.match == '"of" OR "and" OR "the"'
    assert function_words_only(fts.terms)
    content = build_fts_query("the castle")
    assert content is not None and not function_words_only(content.terms)
    asking = build_fts_query("how can I")
    assert asking is not None and function_words_only(asking.terms)


def test_chinese_function_characters_leave_the_query_but_words_with_them_stay() -> None:
    fts = build_fts_query("的 全文检索")
    assert fts is not None
    assert fts.match == '"全文" OR "文检" OR "检索"'
    # A bigram with one function character is a word ("目的": purpose) and stays.
    purpose = build_fts_query("目的")
    assert purpose is not None and purpose.match == '"目的"'
    alone = build_fts_query("的是")
    assert alone is not None and alone.match == '"的是"'
    assert function_words_only(alone.terms)
    # An English function word beside Chinese text is dropped, not kept as a fallback.
    mixed = build_fts_query("the 检索")
    assert mixed is not None and mixed.match == '"检索"'
    phrase = build_fts_query('"全文检索" 的')
    assert phrase is not None and phrase.match == '"全文 文检 检索"'


# --- searching


def test_a_quoted_phrase_of_function_words_finds_the_passage_that_has_it(tmp_path: Path) -> None:
    with build(tmp_path, RECORDS) as index:
        quoted = search(index, '"to be or not to be"')
        loose = search(index, "to be or not to be")
    assert numbers(quoted) == [0]  # only the exact sequence matches a phrase
    assert quoted[0].title == "Hamlet"
    assert "to be or not to be" in quoted[0].snippet
    # Unquoted, the same words are function words only: the query still answers, with every record
    # that has one of them ("to", "be", "or", "not"; three records, all within the sample).
    assert sorted(numbers(loose)) == [0, 1, 4]


def test_function_words_do_not_change_the_ranking_of_a_content_query(tmp_path: Path) -> None:
    with build(tmp_path, RECORDS) as index:
        plain = search(index, "castle walls")
        asked = search(index, "what are the walls of the castle?")
    assert set(numbers(plain)[:2]) == {2, 3}
    assert [(hit.url, hit.score, hit.snippet) for hit in asked] == [
        (hit.url, hit.score, hit.snippet) for hit in plain
    ]


def test_a_function_word_query_is_ranked_within_a_sample_of_its_first_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a query of function words is sampled: a content word is scored over every match."""
    monkeypatch.setattr(local_module, "BROAD_QUERY_SAMPLE", 4)
    records = [(f"Note {n}", f"Note {n} is about the weather and of little else. {PROSE}") for n in range(12)]
    # The best match for each query is the last record written (the highest rowid).
    records.append(("Last", f"Of the of and the: the the the of of and. The zeppelin. {PROSE}"))
    with build(tmp_path, records) as index:
        broad = search(index, "of and the", limit=10)
        content = search(index, "zeppelin", limit=10)
    assert sorted(numbers(broad)) == [0, 1, 2, 3]  # the first four matches, ranked among themselves
    assert numbers(content) == [12]


def test_only_function_words_in_a_chinese_index_still_answer(tmp_path: Path) -> None:
    records = [
        ("检索", "全文检索的原理是倒排索引，这是搜索引擎的基础。" * 3),
        ("目的", "本文的目的是说明索引的结构。" * 3),
    ]
    with build(tmp_path, records) as index:
        assert numbers(search(index, "全文检索的原理")) == [0]
        assert numbers(search(index, "目的")) == [1]
        assert sorted(numbers(search(index, "的"))) == [0, 1]


# --- indexing shortcuts


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii words,  two spaces\tand a tab\nand lines",
        "caf\u00e9 na\u00efve \u2014 dash\u00a0no-break space",
        "ideographic\u3000space and \x1c file separator",
        "中文没有空格 mixed中文words 。",
        "",
    ],
)
def test_word_count_fast_path_counts_as_the_rule_does(text: str) -> None:
    cjk = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    rule = re.compile(rf"[{cjk}]|[^\s{cjk}]+")
    assert count_words(text) == len(rule.findall(text))


def test_writing_files_in_batches_stores_what_one_file_at_a_time_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for n, (title, text) in enumerate(RECORDS):
        (folder / f"note-{n}.md").write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
    found: dict[int, list[tuple[str, float | None]]] = {}
    for batch_bytes in (1, 10_000_000):  # a transaction per file; all files in one
        monkeypatch.setattr(local_module, "WRITE_BATCH_BYTES", batch_bytes)
        with LocalIndex(tmp_path / f"index-{batch_bytes}.sqlite") as index:
            report = index.add_paths([folder])
            assert (report.added, report.passages, report.errors) == (6, 6, [])
            assert index.stats().documents == 6
            found[batch_bytes] = [(hit.title, hit.score) for hit in search(index, "castle walls bread")]
            again = index.add_paths([folder])
            assert (again.added, again.skipped) == (0, 6)
    assert found[1] == found[10_000_000]
    assert {title for title, _ in found[1]} == {"Castles", "Keeps", "Bread"}
