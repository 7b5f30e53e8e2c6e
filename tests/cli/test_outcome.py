"""``deepresearch research`` says what the user got, and exits 3 when it is not a cited report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from deepresearch.cli import app
from tests.agent.scripts import research_script
from tests.fakes.openai_server import FakeOpenAI, Reply

runner = CliRunner()


def research(fake_llm: FakeOpenAI, corpus_index: Path, out: Path, *extra: str) -> Any:
    args = ["research", "How does BM25 rank documents?", "--base-url", fake_llm.base_url, "--model", "m"]
    args += ["--index", str(corpus_index), "--out", str(out), "--quiet", *extra]
    return runner.invoke(app, args, catch_exceptions=False, env={"DEEPRESEARCH_MAX_RETRIES": "0"})


def test_a_report_without_a_resolved_citation_exits_3_and_says_why(fake_llm, corpus_index, tmp_path):
    fake_llm.enqueue(Reply(content="<answer>BM25 ranks documents well, trust me.</answer>"))
    result = research(fake_llm, corpus_index, tmp_path / "run")
    assert result.exit_code == 3
    assert "outcome: uncited — the run found no source, so the report cites nothing" in result.stderr
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "done" and info["outcome"] == "uncited"


def test_a_fallback_report_exits_3(fake_llm, corpus_index, tmp_path):
    fake_llm.script = lambda request: Reply(content="")  # never a usable reply
    result = research(fake_llm, corpus_index, tmp_path / "run")
    assert result.exit_code == 3
    assert "outcome: empty — the model wrote no report (empty reply)" in result.stderr


def test_a_cited_report_exits_0_with_its_outcome(fake_llm, corpus_index, tmp_path):
    fake_llm.script = research_script
    result = research(fake_llm, corpus_index, tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert "outcome: report — 2 sources cited" in result.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["strategy"] == "react"
