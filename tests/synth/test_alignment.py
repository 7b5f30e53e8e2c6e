"""Plan alignment: the token rules and the score on made-up steps, then on real run directories of our
agent against the fake OpenAI server and the local index of tests/data/corpus — one run that follows the
plan through its todo list and searches, one that does something else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.research import research
from deepresearch.runs import RunDir
from deepresearch.synth.alignment import (
    ORDER_FLOOR,
    RunStep,
    align,
    order_agreement,
    plan_alignment,
    run_steps,
    tokens,
)
from tests.agent.scripts import cited_keys, turn
from tests.fakes.openai_server import FakeOpenAI, Reply

PLAN = [
    "Find out how BM25 ranks documents",
    "Explain term frequency saturation in BM25",
    "Compare BM25 with the full-text search of SQLite FTS5",
    "Write a report on BM25 ranking in practice",
]
AgentScript = Callable[[dict[str, Any]], Reply]


def agent(todo: Sequence[str], queries: Sequence[str]) -> AgentScript:
    """An agent that writes ``todo`` as its plan, runs ``queries``, opens the first hit, marks its plan
    done and answers citing what it read."""

    def script(request: dict[str, Any]) -> Reply:
        n = turn(request)
        if n == 0:
            plan = {str(i): {"task": task} for i, task in enumerate(todo, 1)}
            return Reply(content="Planning.", tool_calls=[("todo", {"updates": plan})])
        if n == 1:
            search = {"action": "batch_search", "queries": list(queries), "topk": 6}
            return Reply(content="Searching.", tool_calls=[("batch_web_surfer", search)])
        keys = cited_keys(request)
        if n == 2 and keys:
            opened = {"action": "batch_open", "urls": list(keys)[:1]}
            return Reply(content="Reading.", tool_calls=[("batch_web_surfer", opened)])
        if n <= 3:
            done = {str(i): {"status": "completed"} for i in range(1, len(todo) + 1)}
            return Reply(content="Done.", tool_calls=[("todo", {"updates": done})])
        cite = f" \\cite{{{next(iter(keys.values()))}}}" if keys else ""
        return Reply(content=f"<answer>\n# Findings\n\nWhat the sources say{cite}.\n</answer>")

    return script


FOLLOWER = agent(
    [
        "Find how BM25 ranks documents",
        "Explain term frequency saturation",
        "Compare BM25 and SQLite FTS5",
        "Write the report on BM25 ranking in practice",
    ],
    ["BM25 ranking function", "term frequency saturation", "SQLite FTS5 full-text search"],
)
STRAY = agent(
    ["Check the weather in Paris tomorrow", "Book a train ticket to Lyon"],
    ["Paris weather forecast", "train tickets Lyon"],
)


def run_with(fake: FakeOpenAI, index: Path, out: Path, script: AgentScript) -> RunDir:
    fake.script = script
    settings = load_settings(
        {"base_url": fake.base_url, "model": "fake-model", "index": index, "out": out}, env={}
    )
    result = asyncio.run(research("How does BM25 rank documents in practice?", settings))
    return RunDir.open(result.run_dir)


def steps(*texts: str, kind: str = "todo") -> list[RunStep]:
    return [RunStep(kind, text, 0) for text in texts]  # type: ignore[arg-type]


def test_tokens_drop_function_words_stem_latin_and_read_chinese_as_bigrams() -> None:
    assert tokens("Find how BM25 ranks the documents") == {"bm25", "rank", "document"}
    assert tokens("ranking") == tokens("ranked") == tokens("Ranks") == {"rank"}
    assert tokens("Write the report") == {"write", "report"}  # generic words stay when nothing else does
    assert tokens("研究中文分词的主要方法") == {"中文", "文分", "分词", "主要", "要方", "方法"}
    assert "的" not in "".join(tokens("分词的方法")) and tokens("撰写报告") == {"撰写", "写报", "报告"}
    assert tokens("ＢＭ２５") == {"bm25"}  # full-width forms are folded


def test_the_score_rewards_coverage_and_plan_order() -> None:
    plan = ["Collect BM25 papers", "Compare BM25 with TF-IDF", "Summarise BM25 saturation findings"]
    in_order = align(plan, steps("Collect papers on BM25", "Compare BM25 and TF-IDF", "BM25 saturation"))
    assert (in_order.score, in_order.coverage, in_order.order) == (1.0, 1.0, 1.0)
    assert in_order.matched == [0, 1, 2] and all(s >= 0.3 for s in in_order.similarity)

    backwards = align(plan, steps("BM25 saturation", "Compare BM25 and TF-IDF", "Collect papers on BM25"))
    assert backwards.matched == [2, 1, 0] and backwards.order == 0.0
    assert backwards.score == pytest.approx(ORDER_FLOOR) and backwards.score < 0.6

    partial = align(plan, steps("Collect papers on BM25", "Bake bread"))
    assert partial.matched == [0, None, None] and partial.coverage == pytest.approx(1 / 3)
    assert partial.order == 1.0 and partial.score == pytest.approx(1 / 3)

    nothing = align(plan, steps("Bake bread", "Walk the dog"))
    assert (nothing.score, nothing.coverage, nothing.order, nothing.matched) == (0.0, 0.0, 0.0, [None] * 3)
    assert align([], steps("Bake bread")).score == 0.0


def test_todo_steps_take_precedence_over_actions_and_the_best_overlap_wins() -> None:
    run = [
        *steps("BM25 ranking", kind="search"),
        *steps("Find how BM25 ranks documents", "Write a report on BM25 ranking in practice"),
    ]
    result = align(["Write a report on BM25 ranking in practice"], run)
    assert result.matched == [2]  # not the earlier search, not the first todo that mentions BM25
    assert result.to_dict()["matches"] == [{"kind": "todo", "text": run[2].text}]
    only_actions = align(["Search BM25 ranking"], steps("BM25 ranking", kind="search"))
    assert only_actions.matched == [0] and only_actions.coverage == 1.0


def test_order_agreement_counts_concordant_pairs_and_ignores_ties() -> None:
    assert order_agreement([0, 1, 3, 2]) == pytest.approx(5 / 6)
    assert order_agreement([4, 4, None]) == 1.0
    assert order_agreement([None, None]) == 0.0


def test_a_run_that_follows_the_plan_scores_high_and_says_why(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    run = run_with(fake_llm, corpus_index, tmp_path / "follow", FOLLOWER)
    assert run.finished
    read = run_steps(run)
    kinds = [step.kind for step in read]
    assert kinds[:4] == ["todo"] * 4 and kinds.count("todo") == 4  # the status update adds no step
    assert [s.text for s in read if s.kind == "search"] == [
        "BM25 ranking function",
        "term frequency saturation",
        "SQLite FTS5 full-text search",
    ]
    opened = [s for s in read if s.kind == "open"]
    assert len(opened) == 1 and opened[0].text.split(" > ")[0] in {s["title"] for s in run.sources()}

    result = plan_alignment(run, PLAN)
    assert result.matched == [0, 1, 2, 3] and result.coverage == 1.0 and result.order == 1.0
    assert result.score >= 0.6
    assert [m["kind"] for m in result.to_dict()["matches"]] == ["todo"] * 4


def test_a_run_that_does_something_else_scores_low(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    run = run_with(fake_llm, corpus_index, tmp_path / "stray", STRAY)
    assert run.finished
    assert [s.text for s in run_steps(run) if s.kind == "todo"] == [
        "Check the weather in Paris tomorrow",
        "Book a train ticket to Lyon",
    ]
    result = plan_alignment(run, PLAN)
    assert result.score < 0.6 and result.coverage <= 0.25
    assert result.matched.count(None) >= 3
