"""The curation filters on hand-made run views: thresholds, what counts as mixing, repeats and years."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deepresearch.curate.filters import (
    Expectation,
    RunView,
    answer_matches,
    check_citations,
    check_correct,
    check_language,
    check_loops,
    check_plan,
    check_temporal,
    cjk_density,
    error_quota_size,
    repeat_ratio,
    shortest,
)
from deepresearch.curate.pipeline import search_queries
from deepresearch.tools.registry import default_tools


def view(**fields: object) -> RunView:
    base: dict[str, object] = {
        "path": Path("run"),
        "run_id": "r1",
        "question": "How does BM25 rank documents?",
    }
    return RunView(**(base | fields))  # type: ignore[arg-type]


VARIED = (
    "BM25 scores a document by summing, over the query terms, an inverse document frequency weight "
    "multiplied by a saturated term frequency. Long documents are normalised by their length relative "
    "to the average, so a term repeated many times in a long page counts for less than in a short one."
)


def test_loops_catch_repeated_text_and_repeated_calls_but_not_ordinary_prose() -> None:
    looping = ["I will open the same page again to be completely sure about it."] * 8
    ratio, total = repeat_ratio(looping)
    assert total >= 30 and ratio > 0.8
    verdict = check_loops(view(assistant_texts=looping))
    assert verdict.status == "fail" and verdict.reason == "repeated_text"
    assert check_loops(view(assistant_texts=[VARIED, "Searching.", "Searching."])).status == "pass"
    assert check_loops(view(assistant_texts=[VARIED], reasoning_texts=looping)).reason == "repeated_text"

    same = '{"action": "batch_search", "queries": ["bm25"]}'
    reordered = '{"queries": ["bm25"],  "action": "batch_search"}'
    calls = [("batch_web_surfer", same), ("batch_web_surfer", reordered), ("batch_web_surfer", same)]
    verdict = check_loops(view(tool_calls=calls))
    assert verdict.reason == "repeated_tool_call" and verdict.detail == {
        "tool": "batch_web_surfer",
        "times": 3,
    }
    assert check_loops(view(tool_calls=calls[:2])).status == "pass"  # twice is not yet a loop


def test_temporal_anchoring_needs_a_past_year_in_a_query_of_a_question_without_one() -> None:
    stale = view(started_year=2026, search_queries=["BM25 tutorial", "BM25 benchmark 2023"])
    verdict = check_temporal(stale)
    assert verdict.status == "fail" and verdict.detail == {"query": "BM25 benchmark 2023", "year": 2023}
    assert check_temporal(view(started_year=2026, search_queries=["BM25 news 2026"])).status == "pass"
    assert check_temporal(view(started_year=2026, search_queries=["port 20230 tcp"])).status == "pass"
    dated = view(
        question="What changed in BM25 tooling in 2021?", started_year=2026, search_queries=["bm25 2021"]
    )
    assert check_temporal(dated).reason == "question_names_a_year"


def test_language_mixing_ignores_code_urls_citations_and_names() -> None:
    english = (
        "FTS5 ranks with bm25 \\cite{web_0123abcd} [1].\n\n"
        "```python\nprint('排序函数的例子，这里全是中文注释')\n```\n\n"
        "See https://zh.wikipedia.org/wiki/排序函数 and `排序函数` for the Chinese names of the function.\n\n"
        "## References\n\n[1] 排序函数简介 — https://example.org/zh\n"
    )
    assert check_language(view(report=english)).status == "pass"
    mixed = english + "\n这个函数会根据词频和文档长度计算每一行的相关性得分。\n"
    verdict = check_language(view(report=mixed.replace("## References", "Notes")))
    assert (
        verdict.status == "fail" and verdict.reason == "language_mixing" and verdict.detail["density"] == 1.0
    )

    chinese = "语料库描述了 Okapi BM25 排序函数，SQLite 的 FTS5 扩展也用它给结果打分 \\cite{web_0123abcd}。"
    assert cjk_density(chinese, "zh")[0] == 1.0  # the capitalised names are not counted in Chinese text
    assert check_language(view(language="zh", report=chinese)).status == "pass"
    english_in_zh = (
        chinese + "\n\nThe function also normalises long documents by their length relative to the mean."
    )
    assert check_language(view(language="zh", report=english_in_zh)).reason == "language_mixing"
    # the assistant's replies count too, paragraphs too short to judge do not
    assert check_language(view(report=VARIED, assistant_texts=["好的。"])).status == "pass"
    assert (
        check_language(view(report=VARIED, assistant_texts=["我先搜索一下这个排序函数的资料。"])).status
        == "fail"
    )


def test_correctness_is_a_whole_word_phrase_match_after_normalising() -> None:
    assert answer_matches(["Okapi BM25"], "The corpus describes the okapi-BM25 function [1].")
    assert answer_matches(["the BM25 function"], "It describes a BM25 function.")  # articles do not count
    assert not answer_matches(["BM25"], "It describes BM25F only.")
    assert not answer_matches(["BM2"], "It describes BM25.")
    assert answer_matches(["排序函数"], "语料库描述了 BM25 排序 函数。")
    assert answer_matches(["TF-IDF", "BM25"], "BM25, of course.")

    expected = Expectation(answers=("BM25",), origin="answers")
    right = check_correct(view(expected=expected, final_answer="It is BM25."))
    wrong = check_correct(view(expected=expected, final_answer="It is TF-IDF."))
    assert (right.status, wrong.status, wrong.reason) == ("pass", "fail", "incorrect_answer")
    assert check_correct(view()).reason == "no_expected_answer"
    assert check_correct(view(expected=Expectation(plan=("a",)))).status == "skip"


def test_shortest_orders_by_steps_then_tool_calls_then_id() -> None:
    a = view(run_id="a", steps=3, tool_calls=[("x", "{}")])
    b = view(run_id="b", steps=2, tool_calls=[("x", "{}"), ("y", "{}")])
    c = view(run_id="c", steps=2, tool_calls=[("x", "{}")])
    d = view(run_id="0", steps=2, tool_calls=[("z", "{}")])
    assert shortest([a, b, c]) is c and shortest([a, b, c, d]) is d


def test_citations_must_resolve_to_sources_of_the_run() -> None:
    good = view(
        cited_keys=["web_0123abcd"], source_keys=frozenset({"web_0123abcd"}), citations={"resolved": 1}
    )
    assert check_citations(good).status == "pass"
    unknown = view(
        cited_keys=["web_deadbeef"], source_keys=frozenset({"web_0123abcd"}), citations={"resolved": 1}
    )
    assert check_citations(unknown).detail == {"unresolved": 1, "keys": ["web_deadbeef"]}
    audited = view(citations={"cited": 2, "resolved": 1, "unresolved": 1})
    assert check_citations(audited).reason == "unresolved_citation"
    assert check_citations(view(citations={"cited": 0, "resolved": 0})).reason == "uncited"


def test_plan_verdicts_and_the_error_quota() -> None:
    assert check_plan([], 0.1, min_alignment=0.6).reason == "no_plan"
    assert check_plan(["a"], None, min_alignment=0.6).reason == "no_alignment_module"
    assert check_plan(["a"], 0.59, min_alignment=0.6).reason == "plan_deviation"
    assert check_plan(["a"], 0.6, min_alignment=0.6).status == "pass"

    assert error_quota_size(9, 0.1) == 1  # 1 of 10 kept
    assert error_quota_size(8, 0.1) == 0
    assert error_quota_size(3, 0.25) == 1 and error_quota_size(6, 0.25) == 2
    assert error_quota_size(100, 0.0) == 0 and error_quota_size(0, 0.5) == 0
    assert error_quota_size(0, 1.0) == sys.maxsize


def test_search_queries_are_read_from_the_shape_of_the_tools_own_search_call() -> None:
    web = default_tools()["batch_web_surfer"]
    search = json.dumps({"action": "batch_search", "queries": ["bm25 2019", "fts5"], "topk": 5})
    assert search_queries(web, search) == ["bm25 2019", "fts5"]
    assert search_queries(web, json.dumps({"action": "batch_open", "urls": ["https://a.example/2019"]})) == []
    assert search_queries(web, "{not json") == []
    assert search_queries(default_tools()["file"], json.dumps({"action": "read", "path": "a"})) == []
    assert search_queries(None, search) == []
