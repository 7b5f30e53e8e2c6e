"""The benchmark report: numbers read back from a store match sums worked out by hand, and the HTML page
carries the figures, the same summary numbers, and the failures, with everything from the store escaped."""

from __future__ import annotations

from pathlib import Path

import lxml.html
import pytest
from rich.console import Console

from deepresearch.bench.report import (
    BenchStats,
    FailedTask,
    bench_stats,
    stats_table,
    write_html_report,
)
from deepresearch.bench.store import BenchStore, TaskRow
from deepresearch.errors import ConfigError
from deepresearch.judge.records import JudgeRecord

EXPLICIT = "Explicit Criteria"
COMMUNICATION = "Communication Quality"
ERROR = "timeout after <b>600 s</b> & gave up"
SCORE_FIGURES = ("fig-axis", "fig-domain", "fig-cost-score")
ALL_FIGURES = (*SCORE_FIGURES, "fig-steps", "fig-tokens")


def grade(
    task_id: str, criterion: str, axis: str, weight: float, verdict: str | None, **extra: object
) -> JudgeRecord:
    score = {"satisfied": 1.0, "partially": 0.5, "not_satisfied": 0.0}.get(verdict or "")
    return JudgeRecord.model_validate(
        {
            "task_id": task_id,
            "criterion": criterion,
            "axis": axis,
            "weight": weight,
            "role": "negative" if weight < 0 else "explicit",
            "verdict": verdict,
            "score": score,
            "failed": verdict is None,
            "error": "judge unreachable" if verdict is None else None,
            "judge_model": "judge-1",
            **extra,
        }
    )


def done(task_id: str, domain: str, steps: int, prompt_tokens: int, cost: float, wall: float) -> TaskRow:
    return TaskRow(
        task_id=task_id,
        prompt=f"question {task_id}?",
        domain=domain,
        status="done",
        run_dir=f"runs/{task_id}",
        report_path=f"runs/{task_id}/report.md",
        steps=steps,
        prompt_tokens=prompt_tokens,
        completion_tokens=prompt_tokens // 5,
        cost_usd=cost,
        wall_s=wall,
        attempts=1,
    )


@pytest.fixture
def alpha(tmp_path: Path) -> Path:
    """Three finished (graded), one failed, one pending task; two axes and domains, a flaw, a failed grade."""
    bench_dir = tmp_path / "alpha"
    with BenchStore.open(bench_dir) as store:
        store.set_meta("name", "alpha")
        store.set_meta("settings", {"model": "step-dr-mini", "max_steps": 30})
        store.upsert_task(done("t1", "Science", steps=6, prompt_tokens=1000, cost=0.10, wall=30.0))
        store.upsert_task(done("t2", "Finance", steps=10, prompt_tokens=3000, cost=0.20, wall=90.0))
        store.upsert_task(done("t3", "Science", steps=8, prompt_tokens=2000, cost=0.60, wall=60.0))
        store.upsert_task(
            TaskRow(
                task_id="t4",
                prompt="question t4?",
                domain="Finance",
                status="failed",
                steps=4,
                prompt_tokens=900,
                cost_usd=0.05,
                wall_s=12.0,
                error=ERROR,
                attempts=3,
            )
        )
        store.upsert_task(TaskRow(task_id="t5", prompt="question t5?", domain="Science"))
        # t1: (4·1 + 2·0.5 − 2·1) / 6 = 0.5 — the flaw is present and subtracts
        store.replace_grades(
            "t1",
            [
                grade("t1", "answers the question", EXPLICIT, 4.0, "satisfied"),
                grade("t1", "is well organised", COMMUNICATION, 2.0, "partially"),
                grade("t1", "pads with filler", COMMUNICATION, -2.0, "satisfied"),
            ],
        )
        # t2: (4·0 + 2·1 + 3·0) / 9 = 2/9 — the failed record is worth 0, its weight kept (official)
        store.replace_grades(
            "t2",
            [
                grade("t2", "answers the question", EXPLICIT, 4.0, "not_satisfied"),
                grade("t2", "is well organised", COMMUNICATION, 2.0, "satisfied"),
                grade("t2", "cites filings", EXPLICIT, 3.0, None),
            ],
        )
        # t3: 6 / 6 = 1
        store.replace_grades(
            "t3",
            [
                grade("t3", "answers the question", EXPLICIT, 4.0, "satisfied"),
                grade("t3", "is well organised", COMMUNICATION, 2.0, "satisfied"),
            ],
        )
        store.set_judge_meta({"model": "judge-1", "trials": 1})
    return bench_dir


