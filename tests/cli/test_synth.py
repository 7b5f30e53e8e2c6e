"""``deepresearch synth …`` and ``deepresearch curate`` through the CLI: the summary printed and written
beside the output, a rerun that redoes nothing, and exit 1 when nothing was kept or items failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from deepresearch.cli import app
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.synth.test_plan import prose

runner = CliRunner()


def plan_reply(request: dict[str, Any]) -> Reply:
    return Reply(
        content=json.dumps(
            {
                "task": "How does BM25 ranking shape search results?",
                "plan": ["Find how BM25 scores terms", "Compare it with TF-IDF", "Write the report"],
            }
        )
    )


def synth_plan(fake_llm: FakeOpenAI, documents: Path, out: Path, **env: str) -> Any:
    args = ["synth", "plan", "--documents", str(documents), "--out", str(out), "--quiet"]
    flags = ["--base-url", fake_llm.base_url, "--model", "writer"]
    return runner.invoke(app, [*args, *flags], env={"DEEPRESEARCH_MAX_RETRIES": "0", **env})


def test_synth_plan_prints_and_writes_its_summary_and_a_rerun_redoes_nothing(
    fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    documents = tmp_path / "docs"
    documents.mkdir()
    (documents / "bm25.md").write_text(f"# BM25\n\n{prose('BM25 ranking')}\n", encoding="utf-8")
    (documents / "stub.md").write_text("# Too short\n\nA line.\n", encoding="utf-8")
    fake_llm.script = plan_reply
    out = tmp_path / "plans.jsonl"
    first = synth_plan(fake_llm, documents, out)
    assert first.exit_code == 0, first.output
    assert "kept 1 (1 records); dropped: too_short 1; failed 0" in first.stdout
    summary = json.loads(out.with_name("plans.jsonl.summary.json").read_text(encoding="utf-8"))
    assert summary["kept"] == 1 and summary["dropped"] == {"too_short": 1} and summary["calls"] == 1
    asked = len(fake_llm.requests)
    again = synth_plan(fake_llm, documents, out)
    assert again.exit_code == 0 and "skipped 2 already done" in again.stdout
    assert len(fake_llm.requests) == asked


def test_synth_exits_1_when_items_failed_or_nothing_was_kept(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    documents = tmp_path / "docs"
    documents.mkdir()
    (documents / "bm25.md").write_text(f"# BM25\n\n{prose('BM25 ranking')}\n", encoding="utf-8")
    fake_llm.script = lambda request: Reply(status=500, body='{"error": {"message": "down"}}')
    failed = synth_plan(fake_llm, documents, tmp_path / "a.jsonl")
    assert (
        failed.exit_code == 1
        and "1 item(s) failed" in failed.output
        and "run the same command" in failed.output
    )

    (documents / "bm25.md").write_text("# Too short\n", encoding="utf-8")
    empty = synth_plan(fake_llm, documents, tmp_path / "b.jsonl")
    assert empty.exit_code == 1 and "nothing was kept" in empty.output


def test_curate_exits_1_when_no_run_is_kept(tmp_path: Path) -> None:
    result = runner.invoke(app, ["curate", str(tmp_path), "--out", str(tmp_path / "data")])
    assert result.exit_code == 1 and "error:" in result.output
