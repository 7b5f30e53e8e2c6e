"""``judge grade`` follows each benchmark's protocol end to end: DeepResearch Bench criteria laid out as
the benchmark ships them are scored by RACE against the reference articles it finds, without them by
our absolute protocol (saying so), and ``--fact`` adds the citation checks to the same summary. The
judge is scripted on the fake OpenAI server and the cited pages come from the fake web server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.errors import ConfigError
from deepresearch.judge.protocols import choose_protocol, drb_companions
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.web_server import FakeWebSite
from tests.judge.scripted_judge import ScriptedJudge, first_user
from tests.judge.test_fact import BLOOM, Script, english_report
from tests.judge.test_race import (
    ARTICLES,
    EN_PROMPT,
    ZH_PROMPT,
    official_numbers,
    scripted_judge,
    write_drb_files,
)

runner = CliRunner()


@pytest.fixture
def drb_files(tmp_path: Path) -> dict[str, Path]:
    return write_drb_files(tmp_path / "files")


def shipped_layout(files: dict[str, Path], root: Path, *, with_references: bool = True) -> Path:
    """DeepResearch Bench's ``data/`` folders, as its repository ships them; returns the criteria."""
    criteria = root / "data" / "criteria_data" / "criteria.jsonl"
    placed = {"criteria": criteria, "queries": root / "data" / "prompt_data" / "query.jsonl"}
    if with_references:
        placed["references"] = root / "data" / "test_data" / "cleaned_data" / "reference.jsonl"
    for name, path in placed.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name].read_bytes())
    return criteria


def write_reports(folder: Path) -> Path:
    folder.mkdir()
    for task_id, (target, _reference) in ARTICLES.items():
        (folder / f"{task_id}.md").write_text(target, encoding="utf-8")
    return folder


def grade(fake_llm: FakeOpenAI, *args: str, env: dict[str, str] | None = None) -> Any:
    flags = ["--judge-model", "judge-x", "--judge-base-url", fake_llm.base_url]
    return runner.invoke(app, ["judge", "grade", *args, *flags], env={"COLUMNS": "200", **(env or {})})