@pytest.fixture
def beta(tmp_path: Path) -> Path:
    """Two finished tasks and no grades at all."""
    bench_dir = tmp_path / "beta"
    with BenchStore.open(bench_dir) as store:
        store.upsert_task(done("b1", "Science", steps=3, prompt_tokens=500, cost=0.04, wall=10.0))
        store.upsert_task(done("b2", "Finance", steps=5, prompt_tokens=1500, cost=0.06, wall=20.0))
    return bench_dir


def test_bench_stats_matches_hand_computed_numbers(alpha: Path) -> None:
    stats = bench_stats(alpha)

    assert (stats.name, stats.model, stats.mode) == ("alpha", "step-dr-mini", "ternary")
    assert stats.counts == {"done": 3, "running": 0, "failed": 1, "pending": 1}
    assert stats.tasks == 5
    assert stats.graded == 3
    assert stats.score == pytest.approx(100 * (0.5 + 2 / 9 + 1.0) / 3)  # 57.4
    assert stats.task_scores == pytest.approx((50.0, 200 / 9, 100.0))
    # Explicit: (4 + 0 + 0 + 4) / (4 + 4 + 3 + 4); Communication: (1 + 2 + 2 − 2) / 6
    assert stats.axis_scores == pytest.approx({COMMUNICATION: 50.0, EXPLICIT: 800 / 15})
    assert stats.domain_scores == pytest.approx({"Finance": 200 / 9, "Science": 75.0})
    assert stats.cost_per_report == pytest.approx(0.30)
    assert stats.median_cost_per_report == pytest.approx(0.20)
    assert stats.total_cost == pytest.approx(0.95)  # the failed task's 0.05 counts
    assert stats.mean_steps == pytest.approx(8.0)
    assert stats.mean_tokens == pytest.approx(2400.0)  # 1200, 3600, 2400
    assert stats.mean_wall_s == pytest.approx(60.0)
    assert stats.steps == (6, 10, 8)
    assert stats.tokens == (1200, 3600, 2400)
    assert stats.costs == pytest.approx((0.10, 0.20, 0.60))
    assert stats.failed == (FailedTask("t4", ERROR, 3),)
    assert stats.grading_failures == 1
    assert stats.unscored == ()
    assert stats.judge_meta == {"model": "judge-1", "trials": 1}


def test_binary_mode_drops_partial_credit(alpha: Path) -> None:
    stats = bench_stats(alpha, mode="binary")

    # t1 loses the half point: (4 − 2) / 6 = 1/3; t2 and t3 are unchanged
    assert stats.task_scores == pytest.approx((100 / 3, 200 / 9, 100.0))
    assert stats.score == pytest.approx(100 * (1 / 3 + 2 / 9 + 1.0) / 3)
    assert stats.axis_scores[COMMUNICATION] == pytest.approx(100 * (0 + 2 + 2 - 2) / 6)


def test_bench_without_grades_has_no_scores(beta: Path) -> None:
    stats = bench_stats(beta)

    assert stats.name == "beta"
    assert stats.model == ""
    assert (stats.graded, stats.score, stats.axis_scores, stats.domain_scores) == (0, None, {}, {})
    assert stats.cost_per_report == pytest.approx(0.05)
    assert stats.steps == (3, 5)
    assert stats.failed == ()


