"""``synth reflect``: our agent on the fake server answers, is told when it is wrong, reflects and
retries; corrected trajectories are kept cleaned of outside help, and a rerun after a kill repeats no
finished agent work."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.events import FollowUp
from deepresearch.llm.messages import chat_problems
from deepresearch.runs import RunDir
from deepresearch.synth.engine import ledger_path
from deepresearch.synth.reflect import (
    HINT_PHRASES,
    HINT_SENTENCES,
    clean_trajectory,
    reveals_help,
    scrub,
    synth_reflect,
)
from tests.agent.scripts import cited_keys, question, turn
from tests.fakes.openai_server import FakeOpenAI, Reply

FEEDBACK_MARKS = ("Your answer is not correct", "你的答案不正确")
FLAKY = {"on": False}
"""While on, the model fails (HTTP 500) as soon as a ``[flaky]`` question's run sees feedback."""

QUESTIONS = {
    "easy": "Which ranking function does the corpus describe? [easy]",
    "reflect": "Which ranking function does the corpus describe for SQLite? [reflect]",
    "never": "Which ranking function does the corpus name first? [never]",
    "zh": "语料库中描述的是哪一种排序函数？[reflect]",
}


def _feedback_seen(request: dict[str, Any]) -> bool:
    return any(
        m.get("role") == "user" and any(mark in str(m.get("content")) for mark in FEEDBACK_MARKS)
        for m in request["messages"]
    )


def agent(request: dict[str, Any]) -> Reply:
    """Search, then answer: right at once for ``[easy]``, right only after feedback for ``[reflect]``
    (searching again first, and crediting the hint as a careless model would), never for ``[never]``."""
    asked = question(request)
    last = request["messages"][-1]
    told = _feedback_seen(request)
    if told and FLAKY["on"] and "[flaky]" in asked:
        return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))
    if turn(request) == 0 or (last.get("role") == "user" and told):
        return Reply(
            reasoning="The user says my answer is wrong, so I will search again."
            if told
            else "Plan: search.",
            content="Let me search."
            if not told
            else "根据提示，我再搜索一次。"
            if "语料" in asked
            else "Searching again.",
            tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": ["BM25"], "topk": 3})],
        )
    key = next(iter(cited_keys(request).values()))
    if "[easy]" in asked or ("[reflect]" in asked and told):
        lead = "根据用户的提示，" if "语料" in asked else "According to the hint, "
        return Reply(
            reasoning="As the user pointed out, the corpus is about BM25.",
            content=f"<answer>\n{lead}the answer is BM25 \\cite{{{key}}}.\n</answer>",
        )
    return Reply(
        reasoning="TF-IDF seems right.", content=f"<answer>\nThe answer is TF-IDF \\cite{{{key}}}.\n</answer>"
    )


def judge(request: dict[str, Any]) -> Reply:
    """Equivalent when the answer under check names BM25."""
    given = request["messages"][0]["content"].split("<<<", 1)[1]
    return Reply(content=json.dumps({"equivalent": "BM25" in given, "reason": "compared the entities"}))


def routed(request: dict[str, Any]) -> Reply:
    return agent(request) if request["messages"][0]["role"] == "system" else judge(request)


def is_agent(request: dict[str, Any]) -> bool:
    return bool(request["messages"][0]["role"] == "system")


def write_questions(path: Path, names: list[str], *, extra: dict[str, str] | None = None) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for name in names:
            handle.write(json.dumps({"task_id": name, "question": QUESTIONS[name], "answer": "BM25"}) + "\n")
        for name, text in (extra or {}).items():
            handle.write(json.dumps({"id": name, "prompt": text, "answer": "BM25"}) + "\n")
    return path


def settings_for(fake: FakeOpenAI, index: Path) -> Any:
    return load_settings(
        {"base_url": fake.base_url, "model": "m", "index": index, "max_retries": 0, "max_steps": 6}, env={}
    )


def records_of(out: Path) -> dict[str, dict[str, Any]]:
    return {r["task_id"]: r for r in map(json.loads, out.read_text().splitlines())}


