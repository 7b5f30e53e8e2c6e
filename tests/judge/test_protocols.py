"""``judge grade``'s protocols, ``summary.json`` and ``--concurrency``, through the CLI.

Each test grades hand-built files in a benchmark's shape against the scripted judge over real HTTP
(the fake OpenAI server on loopback) and checks the numbers against the official formulas worked by
hand in the comments: per task ``Σ w·v / Σ w₊`` with a failed grading worth 0 and its weight kept;
overall, per dimension and per domain the mean over tasks (× 100), never the rubrics pooled.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from deepresearch.cli import app
from deepresearch.errors import ConfigError
from deepresearch.judge.loaders import load_tasks
from deepresearch.judge.protocols import choose_protocol
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.judge.scripted_judge import Answer, ScriptedJudge, raw

runner = CliRunner()

EXPLICIT, IMPLICIT, STYLE = "Explicit Criteria", "Implicit Criteria", "Communication Quality"


def rr_task(sample_id: str, domain: str, *rubrics: tuple[str, float, str]) -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "prompt": f"Question {sample_id}?",
        "domain": domain,
        "conceptual_breadth": "Moderate",
        "rubrics": [{"criterion": c, "weight": w, "axis": a} for c, w, a in rubrics],
    }


RR_TASKS = [
    rr_task(
        "rr1",
        "Energy",
        ("A: gives the price drop", 3, EXPLICIT),
        ("B: names the plants", 1, EXPLICIT),
        ("C: compares with the US", 2, IMPLICIT),
        ("D: invents statistics", -1, STYLE),
    ),
    rr_task("rr2", "Health", ("E: states the dose", 2, EXPLICIT), ("F: notes the trial size", 2, IMPLICIT)),
    rr_task("rr3", "Energy", ("G: gives the year", 4, EXPLICIT), ("H: explains the cause", 1, IMPLICIT)),
    rr_task("rr4", "Health", ("I: never graded", 1, EXPLICIT)),  # no report: missing
]
RR_ANSWERS: dict[str, Answer] = {
    "A: gives the price drop": "Satisfied",
    "B: names the plants": "Partially Satisfied",
    "C: compares with the US": raw("I cannot grade this."),  # a refusal on every retry: failed
    "D: invents statistics": "absent",
    "E: states the dose": "Partially Satisfied",
    "F: notes the trial size": "Satisfied",
    "G: gives the year": "Not Satisfied",
    "H: explains the cause": "Satisfied",
}


def write_rr(tmp_path: Path) -> tuple[Path, Path]:
    tasks = tmp_path / "researchrubrics.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in RR_TASKS))
    reports = tmp_path / "reports"
    reports.mkdir()
    for task_id in ("rr1", "rr2", "rr3"):
        (reports / f"{task_id}.md").write_text(f"The report for {task_id} [1].")
    return tasks, reports


RB_RUBRICS = [
    {
        "id": 1,
        "question": "How do mixture-of-experts models route tokens?",
        "rubric": [
            {"point": "P1: explains top-k gating", "weight": 2},
            {"point": "P2: mentions load balancing", "weight": 1},
            {"point": "P3: cites Switch Transformer", "weight": 1},
        ],
    },
    {
        "id": 2,
        "question": "What limits test-time scaling?",
        "rubric": [{"point": "Q1: discusses verifier quality", "weight": 3}],
    },
]
RB_QUESTIONS = [
    {"id": 1, "question": RB_RUBRICS[0]["question"], "category": "Technical Details", "Subject": "MoE"},
    {"id": 2, "question": RB_RUBRICS[1]["question"], "category": "Open Consulting", "Subject": "Scaling"},
]
RB_ANSWERS: dict[str, Answer] = {
    "P1: explains top-k gating": "Satisfied",
    "P2: mentions load balancing": "Partially Satisfied",
    "P3: cites Switch Transformer": raw("I cannot grade this."),
    "Q1: discusses verifier quality": "Partially Satisfied",
}


def write_rb(tmp_path: Path) -> tuple[Path, Path]:
    """ResearcherBench's repository layout: data/eval_data/{rubric.json, questions.json}."""
    root = tmp_path / "ResearcherBench"
    eval_data = root / "data" / "eval_data"
    eval_data.mkdir(parents=True)
    (eval_data / "rubric.json").write_text(json.dumps(RB_RUBRICS, indent=4))
    (eval_data / "questions.json").write_text(json.dumps(RB_QUESTIONS, indent=4))
    user_data = root / "data" / "user_data"
    user_data.mkdir()
    responses = [
        {"id": q["id"], "question": q["question"], "response": "An answer [1]."} for q in RB_QUESTIONS
    ]
    (user_data / "model.json").write_text(json.dumps(responses))
    return root, user_data / "model.json"