def test_unscorable_task_is_listed_not_counted(tmp_path: Path) -> None:
    bench_dir = tmp_path / "gamma"
    with BenchStore.open(bench_dir) as store:
        store.upsert_task(done("g1", "Science", steps=2, prompt_tokens=100, cost=0.01, wall=1.0))
        store.upsert_task(done("g2", "Science", steps=2, prompt_tokens=100, cost=0.01, wall=1.0))
        store.replace_grades("g1", [grade("g1", "answers", EXPLICIT, 2.0, "partially")])
        store.replace_grades("g2", [grade("g2", "pads with filler", EXPLICIT, -2.0, "satisfied")])

    stats = bench_stats(bench_dir)

    assert stats.graded == 1
    assert stats.score == pytest.approx(50.0)
    assert stats.domain_scores == pytest.approx({"Science": 50.0})
    assert [task_id for task_id, _ in stats.unscored] == ["g2"]
    assert "no positive-weight rubric" in stats.unscored[0][1]
    assert stats.grading_failures == 0


def test_a_task_whose_gradings_all_failed_scores_0_and_stays_in_the_mean(tmp_path: Path) -> None:
    bench_dir = tmp_path / "epsilon"
    with BenchStore.open(bench_dir) as store:
        store.upsert_task(done("e1", "Science", steps=2, prompt_tokens=100, cost=0.01, wall=1.0))
        store.upsert_task(done("e2", "Science", steps=2, prompt_tokens=100, cost=0.01, wall=1.0))
        store.replace_grades("e1", [grade("e1", "answers", EXPLICIT, 2.0, "partially")])
        store.replace_grades("e2", [grade("e2", "answers", EXPLICIT, 2.0, None)])

    stats = bench_stats(bench_dir)

    # e1 0.5, e2 0 (its only requirement failed to grade: worth 0, weight kept) → 25
    assert stats.graded == 2 and stats.unscored == () and stats.grading_failures == 1
    assert stats.task_scores == pytest.approx((50.0, 0.0))
    assert stats.score == pytest.approx(25.0)
    assert stats.domain_scores == pytest.approx({"Science": 25.0})


def test_bench_whose_grades_all_failed_says_so(tmp_path: Path) -> None:
    bench_dir = tmp_path / "delta"
    with BenchStore.open(bench_dir) as store:
        store.upsert_task(done("d1", "Science", steps=2, prompt_tokens=100, cost=0.01, wall=1.0))
        store.replace_grades("d1", [grade("d1", "pads with filler", EXPLICIT, -2.0, None)])
    stats = bench_stats(bench_dir)
    assert (stats.graded, stats.score, stats.grading_failures) == (0, None, 1)

    page = lxml.html.fromstring(write_html_report([stats], tmp_path / "r.html").read_text(encoding="utf-8"))

    (note,) = page.xpath('//section[@id="fig-axis-missing"]/p[@class="no-data"]')
    assert note.text_content() == "graded but no task could be scored (see Failures): delta"
    (unscored,) = page.xpath('//div[@data-bench="delta"]//ul[@class="unscored"]/li')
    assert unscored.text_content().startswith("d1: task 'd1' has no positive-weight rubric")