def test_drb_criteria_where_the_benchmark_ships_them_are_scored_by_race(
    fake_llm: FakeOpenAI, tmp_path: Path, drb_files: dict[str, Path]
) -> None:
    criteria = shipped_layout(drb_files, tmp_path / "drb")
    assert drb_companions(criteria) == (
        tmp_path / "drb/data/test_data/cleaned_data/reference.jsonl",
        tmp_path / "drb/data/prompt_data/query.jsonl",
    )
    fake_llm.script = scripted_judge
    out = tmp_path / "graded" / "race.jsonl"
    reports = write_reports(tmp_path / "reports")
    result = grade(fake_llm, "--tasks", str(criteria), "--reports", str(reports), "--out", str(out))
    assert result.exit_code == 0, result.output

    hand = official_numbers()
    summary = json.loads((out.parent / "summary.json").read_text(encoding="utf-8"))
    assert summary["protocol"]["name"] == "deepresearchbench"
    assert summary["protocol"]["chosen"] == "auto (drb task file)"
    assert summary["overall"] == pytest.approx(50 * (hand["1"]["overall"] + hand["2"]["overall"]), abs=1e-9)
    for dimension in ("comprehensiveness", "insight"):
        mean = 50 * (hand["1"]["dimensions"][dimension] + hand["2"]["dimensions"][dimension])
        assert summary["per_dimension"][dimension] == {"score": pytest.approx(mean, abs=1e-9), "tasks": 2}
    assert summary["per_task"]["2"]["language"] == "zh"  # from query.jsonl: graded with the zh prompt
    assert summary["per_domain"]["Transportation"]["score"] == pytest.approx(100 * hand["2"]["overall"])
    assert summary["failed"]["gradings"] == 1 and summary["tasks_scored"] == 2
    assert len(fake_llm.requests) == 4  # one comparative call per task, plus one repair each
    assert any(ZH_PROMPT in first_user(r) for r in fake_llm.requests)
    assert any(EN_PROMPT in first_user(r) for r in fake_llm.requests)
    assert "protocol: deepresearchbench (RACE" in result.stdout
    assert f"benchmark score (RACE): {summary['overall']:.2f} over 2 tasks" in result.stdout
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_drb_criteria_without_references_are_graded_absolutely_and_say_so(
    fake_llm: FakeOpenAI, tmp_path: Path, drb_files: dict[str, Path]
) -> None:
    criteria = shipped_layout(drb_files, tmp_path / "drb", with_references=False)
    fake_llm.script = ScriptedJudge({})
    reports = write_reports(tmp_path / "reports")
    out = tmp_path / "results.jsonl"
    result = grade(fake_llm, "--tasks", str(criteria), "--reports", str(reports), "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads(out.with_name("summary.json").read_text(encoding="utf-8"))
    assert summary["protocol"]["name"] == "ours" and "not DeepResearch Bench's RACE" in result.stderr
    assert "pass --references for RACE" in summary["protocol"]["chosen"]

    # asking for RACE without the reference articles, or with a rubric knob, is refused up front
    asked = grade(
        fake_llm, "--tasks", str(criteria), "--reports", str(reports), "--protocol", "deepresearchbench"
    )
    assert asked.exit_code != 0 and "pass --references reference.jsonl" in asked.output
    with pytest.raises(ConfigError, match="has no --mode"):
        choose_protocol("deepresearchbench", "drb", mode="binary", references=drb_files["references"])
    with pytest.raises(ConfigError, match="needs DeepResearch Bench's criteria"):
        choose_protocol("deepresearchbench", "native", references=drb_files["references"])
    # a rubric knob under auto grades DRB's criteria per criterion, and the summary says why
    per_criterion = choose_protocol("auto", "drb", mode="binary", references=drb_files["references"])
    assert per_criterion.name == "ours" and "--mode/--failures/--prompts" in per_criterion.chosen


def test_fact_adds_the_citation_checks_to_the_summary(
    fake_llm: FakeOpenAI,
    fake_web_server: FakeWebSite,
    tmp_path: Path,
) -> None:
    site = fake_web_server
    site.reset()
    citations = Script(site)
    rubrics = ScriptedJudge({"Explains false positives": ["satisfied"]})

    def judge(request: dict[str, Any]) -> Reply:
        return citations(request) if '<page url="' in first_user(request) else rubrics(request)

    fake_llm.script = judge
    tasks = tmp_path / "tasks.jsonl"
    task = {
        "task_id": "en",
        "prompt": "Explain Bloom filters.",
        "rubrics": [{"criterion": "Explains false positives", "weight": 2}],
    }
    tasks.write_text(json.dumps(task) + "\n", encoding="utf-8")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "en.md").write_text(english_report(site), encoding="utf-8")
    out = tmp_path / "results.jsonl"
    env = {
        "DEEPRESEARCH_ALLOW_PRIVATE_URLS": "true",
        "DEEPRESEARCH_FETCH_HOST_DELAY": "0",
        "DEEPRESEARCH_FETCH_CACHE": str(tmp_path / "fetch.sqlite"),
    }
    result = grade(
        fake_llm, "--tasks", str(tasks), "--reports", str(reports), "--out", str(out), "--fact", env=env
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(out.with_name("summary.json").read_text(encoding="utf-8"))
    assert summary["overall"] == pytest.approx(100.0)
    checked = summary["citations"]
    # the English report's pairs (see test_fact): 3 supported of 5 judged; the 404 page is left out
    assert checked["citation_accuracy"] == pytest.approx(3 / 5, abs=1e-9)
    assert checked["effective_citations"] == pytest.approx(3.0)
    assert checked["per_task"]["en"]["faithfulness"] == pytest.approx(3 / 5, abs=1e-9)
    assert site.hits[BLOOM] == 1
    assert (tmp_path / "fact.jsonl").is_file()
    assert "FACT citation accuracy: 60.00" in result.stdout


def test_a_judge_that_gives_no_verdict_at_all_fails_the_command(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    fake_llm.script = lambda request: Reply(status=400, body='{"error": {"message": "bad request"}}')
    tasks = tmp_path / "tasks.jsonl"
    rubrics = [{"criterion": "Names the cause", "weight": 1}, {"criterion": "Gives a date", "weight": 1}]
    tasks.write_text(json.dumps({"task_id": "t", "prompt": "Why?", "rubrics": rubrics}) + "\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "t.md").write_text("Because.", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    args = ["--tasks", str(tasks), "--reports", str(tmp_path / "reports"), "--out", str(out)]
    result = grade(fake_llm, *args, env={"DEEPRESEARCH_MAX_RETRIES": "0"})
    # officially each failure is worth 0, so the score is 0.00: a number about the judge, not the report
    assert "benchmark score (ternary): 0.00 over 1 tasks; 2 failed gradings" in result.stdout
    assert result.exit_code == 1 and "the judge gave no verdict" in result.stderr
    failed = json.loads(out.with_name("summary.json").read_text(encoding="utf-8"))["failed"]
    assert (failed["gradings"], failed["of"]) == (2, 2)
