"""The bundled model drives the real agent for a few steps (slow): mechanics, not wisdom.

A 135M model writes poor research; what must hold is that every action it emits is parsed, repaired
or reported back as an error, the run ends with a report (forced if need be), the run directory is
complete and every citation is either resolved or counted as unresolved.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from deepresearch.agent.events import parse_event
from deepresearch.config import load_settings
from deepresearch.research import research
from deepresearch.runs import read_info

pytestmark = pytest.mark.slow


def test_bundled_model_runs_the_agent_to_a_report(
    real_model: Path, corpus_index: Path, tmp_path: Path
) -> None:
    settings = load_settings(
        {
            "model": f"local:{real_model}",
            "index": corpus_index,
            "out": tmp_path / "run",
            "max_steps": 2,
            "max_output_tokens": 384,
            "temperature": 0.0,
        },
        env={},
    )
    assert settings.effective_tool_mode == "json"
    result = asyncio.run(research("How does BM25 rank documents?", settings))
    run = tmp_path / "run"

    assert result.status == "done" and result.report.strip()
    assert result.origin in ("answer", "forced", "fallback")
    for name in ("run.json", "events.jsonl", "messages.json", "sources.json", "report.md", "report.html"):
        assert (run / name).is_file(), name
    info = read_info(run)
    assert info.status == "done" and info.steps == result.steps >= 1
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