def test_missing_bench_is_a_config_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no benchmark results"):
        bench_stats(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_stats_table_shows_one_row_per_bench(alpha: Path, beta: Path) -> None:
    console = Console(record=True, width=200)
    console.print(stats_table([bench_stats(alpha), bench_stats(beta)]))
    text = console.export_text()

    alpha_line = next(line for line in text.splitlines() if "alpha" in line)
    beta_line = next(line for line in text.splitlines() if "beta" in line)
    for expected in ("step-dr-mini", "57.4%", "$0.3000", "$0.2000", "$0.9500", "8.0", "2,400", "60.0 s"):
        assert expected in alpha_line
    for expected in ("n/a", "$0.0500", "$0.1000", "4.0", "1,200", "15.0 s"):
        assert expected in beta_line
    assert "cost/report" in text and "benchmarks (score: ternary)" in text


def summary_cells(page: lxml.html.HtmlElement, bench: str) -> dict[str, tuple[str, str]]:
    """(data-value, shown text) per field of one benchmark's summary row."""
    cells = page.xpath('//table[@id="summary-table"]//td[@data-bench=$bench]', bench=bench)
    return {td.get("data-field"): (td.get("data-value"), td.text_content()) for td in cells}


def test_html_report_has_figures_summary_and_escaped_failures(
    alpha: Path, beta: Path, tmp_path: Path
) -> None:
    stats = [bench_stats(alpha), bench_stats(beta)]
    out = write_html_report(stats, tmp_path / "out" / "report.html")

    raw = out.read_text(encoding="utf-8")
    page = lxml.html.fromstring(raw)
    for fig_id in ALL_FIGURES:
        (figure,) = page.xpath(f'//figure[@id="{fig_id}"]')
        assert "<svg" in lxml.html.tostring(figure, encoding="unicode")
        assert figure.xpath("./figcaption")
    # beta is left out of the score figures, and the page says why
    axis_note = page.xpath('//figure[@id="fig-axis"]/p[@class="no-data"]')[0].text_content()
    assert axis_note == "no grades yet: run deepresearch bench grade beta"

    alpha_cells = summary_cells(page, "alpha")
    a = stats[0]
    assert a.score is not None and a.cost_per_report is not None
    assert float(alpha_cells["score"][0]) == pytest.approx(a.score)
    assert alpha_cells["score"][1] == "57.4%"
    assert float(alpha_cells["cost_per_report"][0]) == pytest.approx(0.30)
    assert float(alpha_cells["total_cost"][0]) == pytest.approx(0.95)
    assert float(alpha_cells["tokens"][0]) == pytest.approx(2400.0)
    assert (alpha_cells["done"], alpha_cells["failed"], alpha_cells["pending"]) == (
        ("3", "3"),
        ("1", "1"),
        ("1", "1"),
    )
    assert alpha_cells["model"] == ("step-dr-mini", "step-dr-mini")
    assert summary_cells(page, "beta")["score"] == ("", "n/a")

    (failed_row,) = page.xpath(
        '//div[@data-bench="alpha"]//table[@class="failed-tasks"]//tr[@data-task="t4"]'
    )
    assert [td.text_content() for td in failed_row.xpath("./td")] == ["t4", "3", ERROR]
    assert "&lt;b&gt;600 s&lt;/b&gt; &amp; gave up" in raw and "<b>600 s</b>" not in raw
    assert "No failed tasks." in page.xpath('//div[@data-bench="beta"]')[0].text_content()
    assert "Rubrics whose grading failed: 1." in page.xpath('//div[@data-bench="alpha"]')[0].text_content()


def test_html_report_without_grades_explains_missing_score_figures(beta: Path, tmp_path: Path) -> None:
    out = write_html_report([bench_stats(beta)], tmp_path / "report.html")
    page = lxml.html.fromstring(out.read_text(encoding="utf-8"))

    for fig_id in SCORE_FIGURES:
        assert not page.xpath(f'//figure[@id="{fig_id}"]')
        (note,) = page.xpath(f'//section[@id="{fig_id}-missing"]/p[@class="no-data"]')
        assert "no grades yet: run deepresearch bench grade beta" in note.text_content()
    for fig_id in ("fig-steps", "fig-tokens"):
        assert page.xpath(f'//figure[@id="{fig_id}"]//*[local-name()="svg"]')


def test_html_report_is_deterministic_and_shows_names_as_written(tmp_path: Path) -> None:
    name, domain = 'x<y>&"$z', "<i>Law</i> $5 to $10"
    bench_dir = tmp_path / name
    with BenchStore.open(bench_dir) as store:
        store.upsert_task(done("t1", domain, steps=3, prompt_tokens=100, cost=0.02, wall=2.0))
        store.replace_grades("t1", [grade("t1", "answers", EXPLICIT, 1.0, "satisfied")])
    stats = [bench_stats(bench_dir)]

    first = write_html_report(stats, tmp_path / "one.html").read_bytes()
    second = write_html_report(stats, tmp_path / "two.html").read_bytes()

    assert first == second
    assert len(first) < 400_000
    text = first.decode("utf-8")
    assert "<i>" not in text and name not in text
    page = lxml.html.fromstring(text)
    assert summary_cells(page, name)["score"] == ("100.0", "100.0%")
    # drawn as text, not escaped into markup nor parsed as mathtext between the two "$"
    labels = {t.text_content() for t in page.xpath('//figure[@id="fig-domain"]//*[local-name()="text"]')}
    assert {domain, name} <= labels


def test_html_report_needs_a_bench(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no benchmarks"):
        write_html_report(list[BenchStats](), tmp_path / "empty.html")
    assert not (tmp_path / "empty.html").exists()