def ledger_of(out: Path) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for line in map(json.loads, ledger_path(out).read_text().splitlines())}


def test_right_at_once_corrected_after_reflection_and_never_right(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = routed
    out = tmp_path / "reflect.jsonl"
    questions = write_questions(tmp_path / "q.jsonl", ["easy", "reflect", "never", "zh"])
    summary = asyncio.run(
        synth_reflect(
            settings_for(fake_llm, corpus_index),
            questions=questions,
            out=out,
            max_reflections=2,
            progress=False,
        )
    )
    assert (summary.kept, dict(summary.dropped), summary.failed) == (3, {"never_correct": 1}, 0)
    records = records_of(out)
    assert set(records) == {"easy", "reflect", "zh"}

    easy = records["easy"]
    assert (easy["attempts"], easy["corrected"], easy["answer"]) == (1, False, "BM25")
    assert easy["messages"] == RunDir.open(Path(easy["run_dir"])).messages()  # kept as it is

    for name, self_check in (("reflect", "let me double-check"), ("zh", "再核查一遍")):
        record = records[name]
        assert (record["attempts"], record["corrected"], record["question"]) == (2, True, QUESTIONS[name])
        messages = record["messages"]
        assert chat_problems(messages) == []
        users = [m["content"] for m in messages if m["role"] == "user"]
        assert users == [QUESTIONS[name]]  # the feedback turn is gone
        texts = [str(m.get(k) or "") for m in messages for k in ("content", "reasoning_content")]
        assert not any(reveals_help(text) for text in texts)
        assert not any(mark in text for text in texts for mark in FEEDBACK_MARKS)
        folded = next(m for m in messages if self_check in (m.get("content") or ""))
        assert folded["role"] == "assistant" and folded["tool_calls"]  # self-check opens the retry's search
        assert "TF-IDF" in folded["content"] and "<answer>" not in folded["content"]
        answers = [m for m in messages if m["role"] == "assistant" and "<answer>" in (m["content"] or "")]
        assert answers == [messages[-1]]  # only the final answer
        assert "BM25" in messages[-1]["content"]
        run = RunDir.open(Path(record["run_dir"]))
        assert sum(isinstance(e, FollowUp) for e in run.events()) == 1  # the run itself keeps the history
        assert any(
            m["role"] == "user" and any(k in m["content"] for k in FEEDBACK_MARKS) for m in run.messages()
        )

    never = ledger_of(out)["never"]
    assert never["reason"] == "never_correct" and never["detail"]["attempts"] == 3
    feedbacks = [
        e.message["content"]
        for e in RunDir.open(Path(never["detail"]["run_dir"])).events()
        if isinstance(e, FollowUp)
    ]
    assert len(feedbacks) == 2 and all("BM25" not in text for text in feedbacks)  # never the answer
    zh_feedback = [
        m["content"] for m in RunDir.open(Path(records["zh"]["run_dir"])).messages() if m["role"] == "user"
    ][1]
    assert zh_feedback.startswith("你的答案不正确")
    judged = [r["messages"][0]["content"] for r in fake_llm.requests if not is_agent(r)]
    assert any("参考答案" in text for text in judged) and any("Reference answer" in text for text in judged)


def test_a_rerun_after_a_failure_mid_reflection_repeats_no_finished_agent_work(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = routed
    out = tmp_path / "reflect.jsonl"
    flaky = "Which ranking function does the corpus describe, flaky edition? [reflect] [flaky]"
    questions = write_questions(tmp_path / "q.jsonl", ["easy"], extra={"flaky": flaky})
    settings = settings_for(fake_llm, corpus_index)
    FLAKY["on"] = True
    try:
        first = asyncio.run(synth_reflect(settings, questions=questions, out=out, progress=False))
    finally:
        FLAKY["on"] = False
    assert (first.kept, first.failed) == (1, 1) and "LLMError" in first.errors[0]
    assert set(ledger_of(out)) == {"easy"}  # the failed item is undecided
    run_path = tmp_path / "reflect.jsonl.runs" / "flaky"
    assert RunDir.open(run_path).status == "failed"

    before = len(fake_llm.requests)
    second = asyncio.run(synth_reflect(settings, questions=questions, out=out, progress=False))
    assert (second.kept, second.skipped, second.failed) == (1, 1, 0)
    again = [r for r in fake_llm.requests[before:] if is_agent(r)]
    assert again and all(question(r) == flaky for r in again)  # nothing for the decided item
    assert all(_feedback_seen(r) for r in again)  # the first attempt was not run again
    record = records_of(out)["flaky"]
    assert (record["attempts"], record["corrected"]) == (2, True)
    assert chat_problems(record["messages"]) == []
    run = RunDir.open(run_path)
    assert sum(isinstance(e, FollowUp) for e in run.events()) == 1  # the feedback was not sent twice

    third = asyncio.run(synth_reflect(settings, questions=questions, out=out, progress=False))
    assert third.skipped == 2 and third.tally.calls == 0


def test_cleaning_folds_feedback_into_a_self_check_and_removes_hint_phrases() -> None:
    feedback = "Your answer is not correct. Reflect and retry."
    call = {"id": "c1", "type": "function", "function": {"name": "batch_web_surfer", "arguments": "{}"}}
    first = {**call, "id": "c0"}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "system"},
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "The feedback literature says X.", "tool_calls": [first]},
        {"role": "tool", "tool_call_id": "c0", "content": "X."},
        {"role": "assistant", "content": "<answer>\nX\n</answer>", "reasoning_content": "X it is."},
        {"role": "user", "content": feedback},
        {
            "role": "assistant",
            "content": "As you said, X is wrong.",
            "reasoning_content": "The feedback says X is wrong. I check Y.",
            "tool_calls": [call],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Y is right."},
        {"role": "assistant", "content": "<answer>\nAccording to the hint, Y.\n</answer>"},
    ]
    cleaned, reflected_from = clean_trajectory(messages, [feedback], "en")
    assert reflected_from == 4 and cleaned[:4] == messages[:4]  # written before any feedback: as it was
    roles = ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert [m["role"] for m in cleaned] == roles
    assert chat_problems(cleaned) == []
    folded = cleaned[4]
    assert folded["content"].startswith("My tentative answer:\n\nX\n\nBefore I commit to this")
    assert folded["content"].endswith("X is wrong.") and folded["tool_calls"] == [call]
    assert folded["reasoning_content"] == "X it is.\n\nI check Y."
    assert cleaned[-1]["content"] == "<answer>\nY.\n</answer>"
    assert messages[5]["content"] == feedback  # the input is not changed in place

    broken = [*cleaned[:5], {"role": "user", "content": "interrupting"}]
    assert any("were never answered" in p for p in chat_problems(broken))
    assert any(
        "answers no open tool call" in p
        for p in chat_problems([{"role": "tool", "tool_call_id": "x", "content": ""}])
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "According to the hint, the capital is Bonn. It moved later.",
            "The capital is Bonn. It moved later.",
        ),
        ("Based on your feedback: check 3.14 again.", "Check 3.14 again."),
        ("Given the user's correction, I reopen the page.", "I reopen the page."),
        ("I was told the answer is wrong. I search again.", "I search again."),
        ("Thanks for the hint! Searching.", "Searching."),
        ("根据提示，答案是波恩。", "答案是波恩。"),
        ("正如用户指出的那样，日期是1990年。用户指出我的答案错了。我再查。", "日期是1990年。我再查。"),
        ("反馈中说答案不对。我重新检查来源。", "我重新检查来源。"),
        ("The source says 42. I double-check the table.", "The source says 42. I double-check the table."),
    ],
)
def test_hint_phrases_go_and_ordinary_text_stays(text: str, expected: str) -> None:
    assert scrub(text) == expected
    assert not reveals_help(scrub(text))
    assert len(HINT_PHRASES) >= 6 and len(HINT_SENTENCES) >= 6
