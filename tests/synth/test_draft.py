"""``synth draft`` end to end: run directories made by our agent against the fake OpenAI server and
the local index, their reports rewritten and judged by a scripted model on the same server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.errors import DeepResearchError
from deepresearch.research import research
from deepresearch.runs import RunDir
from deepresearch.synth.draft import cited_keys, format_problems, keyed, synth_draft, with_new_answer
from deepresearch.synth.engine import ledger_path
from tests.agent.scripts import cited_keys as shown_keys
from tests.agent.scripts import question, turn
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.test_research import check_messages_shape

OUTAGE = {"on": False}
NEW_EN = "Taken together"
NEW_ZH = "综合来看"
FILLER_EN = (
    "The evidence points the same way from several angles, and the reasons behind it matter as much as the "
    "result, because they explain when the behaviour holds and when it would not."
)
FILLER_ZH = (
    "这些证据从多个角度指向同一个结论，而其背后的原因与结论本身同样重要，"
    "因为它们说明了这种做法在什么条件下成立、在什么条件下不成立。"
)


def _is_zh(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text))


def agent(request: dict[str, Any]) -> Reply:
    """Search once, then answer: a bullet stack, or (``[good]``) a proper report."""
    asked = question(request)
    if "[fail]" in asked:
        return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))
    if turn(request) == 0:
        query = "中文分词" if _is_zh(asked) else "BM25 ranking"
        return Reply(
            content="Searching.",
            tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": [query], "topk": 3})],
        )
    key = next(iter(shown_keys(request).values()))
    if "[good]" in asked:
        body = (
            f"# BM25\n\nBM25 ranks documents by saturated term frequency \\cite{{{key}}}. {FILLER_EN}\n\n"
            f"## Length\n\nIt also normalises by document length \\cite{{{key}}}. {FILLER_EN}"
        )
    elif _is_zh(asked):
        body = f"- 中文没有空格 \\cite{{{key}}}。\n- 需要分词 \\cite{{{key}}}。\n- 常用词典分词。"
    else:
        body = (
            f"- BM25 ranks documents \\cite{{{key}}}.\n- It saturates term frequency \\cite{{{key}}}.\n"
            "- It is a baseline."
        )
    return Reply(content=f"<answer>\n{body}\n</answer>")


def pipeline(request: dict[str, Any]) -> Reply:
    """The drafting pipeline's writer and judge; markers in the question pick the failure paths."""
    text = str(request["messages"][0]["content"])
    zh = "问题：" in text
    asked = text.split("问题：\n" if zh else "Question:\n", 1)[1].split("\n", 1)[0]
    if "[outage]" in asked and OUTAGE["on"]:
        return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))
    if '"deeper": "A|B|tie"' in text:
        first = text.split("<<<", 1)[1].split(">>>", 1)[0]
        new_label = "A" if (NEW_ZH if zh else NEW_EN) in first else "B"
        old_label = "B" if new_label == "A" else "A"
        if "[garbage]" in asked:
            return Reply(content="Both are fine.")
        deeper = "A" if "[biased]" in asked else old_label if "[worse]" in asked else new_label
        return Reply(
            content=json.dumps({"deeper": deeper, "a_covers_b": True, "b_covers_a": True, "reason": "r"})
        )
    keys = re.findall(r"^\[(web_[0-9a-f]+)\]", text, re.M)
    assert keys, "the writer must see the run's sources"
    key = "web_deadbeef" if "[unknown]" in asked else keys[0]
    if "[flat]" in asked:
        return Reply(content=f"<answer>\n- one \\cite{{{key}}}\n- two\n</answer>")
    if zh:
        body = (
            f"# 中文分词\n\n{NEW_ZH}，中文文本没有空格，因此检索前必须分词 \\cite{{{key}}}。{FILLER_ZH}\n\n"
            f"## 方法\n\n词典分词最常见 \\cite{{{key}}}。{FILLER_ZH}"
        )
    else:
        body = (
            f"# BM25\n\n{NEW_EN}, BM25 ranks documents with a saturated term frequency \\cite{{{key}}}. "
            f"{FILLER_EN}\n\n## Why it lasts\n\nIt is still the baseline \\cite{{{key}}}. {FILLER_EN}"
        )
    return Reply(content=f"Here it is.\n<answer>\n{body}\n</answer>")


