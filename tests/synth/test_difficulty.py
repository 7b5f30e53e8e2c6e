"""``synth difficulty``: a baseline agent on the fake server answers each question; what it solves is
dropped, what it does not is kept with its answer and run; a rerun after a failure repeats no
finished agent run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from deepresearch.config import load_settings
from deepresearch.runs import RunDir
from deepresearch.synth.difficulty import synth_difficulty
from deepresearch.synth.engine import ledger_path
from tests.agent.scripts import cited_keys, question, turn
from tests.fakes.openai_server import FakeOpenAI, Reply

OUTAGE = {"on": False}
"""While on, the model answers 500 to agent requests of ``[flaky]`` questions."""


def agent(request: dict[str, Any]) -> Reply:
    """Search, then answer BM25 for ``[knows]`` questions, a paraphrase for ``[alias]``, TF-IDF else;
    search forever for ``[mute]``."""
    asked = question(request)
    if OUTAGE["on"] and "[flaky]" in asked:
        return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))
    if turn(request) == 0 or "[mute]" in asked:
        return Reply(
            content="Searching.",
            tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": ["BM25"], "topk": 3})],
        )
    key = next(iter(cited_keys(request).values()))
    if "[knows]" in asked:
        answer = "The ranking function is BM25"
    elif "[alias]" in asked:
        answer = "The ranking function is Okapi's best-matching scheme"
    else:
        answer = "The ranking function is TF-IDF"
    return Reply(content=f"<answer>\n{answer} \\cite{{{key}}}.\n</answer>")


def judge(request: dict[str, Any]) -> Reply:
    """Equivalent when the answer under check names BM25 or Okapi's scheme; garbage for ``[garbled]``."""
    text = request["messages"][0]["content"]
    if "[garbled]" in text:
        return Reply(content="I cannot decide.")
    given = text.split("<<<", 1)[1]
    return Reply(
        content=json.dumps({"equivalent": "BM25" in given or "Okapi" in given, "reason": "compared"})
    )


def routed(request: dict[str, Any]) -> Reply:
    return agent(request) if is_agent(request) else judge(request)


def is_agent(request: dict[str, Any]) -> bool:
    return bool(request["messages"][0]["role"] == "system")


