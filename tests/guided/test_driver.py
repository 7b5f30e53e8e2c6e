"""The guided strategy end to end: a scripted model over real HTTP, the real web tool, the local index."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.errors import LLMError
from deepresearch.events import parse_event
from deepresearch.research import research, resume
from deepresearch.runs import read_info
from tests.fakes.openai_server import FakeOpenAI, Reply

QUESTION = "How does BM25 rank documents?"


@pytest.fixture
def make_settings(fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path):
    def make(**overrides: Any) -> Any:
        flags = {
            "base_url": fake_llm.base_url,
            "model": "fake-model",
            "index": corpus_index,
            "out": tmp_path / "run",
            "strategy": "guided",
            "retry_base_delay": 0.001,
            "retry_max_delay": 0.01,
            "max_retries": 0,
            "request_timeout": 30,
        }
        return load_settings({**flags, **overrides}, env={})

    return make


def events_of(run_dir: Path) -> list[Any]:
    return [parse_event(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def schema_of(request: dict[str, Any]) -> dict[str, Any]:
    return request["response_format"]["json_schema"]["schema"]


def good_writer(request: dict[str, Any]) -> Reply:
    """Plans two sections; states each passage's first sentence as its fact (grounded by construction)."""
    properties = schema_of(request)["properties"]
    prompt = request["messages"][-1]["content"]
    if "sections" in properties:
        sections = [
            {"heading": "Term frequency saturation", "query": "BM25 term frequency saturation k1"},
            {"heading": "Ranking in SQLite FTS5", "query": "FTS5 bm25 ranking function"},
        ]
        return Reply(content=json.dumps({"sections": sections}))
    if "sentence" in properties:  # one passage, one fact (small windows)
        text = prompt.split(":\n\n", 1)[1].rsplit("\n\nWrite the main fact", 1)[0]
        return Reply(content=json.dumps({"sentence": first_sentence(text)}))
    most = properties["paragraphs"]["maxItems"]
    shown = re.findall(r"^\[(web_[0-9a-f]+)\] [^:\n]*: (.*)$", prompt, re.M)
    paragraphs = [{"text": first_sentence(text), "sources": [key]} for key, text in shown[:most]]
    return Reply(content=json.dumps({"paragraphs": paragraphs}))


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip())[0]


def test_a_guided_run_writes_a_cited_report_from_what_it_read(fake_llm, make_settings):
    fake_llm.script = good_writer
    settings = make_settings()
    result = asyncio.run(research(QUESTION, settings))
    run = settings.out
    info = read_info(run)
    assert result.status == "done" and result.origin == "guided" and info.strategy == "guided"
    assert result.outcome == info.outcome == "report" and result.citations["resolved"] >= 3
    assert result.citations["unresolved"] == 0

    events = events_of(run)
    phases = [e.phase for e in events if e.type == "llm_call"]
    assert phases == ["search", "subsearch", "open", "answer"]
    calls = [e for e in events if e.type == "guided_call"]
    assert [c.purpose for c in calls] == ["plan", "section", "section", "section"]
    assert all(c.result["kept"] == "model" for c in calls[1:])

    # every model call asked for constrained JSON; no tool was offered
    assert all("response_format" in r and "tools" not in r for r in fake_llm.requests)
    sources = {s["key"]: s for s in json.loads((run / "sources.json").read_text())}
    for source in (s for s in sources.values() if s["n"] is not None):
        assert source["fetched"], f"the report cites a page it did not read: {source['url']}"
    assert sum(1 for s in sources.values() if s["n"] is not None) == result.citations["resolved"]
    report = (run / "report.md").read_text()
    assert report.startswith(f"# {QUESTION}\n\n## Overview") and "## Term frequency saturation" in report
    assert "\\cite" not in report and "[1]" in report and "## References" in report

    # the conversation reads as a ReAct trajectory: tool calls, their results, the report last
    messages = json.loads((run / "messages.json").read_text())
    assert [m["role"] for m in messages[:4]] == ["system", "user", "assistant", "tool"]
    assert messages[-1]["role"] == "assistant" and "\\cite{web_" in messages[-1]["content"]
    assert result.usage["total_tokens"] > 0


def test_a_model_that_writes_nonsense_gets_an_extractive_report(fake_llm, make_settings):
    def nonsense(request: dict[str, Any]) -> Reply:
        if "sections" in schema_of(request)["properties"]:
            return Reply(content='{"sections": [{"heading": "Section 1", "query": "{{x}}"}]}')
        nonsense = "Writing is one of the most difficult things I have ever done, said nobody today."
        if "sentence" in schema_of(request)["properties"]:
            return Reply(content=json.dumps({"sentence": nonsense}))
        return Reply(content=json.dumps({"paragraphs": [{"text": nonsense, "sources": []}]}))

    fake_llm.script = nonsense
    settings = make_settings()
    result = asyncio.run(research(QUESTION, settings))
    assert result.outcome == "extractive" and result.citations["resolved"] >= 2
    assert "*Quoted from the sources.*" in result.report
    calls = [e for e in events_of(settings.out) if e.type == "guided_call"]
    assert calls[0].result["why"] == "the plan named no usable section"  # "Section 1" is not a heading
    assert {c.result["kept"] for c in calls[1:]} == {"quoted"}
    assert all(c.result["why"].startswith("not grounded") for c in calls[1:])


def test_a_failed_guided_run_resumes_without_repeating_a_call(fake_llm, make_settings):
    answered: list[str] = []

    def fails_on_the_third_call(request: dict[str, Any]) -> Reply:
        if len(fake_llm.requests) == 3:
            return Reply(status=500, content="the model server fell over")
        answered.append(request["messages"][-1]["content"])
        return good_writer(request)

    fake_llm.script = fails_on_the_third_call
    settings = make_settings()
    with pytest.raises(LLMError):
        asyncio.run(research(QUESTION, settings))
    assert read_info(settings.out).status == "failed"
    done_before = [e for e in events_of(settings.out) if e.type == "guided_call"]
    assert [c.purpose for c in done_before] == ["plan", "section"]  # the second section's call failed

    result = asyncio.run(resume(settings.out, settings))
    assert result.status == "done" and result.outcome == "report"
    events = events_of(settings.out)
    assert sum(1 for e in events if e.type == "guided_call" and e.purpose == "plan") == 1
    assert [e.phase for e in events if e.type == "llm_call"] == ["search", "subsearch", "open", "answer"]
    assert len(answered) == len(set(answered))  # no prompt was sent twice
