"""The bundled model drives the real agent (slow): the guided strategy to a cited report, and the
ReAct loop's mechanics for a few steps.

A 135M model writes poor research; what must hold is that every action it emits is parsed, repaired
or reported back as an error, the run ends with a report, the run directory is complete, and every
citation is either resolved or counted as unresolved. Under the guided strategy (the default for
``--model local``) its citations are valid by construction and point only at pages it read.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from deepresearch.config import load_settings
from deepresearch.events import parse_event
from deepresearch.research import research
from deepresearch.runs import read_info
from deepresearch.tools.registry import default_tools

pytestmark = pytest.mark.slow


def settings_for(real_model: Path, corpus_index: Path, out: Path, **extra: object) -> object:
    flags = {"model": f"local:{real_model}", "index": corpus_index, "out": out, "local_threads": 1}
    return load_settings({**flags, **extra}, env={})


@pytest.mark.timeout(600)
def test_bundled_model_writes_a_guided_report_citing_only_pages_it_read(
    real_model: Path, corpus_index: Path, tmp_path: Path
) -> None:
    settings = settings_for(real_model, corpus_index, tmp_path / "run")
    assert settings.effective_strategy == "guided" and settings.is_bundled_model  # type: ignore[attr-defined]
    result = asyncio.run(research("How does BM25 rank documents?", settings))  # type: ignore[arg-type]
    run = tmp_path / "run"

    info = read_info(run)
    assert result.status == info.status == "done" and info.strategy == "guided"
    assert info.outcome in ("report", "extractive") and info.citations["resolved"] >= 2
    assert info.citations["unresolved"] == 0  # the schema's enum: no invented key can be written
    assert info.local_threads == {"threads": 1, "decided": "setting", "timings_ms": {}}
    sources = json.loads((run / "sources.json").read_text())
    assert all(s["fetched"] for s in sources if s["n"] is not None)
    events = [parse_event(line) for line in (run / "events.jsonl").read_text().splitlines()]
    sections = [e for e in events if e.type == "guided_call" and e.purpose == "section"]
    assert sections and all(e.result["kept"] in ("model", "quoted", "none") for e in sections)
    assert [e.type for e in events][-2:] == ["report", "run_finished"]


@pytest.mark.timeout(600)  # a loaded 2-core machine: up to five calls with a few thousand prompt tokens each
def test_bundled_model_drives_the_react_loop_for_a_few_steps(
    real_model: Path, corpus_index: Path, tmp_path: Path
) -> None:
    settings = settings_for(
        real_model,
        corpus_index,
        tmp_path / "run",
        strategy="react",
        max_steps=2,
        max_output_tokens=256,
        temperature=0.0,
    )
    assert settings.effective_tool_mode == "json"  # type: ignore[attr-defined]
    tools = {name: tool for name, tool in default_tools().items() if name in ("batch_web_surfer", "todo")}
    # two tools keep the prompt short: the mechanics under test are the same for all four
    result = asyncio.run(research("How does BM25 rank documents?", settings, tools=tools))  # type: ignore[arg-type]
    run = tmp_path / "run"

    assert result.status == "done" and result.report.strip()
    assert result.origin in ("answer", "forced", "fallback")
    for name in ("run.json", "events.jsonl", "messages.json", "sources.json", "report.md", "report.html"):
        assert (run / name).is_file(), name
    info = read_info(run)
    assert info.status == "done" and info.steps == result.steps >= 1 and info.strategy == "react"
    citations = info.citations
    assert citations["resolved"] + citations["unresolved"] == citations["cited"]

    events = [parse_event(line) for line in (run / "events.jsonl").read_text().splitlines()]
    calls = [e for e in events if e.type == "tool_call"]
    results = {e.call_id: e for e in events if e.type == "tool_result"}
    assert len(results) == len(calls)  # every action the model emitted got an answer
    for call in calls:
        answer = results[call.call_id]
        if call.name == "invalid_tool_call":
            assert answer.is_error and answer.content.startswith("Error: your reply could not be read")
        else:
            assert isinstance(json.loads(call.arguments), dict)  # parsed or repaired into JSON
    messages = json.loads((run / "messages.json").read_text())
    assert messages[0]["role"] == "system" and messages[1]["role"] == "user"
    assert all(m["role"] in ("system", "user", "assistant", "tool") for m in messages)
    assert [e.type for e in events][-2:] == ["report", "run_finished"]
