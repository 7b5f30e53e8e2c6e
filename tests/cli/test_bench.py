"""``deepresearch bench …`` end to end through the CLI: run two systems, grade them, report, compare them
with the pairwise judge (resumably), rank three, and count human verdicts from an exported sheet."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deepresearch.bench.store import BenchStore
from deepresearch.cli import app
from tests.bench.scripts import routed, write_tasks
from tests.fakes.openai_server import Reply
from tests.judge.scripted_judge import ScriptedJudge

runner = CliRunner()
PROMPTS = {
    "q1": "How does BM25 rank documents?",
    "q2": "What does FTS5 add to SQLite?",
    "q3": "Why saturate term frequency?",
}
FLAW = "States something false about BM25."
_REPORT = re.compile(r"<report_(\d)>\n(.*?)\n</report_\1>", re.S)


def pairwise_judge(request: dict[str, Any]) -> Reply:
    """Prefers the report by ``model-a``, except on q3, where it always picks whichever came first."""
    text = request["messages"][0]["content"]
    reports = dict(_REPORT.findall(text))
    if "Why saturate" in text:
        better = "1"
    else:
        better = "1" if "model-a" in reports["1"] else "2" if "model-a" in reports["2"] else "tie"
    outcome = {"1": "report_1_better", "2": "report_2_better", "tie": "both_fair"}[better]
    dimensions = {
        "information_completeness": better,
        "content_depth": better,
        "requirement_fitness": "tie",
        "readability": better,
    }
    return Reply(content=json.dumps({"reason": "scripted", "dimensions": dimensions, "overall": outcome}))


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "220"})
    return result


@pytest.fixture
def benches(fake_llm, corpus_index, tmp_path) -> Path:
    """Benchmarks ``alpha`` (model-a) and ``beta`` (model-b) over the same three tasks, under ``root``."""
    fake_llm.script = routed(pairwise_judge)
    tasks = write_tasks(tmp_path / "tasks.jsonl", PROMPTS)
    root = tmp_path / "bench"
    for name, model in (("alpha", "model-a"), ("beta", "model-b")):
        result = invoke(
            *("bench", "run", "--tasks", str(tasks), "--name", name, "--dir", str(root / name)),
            *("--base-url", fake_llm.base_url, "--model", model, "--index", str(corpus_index), "--quiet"),
        )
        assert result.exit_code == 0, result.output
        assert "3 done, 0 failed, 0 pending" in result.output
    return root


def judge_flags(fake_llm: Any) -> list[str]:
    return ["--judge-model", "judge", "--judge-base-url", fake_llm.base_url]


def test_grade_then_report(benches, fake_llm, tmp_path):
    fake_llm.script = routed(
        ScriptedJudge({FLAW: "not_satisfied", "Cites a source for each claim.": "partially"})
    )
    result = invoke("bench", "grade", "alpha", "--root", str(benches), *judge_flags(fake_llm))
    assert result.exit_code == 0, result.output
    # per task: (4·1 + 2·0.5 + 0) / 6 positive weight = 83.3
    assert "alpha: score (ternary) 83.3 over 3 task(s)" in result.output
    with BenchStore.open(benches / "alpha") as store:
        grades = store.grades()
        meta = store.judge_meta()
        assert meta["model"] == "judge"
        assert (meta["protocol"], meta["mode"], meta["failures"], meta["prompts"]) == (
            "ours",
            "ternary",
            "zero",
            "paper",
        )
    assert len(grades) == 9 and {g.task_id for g in grades} == set(PROMPTS)
    assert not any(g.failed for g in grades)

    asked = len(fake_llm.requests)
    again = invoke("bench", "grade", "alpha", "--root", str(benches), *judge_flags(fake_llm))
    assert "83.3" in again.output and len(fake_llm.requests) == asked  # every verdict came from the cache

    out = tmp_path / "report.html"
    shown = invoke("bench", "report", "alpha", "beta", "--root", str(benches), "--out", str(out))
    assert shown.exit_code == 0, shown.output
    assert "alpha" in shown.output and "beta" in shown.output
    page = out.read_text()
    for figure in ("fig-axis", "fig-cost-score", "fig-steps", "fig-tokens"):
        assert f'id="{figure}"' in page
    assert 'data-bench="alpha" data-field="score"' in page


def test_compare_two_resumes_and_three_are_ranked(benches, fake_llm, corpus_index, tmp_path):
    result = invoke("bench", "compare", "alpha", "beta", "--root", str(benches), *judge_flags(fake_llm))
    assert result.exit_code == 0, result.output
    overall = next(line for line in result.output.splitlines() if "Overall" in line)
    # q1, q2: alpha wins in both orders; q3: the judge picks the first report both times → a tie
    assert re.search(r"Overall\W+2\W+1\W+0\W+0\W+83\.3%", overall), overall
    assert "agreed on 67% of tasks" in result.output
    verdicts = benches / "comparisons" / "alpha-vs-beta.jsonl"
    assert len(verdicts.read_text().splitlines()) == 3

    asked = len(fake_llm.requests)
    again = invoke("bench", "compare", "alpha", "beta", "--root", str(benches), *judge_flags(fake_llm))
    assert len(fake_llm.requests) == asked, "finished comparisons were asked again"
    assert re.search(r"Overall\W+2\W+1\W+0", again.output)

    other = ["--judge-model", "judge-2", "--judge-base-url", fake_llm.base_url]
    second = invoke("bench", "compare", "alpha", "beta", "--root", str(benches), *other)
    assert re.search(r"Overall\W+2\W+1\W+0\W+0\W", second.output)  # judge-2's three, not six
    judges = [json.loads(line)["judge"] for line in verdicts.read_text().splitlines()]
    assert judges == ["llm:judge"] * 3 + ["llm:judge-2"] * 3  # the first judge's verdicts are kept

    tasks = tmp_path / "tasks.jsonl"
    gamma = invoke(
        *("bench", "run", "--tasks", str(tasks), "--name", "gamma", "--dir", str(benches / "gamma")),
        *("--base-url", fake_llm.base_url, "--model", "model-c", "--index", str(corpus_index), "--quiet"),
    )
    assert gamma.exit_code == 0, gamma.output
    ranked = invoke(
        "bench", "compare", "alpha", "beta", "gamma", "--root", str(benches), "--resamples", "200",
        *judge_flags(fake_llm),
    )  # fmt: skip
    assert ranked.exit_code == 0, ranked.output
    assert "Bradley–Terry ratings" in ranked.output
    ratings = dict(re.findall(r"│ (alpha|beta|gamma)\s+│ (\d+)", ranked.output))
    assert int(ratings["alpha"]) > int(ratings["beta"])
    assert int(ratings["alpha"]) > int(ratings["gamma"])


def test_human_verdicts_through_export_and_import(benches, fake_llm, tmp_path):
    out = tmp_path / "review"
    exported = invoke("bench", "export-pairs", "alpha", "beta", "--root", str(benches), "--out", str(out))
    assert exported.exit_code == 0, exported.output
    sheet = (out / "pairs.csv").read_text(encoding="utf-8-sig")
    assert "model-a" in sheet  # the reports themselves, of course
    assert "alpha" not in sheet and "beta" not in sheet  # but not which system wrote them
    rows = list(csv.DictReader(io.StringIO(sheet)))
    key = json.loads((out / "key.json").read_text())
    for row in rows:  # the reviewer prefers beta everywhere
        beta_first = key["pairs"][row["pair_id"]]["report_1"] == "beta"
        row.update({"reviewer": "ann", "overall": "report_1_better" if beta_first else "report_2_better"})
        for dimension in ("information_completeness", "content_depth", "requirement_fitness", "readability"):
            row[dimension] = "1" if beta_first else "2"
    filled = out / "filled.csv"
    with filled.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    human = tmp_path / "human.jsonl"
    imported = invoke(
        "bench", "import-pairs", str(filled), "--key", str(out / "key.json"), "--out", str(human)
    )
    assert imported.exit_code == 0, imported.output
    assert "3 verdict(s)" in imported.output

    fake_llm.requests.clear()
    counted = invoke(
        "bench", "compare", "alpha", "beta", "--root", str(benches), "--source", "human",
        "--verdicts", str(human),
    )  # fmt: skip
    assert counted.exit_code == 0, counted.output
    assert fake_llm.requests == []  # no model was asked
    assert re.search(r"Overall\W+0\W+0\W+3\W+0\W+0\.0%", counted.output), counted.output


def test_a_benchmark_names_the_tasks_done_without_a_cited_report(fake_llm, corpus_index, tmp_path):
    fake_llm.script = lambda request: Reply(content="<answer>An answer that cites nothing.</answer>")
    tasks = write_tasks(tmp_path / "tasks.jsonl", PROMPTS)
    result = invoke(
        *("bench", "run", "--tasks", str(tasks), "--name", "u", "--dir", str(tmp_path / "u")),
        *("--base-url", fake_llm.base_url, "--model", "m", "--index", str(corpus_index), "--quiet"),
    )
    assert result.exit_code == 0, result.output  # done and gradable: such a report scores what it scores
    assert "3 done, 0 failed" in result.output
    listed = ", ".join(f"{task_id} (uncited)" for task_id in PROMPTS)
    assert f"3 task(s) done without a cited report: {listed}" in result.stderr


def test_a_drb_benchmark_is_graded_by_race_and_reported_so(fake_llm, corpus_index, tmp_path):
    from tests.judge.test_grade_benchmarks import shipped_layout
    from tests.judge.test_race import CRITERIA, write_drb_files

    criteria = shipped_layout(write_drb_files(tmp_path), tmp_path / "drb")

    def race_judge(request: dict[str, Any]) -> Reply:
        """Every criterion: the target 6, the reference 4, so each task's RACE is exactly 0.6."""
        text = request["messages"][0]["content"]
        task = "2" if "分析中国" in text else "1"
        scores = {
            dimension: [{"criterion": n, "article_1": 6, "article_2": 4} for n in range(1, len(items) + 1)]
            for dimension, items in CRITERIA[task].items()
        }
        return Reply(content=json.dumps(scores))

    fake_llm.script = routed(race_judge)
    root = tmp_path / "bench"
    ran = invoke(
        *("bench", "run", "--tasks", str(criteria), "--name", "drb", "--dir", str(root / "drb")),
        *("--base-url", fake_llm.base_url, "--model", "model-a", "--index", str(corpus_index), "--quiet"),
    )
    assert ran.exit_code == 0, ran.output
    result = invoke("bench", "grade", "drb", "--root", str(root), *judge_flags(fake_llm))
    assert result.exit_code == 0, result.output
    assert "drb: protocol: deepresearchbench (RACE" in result.output
    assert "drb: score (RACE) 60.0 over 2 task(s); 0 failed gradings" in result.output
    summary = json.loads((root / "drb" / "race-summary.json").read_text(encoding="utf-8"))
    assert summary["overall"] == pytest.approx(60.0, abs=1e-9)
    with BenchStore.open(root / "drb") as store:
        assert store.judge_meta()["protocol"] == "deepresearchbench" and store.grades() == []

    shown = invoke("bench", "report", "drb", "--root", str(root), "--out", str(tmp_path / "r.html"))
    assert shown.exit_code == 0, shown.output
    assert "score: race" in shown.output and "60.0" in shown.output


def test_grading_that_scores_nothing_exits_1(benches, fake_llm):
    fake_llm.script = routed(lambda request: Reply(status=400, body='{"error": {"message": "bad request"}}'))
    result = runner.invoke(
        app,
        ["bench", "grade", "alpha", "--root", str(benches), *judge_flags(fake_llm)],
        env={"DEEPRESEARCH_MAX_RETRIES": "0", "COLUMNS": "220"},
    )
    assert result.exit_code == 1, result.output
    assert "alpha: score (ternary) 0.0 over 3 task(s); 9 failed gradings" in result.output
    assert "error: no task could be scored in alpha" in result.output