def grade(
    fake_llm: FakeOpenAI, tmp_path: Path, tasks: Path, reports: Path, *extra: str, name: str = "run"
) -> tuple[Result, dict[str, Any]]:
    out = tmp_path / name / "results.jsonl"
    result = runner.invoke(
        app,
        [
            *("judge", "grade", "--tasks", str(tasks), "--reports", str(reports), "--out", str(out)),
            *("--judge-model", "judge-x", "--judge-base-url", fake_llm.base_url),
            *("--cache", str(tmp_path / name / "cache.sqlite"), *extra),
        ],
    )
    assert result.exit_code == 0, result.output
    return result, json.loads((out.parent / "summary.json").read_text())


def test_summary_json_holds_the_per_task_means(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    fake_llm.script = ScriptedJudge(RR_ANSWERS)
    tasks, reports = write_rr(tmp_path)
    result, summary = grade(fake_llm, tmp_path, tasks, reports)

    # rr1: (3·1 + 1·0.5 + 2·0 − 1·0) / (3+1+2) = 3.5/6; explicit 3.5/4, implicit 0/2 (failed: 0)
    # rr2: (2·0.5 + 2·1) / 4 = 0.75; explicit 0.5, implicit 1
    # rr3: (4·0 + 1·1) / 5 = 0.2; explicit 0, implicit 1
    per_task = {"rr1": 3.5 / 6, "rr2": 0.75, "rr3": 0.2}
    assert summary["overall"] == pytest.approx(100 * sum(per_task.values()) / 3, abs=1e-9)
    assert summary["tasks_scored"] == 3
    assert list(summary["per_task"]) == ["rr1", "rr2", "rr3"]
    for task_id, score in per_task.items():
        assert summary["per_task"][task_id]["score"] == pytest.approx(100 * score, abs=1e-9)
    assert summary["per_task"]["rr1"]["failed_gradings"] == 1
    assert summary["per_task"]["rr2"]["domain"] == "Health"

    # per dimension: the mean of the tasks' axis compliance, not pooled (pooled explicit would be
    # (3 + 0.5 + 1 + 0) / (4 + 2 + 4) = 45.0); the style axis has no positive weight, so no score
    dims = summary["per_dimension"]
    assert set(dims) == {EXPLICIT, IMPLICIT}
    assert dims[EXPLICIT]["score"] == pytest.approx(100 * (3.5 / 4 + 0.5 + 0) / 3, abs=1e-9)
    assert dims[IMPLICIT]["score"] == pytest.approx(100 * (0 + 1 + 1) / 3, abs=1e-9)
    assert dims[EXPLICIT]["tasks"] == 3

    domains = summary["per_domain"]
    assert domains["Energy"]["score"] == pytest.approx(100 * (3.5 / 6 + 0.2) / 2, abs=1e-9)
    assert (domains["Energy"]["tasks"], domains["Energy"]["flagged"]) == (2, 1)
    assert domains["Health"]["score"] == pytest.approx(75.0, abs=1e-9)
    assert (domains["Health"]["tasks"], domains["Health"]["flagged"]) == (1, 0)

    failed = summary["failed"]
    assert failed["gradings"] == 1 and failed["counted_as"] == "zero"
    assert failed["tasks_with_failed_gradings"] == ["rr1"]
    assert failed["missing_reports"] == ["rr4"] and failed["unscored_tasks"] == {}

    assert summary["protocol"]["name"] == "researchrubrics" and summary["protocol"]["mode"] == "ternary"
    assert summary["format"] == "researchrubrics"
    tokens = summary["tokens"]
    assert tokens["total_tokens"] == tokens["prompt_tokens"] + tokens["completion_tokens"] > 0
    assert summary["cost"]["usd"] == pytest.approx(sum(summary["cost"]["per_task_usd"].values()), abs=1e-6)
    assert summary["settings"] == {"trials": 1, "batch": 1, "concurrency": 8, "max_report_tokens": 100_000}

    # the headline lines
    assert "protocol: researchrubrics (ternary, failures counted as zero)" in result.stdout
    assert "benchmark score (ternary): 51.11 over 3 tasks; 1 failed gradings counted as zero" in result.stdout
    assert f"by dimension (mean over tasks): {EXPLICIT} 45.83, {IMPLICIT} 66.67" in result.stdout
    assert "by domain: Energy 39.17 (2), Health 75.00 (1)" in result.stdout
    assert "summary in " in result.stdout and "summary.json" in result.stdout


def test_researchrubrics_with_an_explicit_mode(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    fake_llm.script = ScriptedJudge(RR_ANSWERS)
    tasks, reports = write_rr(tmp_path)
    result, summary = grade(fake_llm, tmp_path, tasks, reports, "--mode", "binary")
    # binary: rr1 (3·1 + 0 + 0) / 6 = 0.5; rr2 (0 + 2·1) / 4 = 0.5; rr3 1/5 = 0.2
    assert summary["overall"] == pytest.approx(100 * (0.5 + 0.5 + 0.2) / 3, abs=1e-9)
    assert summary["protocol"]["mode"] == "binary" and summary["protocol"]["mode_overridden"] is True
    assert "protocol: researchrubrics (binary by --mode instead of ternary, failures counted as zero)" in (
        result.stdout
    )


def test_researcherbench_is_graded_binary_by_default(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    fake_llm.script = ScriptedJudge(RB_ANSWERS)
    root, responses = write_rb(tmp_path)
    result, summary = grade(fake_llm, tmp_path, root, responses)
    # coverage, binary: task 1 (2·1 + 1·0 + 1·0 failed) / 4 = 0.5; task 2 (3·0) / 3 = 0 — no partial credit
    assert summary["format"] == "researcherbench"
    assert summary["protocol"]["name"] == "researcherbench"
    assert summary["protocol"]["chosen"] == "auto (researcherbench task file)"
    assert summary["protocol"]["mode"] == "binary" and summary["protocol"]["failures"] == "zero"
    assert summary["per_task"]["1"]["score"] == pytest.approx(50.0, abs=1e-9)
    assert summary["per_task"]["2"]["score"] == pytest.approx(0.0, abs=1e-9)
    assert summary["overall"] == pytest.approx(25.0, abs=1e-9)
    assert summary["per_dimension"]["Coverage"]["score"] == pytest.approx(25.0, abs=1e-9)
    assert summary["per_domain"]["Technical Details"]["score"] == pytest.approx(50.0, abs=1e-9)
    assert summary["per_domain"]["Open Consulting"]["score"] == pytest.approx(0.0, abs=1e-9)
    assert summary["failed"]["gradings"] == 1
    assert "protocol: researcherbench (binary, failures counted as zero)" in result.stdout
    assert "benchmark score (binary): 25.00 over 2 tasks" in result.stdout

    # an explicit protocol overrides the choice: ternary gives the partial credit back
    # task 1 (2·1 + 1·0.5 + 0) / 4 = 0.625; task 2 (3·0.5) / 3 = 0.5
    result, summary = grade(fake_llm, tmp_path, root, responses, "--protocol", "researchrubrics", name="rr")
    assert summary["protocol"]["name"] == "researchrubrics" and summary["protocol"]["chosen"] == "explicit"
    assert summary["overall"] == pytest.approx(100 * (0.625 + 0.5) / 2, abs=1e-9)
    assert "protocol: researchrubrics (ternary, failures counted as zero)" in result.stdout

    # and --mode overrides the protocol's mode, which the line says
    result, summary = grade(fake_llm, tmp_path, root, responses, "--mode", "ternary", name="mode")
    assert summary["protocol"]["name"] == "researcherbench" and summary["protocol"]["mode"] == "ternary"
    assert summary["overall"] == pytest.approx(56.25, abs=1e-9)
    assert "protocol: researcherbench (ternary by --mode instead of binary, failures counted" in result.stdout


def test_protocol_choice_by_format() -> None:
    assert choose_protocol("auto", "researchrubrics").mode == "ternary"
    assert choose_protocol("auto", "researcherbench").mode == "binary"
    assert choose_protocol("auto", "native").name == "ours"
    assert choose_protocol("auto", "drb").name == "ours"
    skipped = choose_protocol("auto", "researcherbench", failures="skip")
    assert (
        skipped.describe()
        == "researcherbench (binary, failures counted as skip by --failures instead of zero), "
        "official-researcherbench prompts"
    )
    assert choose_protocol("auto", "researchrubrics").prompts == "official-researchrubrics"
    assert choose_protocol("auto", "native").prompts == "paper"
    paper = choose_protocol("auto", "researchrubrics", prompts="paper")
    assert paper.prompts == "paper" and paper.prompts_overridden
    assert paper.describe().endswith("paper prompts by --prompts instead of official-researchrubrics")
    official = choose_protocol("researcherbench", "native", prompts="official")
    assert official.prompts == "official-researcherbench" and not official.prompts_overridden
    with pytest.raises(ConfigError, match="no official prompts"):
        choose_protocol("auto", "native", prompts="official")
    with pytest.raises(ConfigError, match="unknown protocol"):
        choose_protocol("leaderboard", "native")
    bad = runner.invoke(app, ["judge", "grade", "--tasks", "t", "--reports", "r", "--protocol", "x"])
    assert bad.exit_code != 0 and "--protocol" in bad.output


class CountingFake(FakeOpenAI):
    """The fake server, counting the requests it is answering at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.in_flight += 1  # the ASGI app runs on the server's one event loop: no lock needed
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.in_flight -= 1


@pytest.fixture
def counting_llm() -> Iterator[CountingFake]:
    server = CountingFake()
    server.start()
    yield server
    server.stop()


def test_concurrency_sets_the_requests_in_flight(counting_llm: CountingFake, tmp_path: Path) -> None:
    # six rubrics, each answered after a pause, so that calls overlap whenever they are allowed to
    scripted = ScriptedJudge({})

    def slow(request: dict[str, Any]) -> Reply:
        return dataclasses.replace(scripted(request), delay=0.2)

    counting_llm.script = slow
    tasks = tmp_path / "tasks.jsonl"
    rubrics = [{"criterion": f"Point {i}", "weight": 1} for i in range(6)]
    tasks.write_text(json.dumps({"task_id": "t", "prompt": "Q?", "rubrics": rubrics}) + "\n")
    assert load_tasks(tasks).format == "native"
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "t.md").write_text("An answer.")
    seen: dict[int, int] = {}
    for concurrency in (1, 3):
        counting_llm.requests.clear()
        counting_llm.most_in_flight = 0
        _, summary = grade(
            counting_llm, tmp_path, tasks, reports, "--concurrency", str(concurrency), name=f"c{concurrency}"
        )
        assert len(counting_llm.requests) == 6
        assert summary["settings"]["concurrency"] == concurrency
        assert summary["protocol"]["name"] == "ours" and summary["overall"] == pytest.approx(100.0)
        seen[concurrency] = counting_llm.most_in_flight
    assert seen == {1: 1, 3: 3}