def write_questions(path: Path, questions: dict[str, str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for name, text in questions.items():
            handle.write(json.dumps({"task_id": name, "question": text, "answer": "BM25", "hops": 2}) + "\n")
    return path


def settings_for(fake: FakeOpenAI, index: Path, **extra: Any) -> Any:
    values = {"base_url": fake.base_url, "model": "m", "index": index, "max_retries": 0, "max_steps": 6}
    return load_settings({**values, **extra}, env={})


def ledger_of(out: Path) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for line in map(json.loads, ledger_path(out).read_text().splitlines())}


def test_solved_questions_are_dropped_and_unsolved_ones_kept_with_the_baseline_run(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = routed
    questions = write_questions(
        tmp_path / "q.jsonl",
        {
            "knows": "Which ranking function does the corpus describe? [knows]",
            "alias": "Which ranking function does the corpus describe, by its other name? [alias]",
            "hard": "Which ranking function does the corpus describe for rare terms?",
            "zh-hard": "语料库中描述的是哪一种排序函数？",
            "garbled": "Which ranking function does the corpus describe, said oddly? [garbled]",
            "mute": "Which ranking function does the corpus describe, if any? [mute]",
        },
    )
    with questions.open("a") as handle:
        handle.write(json.dumps({"id": "no-answer", "question": "What?"}) + "\n")
    out = tmp_path / "hard.jsonl"
    summary = asyncio.run(
        synth_difficulty(settings_for(fake_llm, corpus_index), questions=questions, out=out, progress=False)
    )
    assert summary.failed == 0 and summary.kept == 3
    assert dict(summary.dropped) == {
        "solved_by_baseline": 2,
        "judge_unusable": 1,
        "missing_question_or_answer": 1,
    }
    ledger = ledger_of(out)
    assert ledger["knows"]["detail"]["verdict"]["method"] == "contained"  # the shortcut: no judge call
    assert ledger["alias"]["detail"]["verdict"]["method"] == "model"

    records = {r["task_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"hard", "zh-hard", "mute"}
    mute = records["mute"]  # made to stop searching and answer: its last words solve nothing
    assert mute["baseline_answer"] == "Searching."
    assert RunDir.open(Path(mute["baseline_run"])).meta.report_origin == "forced"
    hard = records["hard"]
    assert hard["hops"] == 2 and hard["answer"] == "BM25"  # the input line is kept whole
    assert hard["baseline_answer"] == "The ranking function is TF-IDF."
    assert hard["baseline_status"] == "answered" and hard["baseline_verdict"]["equivalent"] is False
    run = RunDir.open(Path(hard["baseline_run"]))
    assert run.finished and run.meta.question == hard["question"]

    judged = [r["messages"][0]["content"] for r in fake_llm.requests if not is_agent(r)]
    assert not any("[knows]" in text for text in judged)
    assert any("参考答案" in text and "语料库" in text for text in judged)
    assert any("Reference answer" in text and "rare terms" in text for text in judged)


def test_a_separate_judge_model_decides_equivalence(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = routed
    questions = write_questions(
        tmp_path / "q.jsonl", {"hard": "Which ranking function does the corpus describe for rare terms?"}
    )
    settings = settings_for(fake_llm, corpus_index, judge_model="judge-m", judge_base_url=fake_llm.base_url)
    summary = asyncio.run(
        synth_difficulty(settings, questions=questions, out=tmp_path / "o.jsonl", progress=False)
    )
    assert summary.kept == 1
    models = {(is_agent(r), r["model"]) for r in fake_llm.requests}
    assert models == {(True, "m"), (False, "judge-m")}
    assert all(r.get("temperature") == 0 for r in fake_llm.requests if not is_agent(r))


def test_a_rerun_after_an_outage_repeats_no_finished_agent_run(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = routed
    questions = write_questions(
        tmp_path / "q.jsonl",
        {
            "hard": "Which ranking function does the corpus describe for rare terms?",
            "flaky": "Which ranking function does the corpus describe on a bad day? [flaky]",
        },
    )
    out = tmp_path / "hard.jsonl"
    settings = settings_for(fake_llm, corpus_index)
    OUTAGE["on"] = True
    try:
        first = asyncio.run(synth_difficulty(settings, questions=questions, out=out, progress=False))
    finally:
        OUTAGE["on"] = False
    assert (first.kept, first.failed) == (1, 1) and "LLMError" in first.errors[0]
    assert set(ledger_of(out)) == {"hard"}

    before = len(fake_llm.requests)
    second = asyncio.run(synth_difficulty(settings, questions=questions, out=out, progress=False))
    assert (second.kept, second.skipped, second.failed) == (1, 1, 0)
    again = [r for r in fake_llm.requests[before:] if is_agent(r)]
    assert again and all("[flaky]" in question(r) for r in again)  # the finished run was not redone
    assert second.total_kept == 2


def test_a_judge_outage_leaves_the_item_for_a_rerun_that_reuses_the_finished_agent_run(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    judge_down = {"on": True}

    def script(request: dict[str, Any]) -> Reply:
        if not is_agent(request) and judge_down["on"]:
            return Reply(status=500)
        return routed(request)

    fake_llm.script = script
    questions = write_questions(
        tmp_path / "q.jsonl", {"hard": "Which ranking function does the corpus describe for rare terms?"}
    )
    out = tmp_path / "hard.jsonl"
    settings = settings_for(fake_llm, corpus_index)
    first = asyncio.run(synth_difficulty(settings, questions=questions, out=out, progress=False))
    assert (first.kept, first.failed) == (0, 1)
    agent_requests = sum(is_agent(r) for r in fake_llm.requests)
    assert agent_requests == 2

    judge_down["on"] = False
    second = asyncio.run(synth_difficulty(settings, questions=questions, out=out, progress=False))
    assert (second.kept, second.failed) == (1, 0)
    assert sum(is_agent(r) for r in fake_llm.requests) == agent_requests  # the agent run was reused
    assert second.tally.calls == 1  # only the judge was asked again
