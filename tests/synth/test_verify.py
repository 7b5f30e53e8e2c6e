"""``synth verify`` end to end: a scripted model on the fake OpenAI server, the local index of
tests/data/corpus as the search backend, trajectories checked against our agent's formats."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.sources import KEY_PATTERN
from deepresearch.synth.engine import ledger_path
from deepresearch.synth.model import Language
from deepresearch.synth.verify import Point, dependency_order, normal_judgement, synth_verify, verdict_of
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.test_research import check_messages_shape

EN = (
    "BM25 ranks documents with a saturated term frequency. SQLite offers full-text search through its "
    "FTS5 extension. Reciprocal rank fusion sets k to 60."
)
ZH = "中文文本的词与词之间没有空格，因此全文检索系统需要先做中文分词。最常见的做法是基于词典的分词。"
OUTAGE = {"on": False}


def _prompt(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def _paragraph(text: str) -> str:
    match = re.search(r'"""\n(.*?)\n"""', text, re.S)
    return match.group(1) if match else ""


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^\s*\[(\d+)\]", text, re.M)]


def script(request: dict[str, Any]) -> Reply:
    """Answers each pipeline step from its prompt; markers in the paragraph trip the drop paths."""
    text = _prompt(request)
    paragraph = _paragraph(text)
    zh = "中文" in paragraph
    if "[outage]" in paragraph and OUTAGE["on"]:
        return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))
    if '{"points": [{"statement"' in text:
        if "[empty]" in paragraph:
            return Reply(content='{"points": []}')
        if "[garbage]" in paragraph:
            return Reply(content="I would rather not.")
        statements = [s.strip() for s in re.split(r"(?<=[.。])\s*", paragraph) if len(s.strip()) > 8][:3]
        kinds = ["subject", "subject", "figure"]
        return Reply(
            content=json.dumps(
                {"points": [{"statement": s, "kind": k} for s, k in zip(statements, kinds, strict=False)]}
            )
        )
    if '{"plan": [{"point"' in text:
        count = len(re.findall(r"^\d+\. \[", text, re.M))
        queries = (
            ["中文分词", "词典 分词"]
            if zh
            else ["BM25 term frequency saturation", "SQLite FTS5 full-text", "reciprocal rank fusion"]
        )
        plan = [
            {
                "point": i,
                "check": True,
                "source_type": "technical documentation",
                "depends_on": [1] if i == count and count > 1 else [],
                "queries": [queries[(i - 1) % len(queries)]],
            }
            for i in range(1, count + 1)
        ]
        return Reply(content=json.dumps({"plan": plan}))
    if '{"conclusion": "support|refute|doubtful"' in text:
        shown = _numbers(text.split("Search results:" if not zh else "搜索结果：")[-1])
        if not shown:
            return Reply(
                content=json.dumps(
                    {"conclusion": "doubtful", "evidence": [], "explanation": "Nothing found."}
                )
            )
        return Reply(
            content=json.dumps(
                {"conclusion": "support", "evidence": shown[:1], "explanation": "The source says so."}
            )
        )
    if '{"summary": "' in text:
        remaining = [
            int(n)
            for n in re.findall(
                r"^- (\d+)\. ",
                text.split("Every search result" if not zh else "目前收集到")[0].split(
                    "Still open" if not zh else "尚未核实"
                )[-1],
                re.M,
            )
        ]
        first = _numbers(text)[:1]
        if "[settle]" in paragraph:
            entries = [
                {
                    "point": n,
                    "action": "settled",
                    "conclusion": "support",
                    "evidence": first,
                    "explanation": "Already shown.",
                }
                for n in remaining
            ]
        else:
            entries = [{"point": n, "action": "search", "queries": []} for n in remaining]
        return Reply(content=json.dumps({"summary": "Half of it holds up.", "remaining": entries}))
    if '{"checks": [' in text:
        claims = [int(n) for n in re.findall(r"^(?:Claim|说法) (\d+)[:：]", text, re.M)]
        bad = "[liar]" in paragraph
        checks = [{"point": n, "consistent": not (bad and n == claims[0]), "reason": "ok"} for n in claims]
        return Reply(content=json.dumps({"checks": checks}))
    raise AssertionError(f"unexpected prompt: {text[:200]}")


def _settings(fake: FakeOpenAI, index: Path, **extra: Any) -> Any:
    return load_settings({"base_url": fake.base_url, "model": "m", "index": index, **extra}, env={})


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {r["task_id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}


def _ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, ledger_path(out).read_text(encoding="utf-8").splitlines())}


def _check_trajectory(record: dict[str, Any], language: str) -> None:
    messages = record["messages"]
    check_messages_shape(messages)
    assert [m["role"] for m in messages[:2]] == ["system", "user"]
    assert ("研究" in messages[0]["content"]) == (language == "zh")
    assert record["paragraph"] in messages[1]["content"]
    calls = [c for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    assert calls and all(c["function"]["name"] == "batch_web_surfer" for c in calls)
    for call in calls:
        arguments = json.loads(call["function"]["arguments"])
        assert arguments["action"] == "batch_search" and arguments["queries"]
    tools = [m for m in messages if m["role"] == "tool"]
    assert all(t["content"].startswith("<batch_search_results>") for t in tools)
    shown = set(re.findall(r"<cite_index>(web_[0-9a-f]+)</cite_index>", "".join(t["content"] for t in tools)))
    final = messages[-1]
    assert final["role"] == "assistant" and "tool_calls" not in final
    answer = re.search(r"<answer>(.*)</answer>", final["content"], re.S)
    assert answer is not None
    cited = set(KEY_PATTERN.findall(answer.group(1)))
    assert cited and cited <= shown  # every key in the answer came back from the tool
    for point in record["report"]["points"]:
        assert point["conclusion"] in ("support", "refute", "doubtful", "not_checked")
        assert len(point["keys"]) == len(point["evidence"])


def test_paragraphs_become_checked_trajectories_in_both_languages(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = script
    paragraphs = _write(
        tmp_path / "in.jsonl",
        [
            {"id": "en", "paragraph": EN, "judgement": "supported"},
            {"id": "zh", "paragraph": ZH},
            {"id": "settle", "paragraph": EN + " [settle]"},
        ],
    )
    out = tmp_path / "out.jsonl"
    summary = asyncio.run(
        synth_verify(_settings(fake_llm, corpus_index), paragraphs=paragraphs, out=out, progress=False)
    )
    assert summary.kept == 3 and summary.failed == 0 and summary.tally.calls > 0
    records = _records(out)
    en, zh, settle = records["en"], records["zh"], records["settle"]
    assert en["language"] == "en" and zh["language"] == "zh"
    _check_trajectory(en, "en")
    _check_trajectory(zh, "zh")
    _check_trajectory(settle, "en")
    # point 3 depends on point 1: two search rounds, the second after a replan
    assert [r["verified"] for r in en["rounds"]] == [[1, 2], [3]]
    assert sum(1 for m in en["messages"] if m["role"] == "tool") == 2
    assert en["report"]["verdict"] == "support"
    # the replan settled point 3 from the evidence at hand: one round, no second search
    assert [r["settled"] for r in settle["rounds"]] == [[3]]
    assert sum(1 for m in settle["messages"] if m["role"] == "tool") == 1
    assert next(p for p in settle["points"] if p["point"] == 3)["settled_by_replan"]
    # the prompts followed the paragraph's language
    zh_prompts = [_prompt(r) for r in fake_llm.requests if "中文文本" in _prompt(r)]
    assert zh_prompts and all("只回答一个 JSON 对象" in p for p in zh_prompts)
    en_prompts = [_prompt(r) for r in fake_llm.requests if "Reciprocal rank fusion sets" in _prompt(r)]
    assert en_prompts and all("Answer with one JSON object" in p for p in en_prompts)


def test_each_drop_reason_is_recorded(fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path) -> None:
    fake_llm.script = script
    rows = [
        {"id": "empty", "paragraph": "Nothing to see here at all. [empty]"},
        {"id": "garbage", "paragraph": EN + " [garbage]"},
        {"id": "liar", "paragraph": EN + " [liar]"},
        {"id": "mismatch", "paragraph": EN, "judgement": "refuted"},
        {"id": "blank", "paragraph": "   "},
    ]
    out = tmp_path / "out.jsonl"
    summary = asyncio.run(
        synth_verify(
            _settings(fake_llm, corpus_index),
            paragraphs=_write(tmp_path / "in.jsonl", rows),
            out=out,
            progress=False,
        )
    )
    assert summary.kept == 0
    ledger = _ledger(out)
    assert {k: v["reason"] for k, v in ledger.items()} == {
        "empty": "no_points",
        "garbage": "bad_reply",
        "liar": "inconsistent",
        "mismatch": "judgement_mismatch",
        "blank": "no_points",
    }
    assert ledger["liar"]["detail"]["points"] == [1]
    assert not out.exists() or out.read_text() == ""
    # too few rounds for the dependency order
    out2 = tmp_path / "short.jsonl"
    asyncio.run(
        synth_verify(
            _settings(fake_llm, corpus_index),
            paragraphs=_write(tmp_path / "one.jsonl", [{"id": "en", "paragraph": EN}]),
            out=out2,
            max_rounds=1,
            progress=False,
        )
    )
    assert _ledger(out2)["en"]["reason"] == "rounds_exhausted"


def test_a_failed_first_run_resumes_without_repeating_decided_items(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = script
    rows = [{"id": "ok", "paragraph": EN}, {"id": "down", "paragraph": EN + " [outage]"}]
    paragraphs = _write(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    settings = _settings(fake_llm, corpus_index, max_retries=0)
    OUTAGE["on"] = True
    try:
        first = asyncio.run(synth_verify(settings, paragraphs=paragraphs, out=out, progress=False))
    finally:
        OUTAGE["on"] = False
    assert first.kept == 1 and first.failed == 1 and "down" not in _ledger(out)
    fake_llm.requests.clear()
    second = asyncio.run(synth_verify(settings, paragraphs=paragraphs, out=out, progress=False))
    assert second.kept == 1 and second.skipped == 1 and second.total_kept == 2
    asked = [_paragraph(_prompt(r)) for r in fake_llm.requests]
    assert asked and all("[outage]" in p for p in asked)  # nothing was asked again for "ok"
    assert set(_records(out)) == {"ok", "down"}


def test_dependency_order_and_verdicts() -> None:
    points = [
        Point(1, "a", "time", depends_on=[3]),
        Point(2, "b", "figure"),
        Point(3, "c", "place", depends_on=[2]),
    ]
    assert dependency_order(points) == [2, 3, 1]
    cyclic = [Point(1, "a", "time", depends_on=[2]), Point(2, "b", "time", depends_on=[1])]
    assert dependency_order(cyclic) == [1, 2]
    points[0].conclusion, points[1].conclusion, points[2].conclusion = "support", "doubtful", "support"
    assert verdict_of(points) == "doubtful"
    points[2].conclusion = "refute"
    assert verdict_of(points) == "refute"
    assert normal_judgement("Supported") == "support" and normal_judgement(False) == "refute"
    assert normal_judgement("maybe") is None


@pytest.mark.parametrize("language", ["en", "zh"])
def test_prompts_render_in_both_languages(language: Language) -> None:
    from deepresearch.synth.model import prompt

    point = Point(1, "claim", "figure", queries=["q"], conclusion="support", evidence=[1], explanation="e")
    shown = {**point.to_dict(), "keys": ["web_12345678"]}
    text = prompt(
        "verify_thoughts",
        language,
        stage="final",
        points=[point.to_dict()],
        order=[1],
        concluded=[shown],
        settled=[],
        summary="s",
        queries=[],
    )
    assert "\\cite{web_12345678}" in text
    answer = prompt("verify_answer", language, verdict="support", points=[{**shown, "conclusion": "support"}])
    assert "\\cite{web_12345678}" in answer and "claim" in answer
