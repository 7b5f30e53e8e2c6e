"""``deepresearch judge grade`` and ``judge synth-rubrics`` through the CLI, against the fake judge."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.judge.loaders import load_tasks, sample_tasks_path
from deepresearch.judge.records import JudgeRecord
from tests.judge.scripted_judge import ScriptedJudge

runner = CliRunner()


def test_grade_sample_reports_prints_scores_and_writes_records(fake_llm, tmp_path: Path) -> None:
    tasks = load_tasks(sample_tasks_path()).tasks
    pg = next(t for t in tasks if t.task_id == "sample-pg-concurrent-index")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / f"{pg.task_id}.md").write_text(
        "Use CREATE INDEX CONCURRENTLY … [1]\n\n## References\n[1] docs"
    )
    # every positive rubric satisfied except the first (partially); every flaw absent except the last
    answers = {r.criterion: "not_satisfied" for r in pg.rubrics if r.weight < 0}
    answers[pg.rubrics[0].criterion] = "partially"
    answers[pg.rubrics[-1].criterion] = "satisfied"  # the last negative rubric: its flaw is present
    fake_llm.script = ScriptedJudge(answers)
    out = tmp_path / "results.jsonl"
    result = runner.invoke(
        app,
        [
            "judge",
            "grade",
            "--tasks",
            str(sample_tasks_path()),
            "--reports",
            str(reports),
            "--judge-model",
            "judge-x",
            "--judge-base-url",
            fake_llm.base_url,
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    # positive weights 5+4+4+3+3+2+2+3+2+2 = 30; earned 30 - 5*0.5 = 27.5; penalty 2 (the last flaw)
    # ternary score = (27.5 - 2) / 30 = 0.85
    assert "85.0" in result.stdout and "benchmark score (ternary): 85.00 over 1 tasks" in result.stdout
    assert "no report for:" in result.stderr  # the four other sample tasks
    records = [JudgeRecord.model_validate_json(line) for line in out.read_text().splitlines()]
    assert len(records) == len(pg.rubrics) and {r.task_id for r in records} == {pg.task_id}
    assert all(r.judge_model == "judge-x" and not r.failed for r in records)
    requests = len(fake_llm.requests)
    again = runner.invoke(
        app,
        [
            "judge",
            "grade",
            "--tasks",
            str(sample_tasks_path()),
            "--reports",
            str(reports),
            "--judge-model",
            "judge-x",
            "--judge-base-url",
            fake_llm.base_url,
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache.sqlite"),
            "--mode",
            "strict",
        ],
    )
    assert again.exit_code == 0 and len(fake_llm.requests) == requests  # rescoring is free
    # strict: the partially met rubric earns 0 → (30 - 5 - 2) / 30 = 0.7667
    assert "76.7" in again.stdout


def test_synth_rubrics_cli_writes_kept_tasks(fake_llm, tmp_path: Path) -> None:
    from tests.judge.test_synth import route  # the synthesis tests' scripted writer and judge

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"id": "s1", "topic": "grid batteries", "domain": "STEM"}) + "\n")
    route(fake_llm)
    out = tmp_path / "tasks.jsonl"
    result = runner.invoke(
        app,
        [
            "judge",
            "synth-rubrics",
            "--seeds",
            str(seeds),
            "--out",
            str(out),
            "--base-url",
            fake_llm.base_url,
            "--model",
            "writer",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "kept 1" in result.stdout
    assert load_tasks(out).tasks[0].task_id == "synth-s1"


def test_the_judge_is_priced_from_the_config(fake_llm, tmp_path: Path) -> None:
    task = load_tasks(sample_tasks_path()).tasks[0]
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / f"{task.task_id}.md").write_text("A short report.")
    config = tmp_path / "deepresearch.toml"
    config.write_text('[prices."judge-priced"]\ninput = 1000.0\noutput = 1000.0\n')
    fake_llm.script = ScriptedJudge({})
    out = tmp_path / "results.jsonl"
    result = runner.invoke(
        app,
        [
            *("judge", "grade", "--tasks", str(sample_tasks_path()), "--reports", str(reports)),
            *("--judge-model", "judge-priced", "--judge-base-url", fake_llm.base_url, "--out", str(out)),
            *("--cache", str(tmp_path / "cache.sqlite"), "--config", str(config)),
        ],
    )
    assert result.exit_code == 0, result.output
    records = [JudgeRecord.model_validate_json(line) for line in out.read_text().splitlines()]
    assert records and all(r.cost_usd > 0 for r in records)
    assert "judge cost $0.0000" not in result.stdout
