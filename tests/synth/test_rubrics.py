"""``deepresearch synth rubrics``: RL tasks with rubrics from another pipeline's output (a synth plan
record becomes a seed), through the CLI against the scripted synthesis model of the judge's tests."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.judge.synth import SynthSeed
from deepresearch.synth.rubrics import seed_of, seeds_file
from tests.fakes.openai_server import FakeOpenAI
from tests.judge.test_synth import route

PLAN_RECORD = {
    "task_id": "plan-1",
    "source_id": "reports/grid.md",
    "prompt": "How do grid batteries earn money, and how has that changed?",
    "plan": ["List revenue streams", "Compare markets", "Write the report"],
    "reference": "Batteries first sold frequency response; arbitrage now matters more.",
    "language": "en",
}
KG_RECORD = {
    "task_id": "kg-1",
    "question": "Which tool reads the file listing the sources of the manager that installs .deb files?",
    "answer": "apt",
    "edges": [
        {
            "subject": "apt",
            "relation": "reads",
            "object": "sources.list",
            "evidence": [{"text": "apt reads sources.list"}],
        }
    ],
}


def test_pipeline_records_become_seeds() -> None:
    plan = seed_of(PLAN_RECORD)
    assert plan is not None and plan.id == "plan-1" and plan.outline == PLAN_RECORD["plan"]
    assert plan.document.startswith("Batteries first")
    kg = seed_of(KG_RECORD)
    assert kg is not None and kg.topic.startswith("Which tool") and kg.document == "apt reads sources.list"
    assert seed_of({"answer": "no question"}) is None


def test_synth_rubrics_builds_rl_tasks_from_synth_plan_output(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    source = tmp_path / "plans.jsonl"
    source.write_text(json.dumps(PLAN_RECORD) + "\n" + json.dumps(KG_RECORD) + "\n" + '{"broken"\n')
    out = tmp_path / "rl.jsonl"
    derived, problems = seeds_file(source, out)
    assert derived == out.with_name("rl.jsonl.seeds.jsonl") and len(problems) == 1
    assert [SynthSeed.model_validate_json(line).id for line in derived.read_text().splitlines()] == [
        "plan-1",
        "kg-1",
    ]
    route(fake_llm)
    flags = ["--base-url", fake_llm.base_url, "--model", "writer", "--judge-model", "judge"]
    result = CliRunner().invoke(app, ["synth", "rubrics", "--from", str(source), "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    assert "kept 2;" in result.stdout
    tasks = [json.loads(line) for line in out.read_text().splitlines()]
    # records are appended as items are decided, concurrently: the order is not the input's
    assert sorted(t["task_id"] for t in tasks) == ["synth-kg-1", "synth-plan-1"] and all(
        t["rubrics"] for t in tasks
    )
    asked = len(fake_llm.requests)
    again = CliRunner().invoke(app, ["synth", "rubrics", "--from", str(source), "--out", str(out), *flags])
    assert (
        again.exit_code == 0 and "skipped 2 already done" in again.stdout and len(fake_llm.requests) == asked
    )
