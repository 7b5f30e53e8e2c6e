"""``judge grade`` counts failed gradings the official way and reports them; weight-0 rubrics load.

One native task graded through the CLI against the scripted judge over real HTTP: a requirement the
judge refuses to grade, and a weight-0 rubric that must not reach the judge. The expected scores are
the ResearchRubrics formula worked by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from deepresearch.cli import app
from deepresearch.judge.records import JudgeRecord
from tests.fakes.openai_server import FakeOpenAI
from tests.judge.scripted_judge import Answer, ScriptedJudge, raw

runner = CliRunner()

TASK: dict[str, Any] = {
    "task_id": "solar",
    "prompt": "Why did European solar module makers struggle in 2024?",
    "rubrics": [
        {"criterion": "Gives the size of the price drop", "weight": 3},
        {"criterion": "Names the plants that closed", "weight": 1},
        {"criterion": "Compares with US manufacturers", "weight": 2},
        {"criterion": "Invents statistics", "weight": -1},
        {"criterion": "Mentions the weather", "weight": 0},
    ],
}
ANSWERS: dict[str, Answer] = {
    "Gives the size of the price drop": "Satisfied",
    "Names the plants that closed": "Partially Satisfied",
    "Compares with US manufacturers": raw("I cannot grade this."),  # a refusal, every retry
    "Invents statistics": "absent",
    "Mentions the weather": "Satisfied",
}


def grade(fake_llm: FakeOpenAI, tmp_path: Path, *extra: str) -> tuple[Result, list[JudgeRecord]]:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(TASK) + "\n")
    reports = tmp_path / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "solar.md").write_text("Module prices halved in 2024 [1]. Two plants closed [2].")
    out = tmp_path / "results.jsonl"
    result = runner.invoke(
        app,
        [
            *("judge", "grade", "--tasks", str(tasks), "--reports", str(reports), "--out", str(out)),
            *("--judge-model", "judge-x", "--judge-base-url", fake_llm.base_url),
            *("--cache", str(tmp_path / "cache.sqlite"), *extra),
        ],
    )
    assert result.exit_code == 0, result.output
    records = [JudgeRecord.model_validate_json(line) for line in out.read_text().splitlines()]
    return result, records


def test_a_failed_grading_counts_as_zero_and_is_reported(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    fake_llm.script = ScriptedJudge(ANSWERS)
    result, records = grade(fake_llm, tmp_path)
    # the weight-0 rubric was neither asked about nor recorded
    assert [r.criterion for r in records] == [r["criterion"] for r in TASK["rubrics"][:4]]
    assert not any("Mentions the weather" in str(r["messages"]) for r in fake_llm.requests)
    failed = [r.criterion for r in records if r.failed]
    assert failed == ["Compares with US manufacturers"]
    # official: (3·1 + 1·0.5 + 2·0 − 1·0) / (3 + 1 + 2) = 3.5 / 6 = 58.33
    assert "benchmark score (ternary): 58.33 over 1 tasks" in result.stdout
    assert "1 failed gradings counted as zero; 1 weight-0 rubrics not graded" in result.stdout


def test_the_failures_flag_restores_the_old_accounting(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    fake_llm.script = ScriptedJudge(ANSWERS)
    result, records = grade(fake_llm, tmp_path, "--failures", "skip")
    assert sum(r.failed for r in records) == 1
    # skipped: (3·1 + 1·0.5) / (3 + 1) = 3.5 / 4 = 87.50, the failure still reported
    assert "benchmark score (ternary): 87.50 over 1 tasks" in result.stdout
    assert "1 failed gradings counted as skip" in result.stdout
    bad = runner.invoke(app, ["judge", "grade", "--tasks", "t", "--reports", "r", "--failures", "drop"])
    assert bad.exit_code != 0 and "--failures" in bad.output


def test_grading_that_scores_no_task_exits_1(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    fake_llm.script = ScriptedJudge(ANSWERS)
    only_flaws = {**TASK, "rubrics": [{"criterion": "Invents statistics", "weight": -1}]}
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(only_flaws) + "\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "solar.md").write_text("Module prices halved in 2024.")
    result = runner.invoke(
        app,
        [
            *("judge", "grade", "--tasks", str(tasks), "--reports", str(tmp_path / "reports")),
            *("--out", str(tmp_path / "results.jsonl"), "--cache", str(tmp_path / "cache.sqlite")),
            *("--judge-model", "judge-x", "--judge-base-url", fake_llm.base_url),
        ],
    )
    assert result.exit_code == 1, result.output  # graded, but a task without requirements has no score
    assert "benchmark score (ternary): n/a over 0 tasks" in result.stdout
    assert "no task could be scored" in result.stderr
