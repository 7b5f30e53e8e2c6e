"""``curate`` end to end: runs of our agent against the scripted model, each built to trip one filter,
are curated, and exactly the expected runs are kept, with the expected reason for every other one."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.curate.export import validate_chat
from deepresearch.curate.pipeline import CARD, DECISIONS, MIDTRAIN, SFT, curate
from deepresearch.errors import ConfigError, DeepResearchError
from deepresearch.research import research
from deepresearch.runs import TASK, RunDir, RunStore
from tests.agent.scripts import INVENTED_KEY, cited_keys, last_message, turn
from tests.fakes.openai_server import FakeOpenAI, Reply

Script = Callable[[dict[str, Any]], Reply]
RANKING = "Which ranking function does the corpus describe?"
TOOLS = ["batch_web_surfer", "file", "todo", "shell"]


def search(*queries: str) -> Reply:
    return Reply(
        content="Searching.",
        tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": list(queries), "topk": 3})],
    )


def first_key(request: dict[str, Any]) -> str:
    return next(iter(cited_keys(request).values()))


def searching(queries: list[list[str]], answer: Callable[[str], str], reasoning: str | None = None) -> Script:
    """One search per entry of ``queries``, then ``answer(key)`` inside <answer> (key: a source it saw)."""

    def script(request: dict[str, Any]) -> Reply:
        n = turn(request)
        if n < len(queries):
            return search(*queries[n])
        return Reply(reasoning=reasoning, content=f"<answer>\n{answer(first_key(request))}\n</answer>")

    return script


def looping(request: dict[str, Any]) -> Reply:
    """The same search again and again, until the loop forces the answer."""
    last = last_message(request)
    if (last.get("role") == "user" and "Do not call any more tools" in str(last.get("content"))) or turn(
        request
    ) >= 6:
        return Reply(
            content=f"<answer>\nSearch engines rank with BM25 \\cite{{{first_key(request)}}}.\n</answer>"
        )
    return search("ranking")


def recovering(request: dict[str, Any]) -> Reply:
    """A search without queries (the tool answers with an error), then a proper one, then the answer."""
    n = turn(request)
    if n == 0:
        return Reply(content="Searching.", tool_calls=[("batch_web_surfer", {"action": "batch_search"})])
    if n == 1:
        return search("stop words")
    key = first_key(request)
    return Reply(content=f"<answer>\nEngines keep stop words for phrase queries \\cite{{{key}}}.\n</answer>")


def failing(request: dict[str, Any]) -> Reply:
    return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))


MIXED = (
    "SQLite FTS5 ranks matches with the bm25 function \\cite{{{key}}}.\n\n"
    "这个函数会根据词频和文档长度计算每一行的相关性得分，得分越低表示匹配越好。"
)
RUNS: dict[str, tuple[str, Script]] = {
    "short": (
        RANKING,
        searching(
            [["BM25 ranking"]],
            lambda k: f"The corpus describes the Okapi BM25 ranking function \\cite{{{k}}}.",
            "Both sources agree.",
        ),
    ),
    "long": (
        RANKING,
        searching(
            [["ranking function"], ["BM25 saturation"]],
            lambda k: f"It describes BM25, a probabilistic ranking function \\cite{{{k}}}.",
        ),
    ),
    "wrong": (
        RANKING,
        searching([["ranking"]], lambda k: f"The corpus describes TF-IDF weighting \\cite{{{k}}}."),
    ),
    "loop": ("How do search engines rank documents?", looping),
    "stale": (
        "What does the BM25 saturation parameter control?",
        searching([["BM25 saturation parameter 2019"]], lambda k: f"It limits repeated terms \\cite{{{k}}}."),
    ),
    "mixed": (
        "How does SQLite FTS5 rank matches?",
        searching([["SQLite FTS5 rank"]], lambda k: MIXED.format(key=k)),
    ),
    "unresolved": (
        "What is BM25F?",
        searching(
            [["BM25F"]],
            lambda k: f"BM25F weights fields \\cite{{{k}}}; it is popular \\cite{{{INVENTED_KEY}}}.",
        ),
    ),
    "recovered": ("Why do modern engines keep stop words?", recovering),
    "tokens": (
        "How are Unicode word boundaries found when tokenizing?",
        searching(
            [["Unicode word boundaries tokenization"]],
            lambda k: f"By the Unicode segmentation rules \\cite{{{k}}}.",
        ),
    ),
    "zh": (
        "语料库描述了哪种排序函数？",
        searching(
            [["BM25 排序函数"]],
            lambda k: (
                f"语料库描述了 Okapi BM25 排序函数，SQLite 的 FTS5 扩展也用它给匹配结果打分 \\cite{{{k}}}。"
            ),
        ),
    ),
    "failed": ("Will the model answer at all?", failing),
}
EXPECTED_DROPS = {
    "long": ["not_shortest"],
    "wrong": ["incorrect_answer"],
    "loop": ["repeated_tool_call"],
    "stale": ["stale_year_query"],
    "mixed": ["language_mixing"],
    "unresolved": ["unresolved_citation"],
    "recovered": ["error_recovery_over_quota"],
    "failed": ["not_finished"],
}


def build_run(fake: FakeOpenAI, index: Path, path: Path, question: str, script: Script) -> RunDir:
    """One real run of our agent at ``path`` (a model that fails leaves a failed run behind)."""
    fake.script = script
    settings = load_settings(
        {"base_url": fake.base_url, "model": "fake-model", "index": index, "out": path, "max_retries": 0},
        env={},
    )
    with contextlib.suppress(DeepResearchError):  # a failed run is what a failing model leaves
        asyncio.run(research(question, settings))
    return RunDir.open(path)


def build_runs(
    fake: FakeOpenAI, index: Path, root: Path, names: list[str] | None = None
) -> dict[str, RunDir]:
    runs = {name: build_run(fake, index, root / name, *RUNS[name]) for name in names or RUNS}
    if "recovered" in runs:  # its expected answer comes from its own task, the others' from --answers
        RunStore(runs["recovered"].path).write_json(
            TASK, {"task_id": "stop-words", "benchmark": "synth", "answer": "phrase queries"}
        )
    return runs


@pytest.fixture
def built(fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path) -> tuple[dict[str, RunDir], Path]:
    runs = build_runs(fake_llm, corpus_index, tmp_path / "runs")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question": RANKING.upper(), "answer": ["BM25", "Okapi BM25"]}) + "\n")
    return runs, answers


def decisions_of(out: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in (out / DECISIONS).read_text().splitlines()]
    return {Path(d["run"]).name: d for d in lines}


def test_each_filter_drops_exactly_the_run_built_to_trip_it(
    built: tuple[dict[str, RunDir], Path], tmp_path: Path
) -> None:
    runs, answers = built
    assert runs["failed"].status == "failed" and runs["loop"].finished
    out = tmp_path / "curated"
    report = curate([tmp_path / "runs"], out=out, answers=answers)

    decisions = decisions_of(out)
    assert set(decisions) == set(RUNS)
    assert {name for name, d in decisions.items() if d["kept"]} == {"short", "tokens", "zh"}
    assert {name: d["reasons"] for name, d in decisions.items() if not d["kept"]} == EXPECTED_DROPS
    assert report.runs == len(RUNS) and report.kept == 3 and not report.nothing_kept
    assert report.dropped["not_shortest"] == 1 and report.dropped["language_mixing"] == 1

    # why each run passed or failed is recorded per filter
    short = decisions["short"]["filters"]
    assert short["correct_and_shortest"]["status"] == "pass" and short["correct_and_shortest"]["steps"] == 2
    assert decisions["long"]["filters"]["correct_and_shortest"]["kept_instead"] == runs["short"].meta.id
    assert decisions["tokens"]["filters"]["correct_and_shortest"]["reason"] == "no_expected_answer"
    assert decisions["stale"]["filters"]["temporal"]["year"] == 2019
    assert decisions["loop"]["filters"]["loops"]["times"] >= 3
    assert decisions["zh"]["filters"]["language"] == {
        "status": "pass",
        "reason": "one_language",
        "language": "zh",
    }
    recovered = decisions["recovered"]["filters"]
    assert recovered["correct_and_shortest"] == {
        "status": "pass",
        "reason": "correct_and_shortest",
        "expected_from": "task",
        "steps": 3,
        "tool_calls": 2,
    }
    assert recovered["error_recovery"]["allowed"] == 0
    assert decisions["failed"]["filters"] == {
        "finished": {"status": "fail", "reason": "not_finished", "run_status": "failed"}
    }

    # sft.jsonl: one valid chat sample per kept run, reasoning in its own field
    samples = [json.loads(line) for line in (out / SFT).read_text().splitlines()]
    assert [s["meta"]["run_id"] for s in samples] == [runs[n].meta.id for n in ("short", "tokens", "zh")]
    for sample in samples:
        assert validate_chat(sample) == []
        assert [t["function"]["name"] for t in sample["tools"]] == TOOLS
        assert sample["messages"][0]["role"] == "system" and sample["messages"][-1]["role"] == "assistant"
    final = samples[0]["messages"][-1]
    assert final["reasoning_content"] == "Both sources agree." and "agree" not in final["content"]
    assert samples[0]["meta"]["question"] == RANKING and samples[0]["meta"]["steps"] == 2

    # midtrain.jsonl: stage I text (question + report, no tool calls), then stage II conversations
    midtrain = [json.loads(line) for line in (out / MIDTRAIN).read_text().splitlines()]
    assert [r["stage"] for r in midtrain] == [1, 1, 1, 2, 2, 2]
    assert midtrain[0]["text"].startswith(RANKING + "\n\n") and "Okapi BM25" in midtrain[0]["text"]
    assert all("tool_calls" not in r["text"] for r in midtrain[:3])
    assert midtrain[3]["messages"] == samples[0]["messages"]

    card = (out / CARD).read_text()
    assert "Runs read: 11. Kept: 3. Dropped: 8." in card
    assert "| loops | 9 | 1 | 0 |" in card  # the failed run is never looked at past `finished`
    assert "| language | fail | language_mixing | 1 |" in card
    assert "| zh | 1 |" in card and "| en | 2 |" in card
    assert "| sft | 3 |" in card


def test_the_quota_keeps_a_share_of_recovered_runs_and_output_is_deterministic(
    built: tuple[dict[str, RunDir], Path], tmp_path: Path
) -> None:
    runs, answers = built
    first = tmp_path / "first"
    report = curate([tmp_path / "runs"], out=first, answers=answers, error_quota=0.25)
    decisions = decisions_of(first)
    assert decisions["recovered"]["kept"] and report.kept == 4  # 1 of 4 kept runs is a quarter
    assert decisions["recovered"]["filters"]["error_recovery"]["reason"] == "within_quota"

    # the same runs given one by one, in another order: the same bytes
    again = tmp_path / "again"
    curate(
        sorted((r.path for r in runs.values()), reverse=True), out=again, answers=answers, error_quota=0.25
    )
    for name in (SFT, MIDTRAIN, DECISIONS, CARD):
        assert (first / name).read_bytes() == (again / name).read_bytes()

    # without the answers file the ranking runs are not judged for correctness: all three are kept
    loose = curate([tmp_path / "runs"], out=tmp_path / "loose", error_quota=0.25)
    kept = {name for name, d in decisions_of(tmp_path / "loose").items() if d["kept"]}
    assert {"short", "long", "wrong"} <= kept and loose.kept == 6


def test_a_planned_task_is_scored_and_documents_join_stage_one(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    runs = build_runs(fake_llm, corpus_index, tmp_path / "runs", ["short", "tokens"])
    plan = ["Interview three bakers about sourdough", "Compare flour prices in Lyon"]
    RunStore(runs["tokens"].path).write_json(TASK, {"task_id": "t", "benchmark": "synth", "plan": plan})
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "one.md").write_text("# Inverted indexes\n\nAn inverted index maps terms to documents.\n")
    (docs / "two.txt").write_text("Stemming cuts words to their stems.\n")

    out = tmp_path / "curated"
    report = curate([runs["short"].path, runs["tokens"].path], out=out, documents=docs)
    decisions = decisions_of(out)
    alignment = decisions["tokens"]["filters"]["plan_alignment"]
    assert (
        alignment["status"] == "fail" and alignment["reason"] == "plan_deviation" and alignment["score"] < 0.6
    )
    assert decisions["short"]["filters"]["plan_alignment"]["reason"] == "no_plan"
    assert report.kept == 1 and report.dropped == {"plan_deviation": 1}
    stage_one = [json.loads(line) for line in (out / MIDTRAIN).read_text().splitlines()]
    documents = [r for r in stage_one if r.get("kind") == "document"]
    assert sorted(Path(r["source"]).name for r in documents) == ["one.md", "two.txt"]
    assert "Documents added to mid-training stage I: 2." in (out / CARD).read_text()

    # a lower bar keeps it
    assert curate([tmp_path / "runs"], out=tmp_path / "lenient", min_alignment=0.0).kept == 2


def test_nothing_kept_and_bad_inputs_are_reported(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    runs = build_runs(fake_llm, corpus_index, tmp_path / "runs", ["failed"])
    report = curate([runs["failed"].path, tmp_path / "missing"], out=tmp_path / "out")
    assert report.nothing_kept and report.dropped == {"not_finished": 1}
    assert report.problems == [f"{tmp_path / 'missing'}: no such file or directory"]
    assert (tmp_path / "out" / SFT).read_text() == ""
    assert report.describe().splitlines()[0] == f"kept 0 of 1 runs → {tmp_path / 'out'}"
    assert "dropped: not_finished 1" in report.describe() and "sft.jsonl: 0 records" in report.describe()
    with pytest.raises(ConfigError, match="no run directories"):
        curate([tmp_path / "missing"], out=tmp_path / "out")
    with pytest.raises(ConfigError, match="quota"):
        curate([runs["failed"].path], out=tmp_path / "out", error_quota=1.5)