def script(request: dict[str, Any]) -> Reply:
    return agent(request) if request["messages"][0].get("role") == "system" else pipeline(request)


def _settings(fake: FakeOpenAI, index: Path, **extra: Any) -> Any:
    return load_settings({"base_url": fake.base_url, "model": "m", "index": index, **extra}, env={})


def make_runs(fake: FakeOpenAI, index: Path, root: Path, questions: dict[str, str]) -> dict[str, Path]:
    """One agent run per question under ``root`` (a failing one is left failed)."""
    fake.script = script
    paths = {}
    for name, asked in questions.items():
        path = root / name
        with contextlib.suppress(DeepResearchError):  # a failing run is left failed, as in real use
            asyncio.run(research(asked, _settings(fake, index, out=path, max_retries=0)))
        paths[name] = path
    return paths


def _ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, ledger_path(out).read_text(encoding="utf-8").splitlines())}


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {r["task_id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}


def _id(path: Path) -> str:
    return RunDir.open(path).meta.id


def test_badly_formatted_reports_are_rewritten_and_judged(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    runs = make_runs(
        fake_llm,
        corpus_index,
        tmp_path / "runs",
        {
            "en": "How does BM25 rank documents?",
            "zh": "中文全文检索为什么需要分词？",
            "good": "How does BM25 rank documents? [good]",
            "failed": "How does BM25 rank documents? [fail]",
        },
    )
    assert not RunDir.open(runs["failed"]).finished
    fake_llm.requests.clear()
    out = tmp_path / "draft.jsonl"
    summary = asyncio.run(
        synth_draft(_settings(fake_llm, corpus_index), runs=[tmp_path / "runs"], out=out, progress=False)
    )
    assert summary.kept == 2 and summary.failed == 0
    ledger = _ledger(out)
    assert ledger[_id(runs["good"])]["reason"] == "well_formatted"
    assert ledger[_id(runs["failed"])]["reason"] == "not_finished"
    records = _records(out)
    for name, marker in (("en", NEW_EN), ("zh", NEW_ZH)):
        run = RunDir.open(runs[name])
        record = records[_id(runs[name])]
        assert record["run_dir"] == str(runs[name]) and record["question"] == run.meta.question
        assert record["old_report"] == run.report() and "bullets" in record["problems"]
        assert marker in record["report"] and format_problems(record["report"], record["language"]) == []
        assert set(record["citations"]) <= {s["key"] for s in run.sources()}
        assert [v["order"] for v in record["verdicts"]] == ["old_first", "new_first"]
        assert all(v["deeper"] == "new" and v["coverage_kept"] for v in record["verdicts"])
        check_messages_shape(record["messages"])
        assert marker in record["messages"][-1]["content"] and len(record["messages"]) == len(run.messages())
    assert records[_id(runs["zh"])]["language"] == "zh"
    prompts = [str(r["messages"][0]["content"]) for r in fake_llm.requests]
    assert all(r["messages"][0]["role"] == "user" for r in fake_llm.requests)  # no agent call was made
    zh_prompts = [p for p in prompts if "中文全文检索" in p]
    assert len(zh_prompts) == 3 and all("报告" in p for p in zh_prompts)  # a rewrite, two judgements
    en_prompts = [p for p in prompts if "How does BM25" in p]
    assert len(en_prompts) == 3 and all("report" in p for p in en_prompts)
    # asked to, a well-formatted report is rewritten too (and kept when the judge prefers it)
    again = tmp_path / "all.jsonl"
    settings = _settings(fake_llm, corpus_index)
    asyncio.run(synth_draft(settings, runs=[runs["good"]], out=again, progress=False, rewrite_all=True))
    assert _records(again)[_id(runs["good"])]["problems"] == []
    # the writer saw the run's source text and its old report with keys instead of numbers
    key = next(iter(cited_keys(records[_id(runs["en"])]["report"])))
    assert f"\\cite{{{key}}}" in en_prompts[0] and "BM25" in en_prompts[0]


def test_each_drop_reason_is_recorded(fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path) -> None:
    markers = ["unknown", "flat", "worse", "biased", "garbage"]
    runs = make_runs(
        fake_llm,
        corpus_index,
        tmp_path / "runs",
        {m: f"How does BM25 rank documents? [{m}]" for m in markers},
    )
    out = tmp_path / "draft.jsonl"
    summary = asyncio.run(
        synth_draft(_settings(fake_llm, corpus_index), runs=list(runs.values()), out=out, progress=False)
    )
    assert summary.kept == 0
    reasons = {name: _ledger(out)[_id(path)]["reason"] for name, path in runs.items()}
    assert reasons == {
        "unknown": "unknown_citations",
        "flat": "bad_rewrite",
        "worse": "not_better",
        "biased": "not_better",  # position bias: the two orders disagree
        "garbage": "bad_reply",
    }
    biased = _ledger(out)[_id(runs["biased"])]["detail"]["verdicts"]
    assert [v["deeper"] for v in biased] == ["old", "new"]
    assert _ledger(out)[_id(runs["unknown"])]["detail"]["keys"] == ["web_deadbeef"]


def test_a_failed_first_run_resumes_without_repeating_decided_items(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    runs = make_runs(
        fake_llm,
        corpus_index,
        tmp_path / "runs",
        {"ok": "How does BM25 rank documents?", "down": "How does BM25 rank documents? [outage]"},
    )
    out = tmp_path / "draft.jsonl"
    settings = _settings(fake_llm, corpus_index, max_retries=0)
    OUTAGE["on"] = True
    try:
        first = asyncio.run(synth_draft(settings, runs=[tmp_path / "runs"], out=out, progress=False))
    finally:
        OUTAGE["on"] = False
    assert first.kept == 1 and first.failed == 1 and _id(runs["down"]) not in _ledger(out)
    fake_llm.requests.clear()
    second = asyncio.run(synth_draft(settings, runs=[tmp_path / "runs"], out=out, progress=False))
    assert second.kept == 1 and second.skipped == 1 and second.total_kept == 2
    asked = [str(r["messages"][0]["content"]) for r in fake_llm.requests]
    assert len(asked) == 3 and all("[outage]" in p for p in asked)
    assert set(_records(out)) == {_id(runs["ok"]), _id(runs["down"])}


@pytest.mark.parametrize(
    ("report", "language", "problems"),
    [
        ("- a [1]\n- b [2]\n- c\n", "en", ["bullets", "short_paragraphs", "no_headings"]),
        (
            "# T\n\n"
            + "Long reasoning that connects things [1]. " * 6
            + "\n\n## References\n\n- [1] x\n- [2] y\n",
            "en",
            [],
        ),
        ("# T\n\nShort one [1].\n\nAnother [2].\n", "en", ["short_paragraphs"]),
        ("# T\n\n" + "A long paragraph without any source at all. " * 6, "en", ["no_citations"]),
        (
            "# 标题\n\n" + "中文段落里有足够多的推理内容，把各项发现联系在一起\\cite{web_12345678}。" * 3,
            "zh",
            [],
        ),
        ("", "en", ["empty"]),
    ],
)
def test_format_problems(report: str, language: str, problems: list[str]) -> None:
    assert format_problems(report, language) == problems  # type: ignore[arg-type]


def test_old_reports_are_compared_in_answer_notation() -> None:
    report = (
        "# T\n\nBM25 saturates [1]. Both say so [1, 2]. Unknown [9].\n\n## References\n\n[1] a — https://a\n"
    )
    assert keyed(report, {1: "web_aaaaaaaa", 2: "web_bbbbbbbb"}) == (
        "# T\n\nBM25 saturates \\cite{web_aaaaaaaa}. "
        "Both say so \\cite{web_aaaaaaaa,web_bbbbbbbb}. Unknown [9]."
    )
    assert cited_keys("x \\cite{web_a1, web_b2} y \\cite{web_a1}") == ["web_a1", "web_b2"]
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Done.\n<answer>\nold\n</answer>"},
    ]
    assert with_new_answer(messages, "new") == [
        messages[0],
        {"role": "assistant", "content": "Done.\n<answer>\nnew\n</answer>"},
    ]
    assert with_new_answer(messages[:1], "new") is None
