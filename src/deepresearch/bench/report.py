"""The benchmark report: one ``BenchStats`` per benchmark, a terminal table, and a self-contained HTML page.

``deepresearch bench report NAME [NAME…]`` reads each benchmark's store once (``bench_stats``), prints
``stats_table`` and writes ``write_html_report``: the summary numbers, the score per axis and per domain,
cost against score (the Step-DeepResearch report's Figure 1a: one point per system), the steps and tokens
each task took, and what failed. Everything takes a *list* of stats so several systems sit side by side.

Contracts:
- Reading is pure: the store is opened, read and closed; nothing is written, and a benchmark without a
  store is a ``ConfigError`` rather than a new empty one.
- Scores come from ``judge.scoring`` only, so the report and ``judge grade`` print the same numbers. A
  task whose grades cannot be scored (e.g. every positive rubric failed to grade) is listed as unscored,
  never counted as 0.
- Cost, steps, tokens and wall time per report are over *finished* (``done``) tasks; the total cost also
  counts what failed attempts spent.
- The HTML needs nothing beside it: figures are inline SVG drawn on ``matplotlib.figure.Figure`` objects
  (no pyplot state, no GUI backend), with fixed ids and hash salt so the same store gives the same file.
  A figure without data is replaced by a sentence saying why. The page is a Jinja template with
  autoescaping, so all text from the store is escaped.
"""

from __future__ import annotations

import io
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from markupsafe import Markup

from deepresearch.bench.grading import RACE_SUMMARY
from deepresearch.bench.store import STORE_FILE, BenchStore, TaskRow, TaskStatus
from deepresearch.errors import ConfigError
from deepresearch.judge.protocols import RACE
from deepresearch.judge.records import JudgeRecord
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.judge.scoring import (
    Failures,
    ScoreMode,
    TaskScore,
    benchmark_score,
    by_axis,
    by_domain,
    task_score,
)
from deepresearch.templates import render_page

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.table import Table

STATUSES: tuple[TaskStatus, ...] = ("done", "running", "failed", "pending")


@dataclass(frozen=True)
class FailedTask:
    task_id: str
    error: str
    attempts: int


@dataclass(frozen=True)
class BenchStats:
    """What one benchmark's store says, reduced to the numbers the table and the plots show."""

    name: str
    model: str
    """The agent's model from the recorded settings; empty when the store has none."""
    mode: ScoreMode | Literal["race"]
    """How the scores were computed: the score mode of the rubric verdicts, or DeepResearch Bench's RACE."""
    counts: dict[TaskStatus, int]
    graded: int
    """Tasks with a score (at least one positive-weight rubric)."""
    score: float | None
    """``benchmark_score`` (mean task score × 100) over the graded tasks; None when nothing is graded."""
    axis_scores: dict[str, float | None]
    """Per-axis compliance × 100, pooled over tasks; None for an axis without graded positive weight."""
    domain_scores: dict[str, float]
    """``benchmark_score`` per task domain."""
    cost_per_report: float | None
    """Mean ``cost_usd`` of the finished tasks; None when none finished."""
    median_cost_per_report: float | None
    total_cost: float
    """Every task's cost, failed attempts included."""
    mean_steps: float | None
    mean_tokens: float | None
    """Mean prompt + completion tokens of the finished tasks."""
    mean_wall_s: float | None
    steps: tuple[int, ...]
    tokens: tuple[int, ...]
    costs: tuple[float, ...]
    task_scores: tuple[float, ...]
    """Each graded task's score × 100, in task order."""
    failed: tuple[FailedTask, ...]
    grading_failures: int
    """Rubric records whose grading failed (counted 0 with their weight kept: the official accounting)."""
    unscored: tuple[tuple[str, str], ...]
    """(task id, why) for tasks with grades that could not be scored."""
    judge_meta: dict[str, Any]

    @property
    def tasks(self) -> int:
        return sum(self.counts.values())


def bench_stats(bench_dir: Path, *, mode: ScoreMode | None = None) -> BenchStats:
    """Read the benchmark in ``bench_dir`` and compute its report numbers the way it was graded (the
    protocol recorded by ``bench grade``: its mode and failure accounting, or RACE), or under ``mode``."""
    if not (bench_dir / STORE_FILE).is_file():
        raise ConfigError(f"no benchmark results in {bench_dir} (expected {STORE_FILE}); run it first")
    with BenchStore.open(bench_dir) as store:
        meta, rows, grades, judge_meta = store.meta(), store.tasks(), store.grades(), store.judge_meta()
    race = _race_summary(bench_dir) if judge_meta.get("protocol") == RACE and mode is None else None
    failures: Failures = judge_meta.get("failures", "zero")
    mode = mode or judge_meta.get("mode", "ternary")
    scores, unscored = _score(grades, mode, failures)
    scored_ids = {s.task_id for s in scores}
    scored_records = [r for r in grades if r.task_id in scored_ids]
    done = [row for row in rows if row.status == "done"]
    costs = tuple(row.cost_usd for row in done)
    tokens = tuple(row.prompt_tokens + row.completion_tokens for row in done)
    settings = meta.get("settings")
    stats = BenchStats(
        name=bench_dir.name or str(meta.get("name") or bench_dir.resolve().name),
        model=str(settings.get("model", "")) if isinstance(settings, dict) else "",
        mode=mode,
        counts={status: sum(1 for row in rows if row.status == status) for status in STATUSES},
        graded=len(scores),
        score=benchmark_score(scores) if scores else None,
        axis_scores={
            axis: None if a.compliance is None else 100.0 * a.compliance
            for axis, a in by_axis(scored_records, mode=mode, failures=failures).items()
        },
        domain_scores={d: s.score for d, s in by_domain(_tasks_of(rows, scored_records), scores).items()},
        cost_per_report=_mean(costs),
        median_cost_per_report=statistics.median(costs) if costs else None,
        total_cost=sum(row.cost_usd for row in rows),
        mean_steps=_mean([row.steps for row in done]),
        mean_tokens=_mean(tokens),
        mean_wall_s=_mean([row.wall_s for row in done]),
        steps=tuple(row.steps for row in done),
        tokens=tokens,
        costs=costs,
        task_scores=tuple(100.0 * s.score for s in scores),
        failed=tuple(FailedTask(r.task_id, r.error, r.attempts) for r in rows if r.status == "failed"),
        grading_failures=sum(1 for r in grades if r.failed or r.verdict is None),
        unscored=tuple(unscored),
        judge_meta=judge_meta,
    )
    return stats if race is None else _with_race(stats, race)


def _race_summary(bench_dir: Path) -> dict[str, Any]:
    path = bench_dir / RACE_SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: the RACE grading cannot be read ({exc}); grade it again") from None
    if not isinstance(summary, dict) or "per_task" not in summary:
        raise ConfigError(f"{path}: not a RACE summary; grade the benchmark again")
    return summary


def _with_race(stats: BenchStats, race: dict[str, Any]) -> BenchStats:
    """``stats`` with its scores taken from a RACE grading (ratios × 100, per task and dimension)."""
    per_task = race["per_task"]
    return replace(
        stats,
        mode="race",
        graded=race["tasks_scored"],
        score=race["overall"],
        axis_scores={dimension: d["score"] for dimension, d in race["per_dimension"].items()},
        domain_scores={domain: d["score"] for domain, d in race["per_domain"].items()},
        task_scores=tuple(task["score"] for task in per_task.values() if task["score"] is not None),
        grading_failures=race["failed"]["gradings"],
        unscored=tuple(race["failed"]["unscored_tasks"].items()),
    )


def _score(
    grades: list[JudgeRecord], mode: ScoreMode, failures: Failures
) -> tuple[list[TaskScore], list[tuple[str, str]]]:
    """Score each graded task; one that cannot be scored is set aside with the reason, not dropped."""
    scores: list[TaskScore] = []
    unscored: list[tuple[str, str]] = []
    groups: dict[str, list[JudgeRecord]] = {}
    for record in grades:
        groups.setdefault(record.task_id, []).append(record)
    for task_id, records in groups.items():
        try:
            scores.append(task_score(records, mode=mode, failures=failures))
        except ValueError as exc:
            unscored.append((task_id, str(exc)))
    return scores, unscored


def _tasks_of(rows: list[TaskRow], records: list[JudgeRecord]) -> list[Task]:
    """Judge tasks for ``by_domain``, rebuilt from the rows (domain) and the graded rubrics."""
    row_of = {row.task_id: row for row in rows}
    rubrics: dict[str, list[Rubric]] = {}
    for r in records:
        rubric = Rubric(criterion=r.criterion, weight=r.weight, axis=r.axis, role=r.role, fatal=r.fatal)
        rubrics.setdefault(r.task_id, []).append(rubric)
    tasks = []
    for task_id, task_rubrics in rubrics.items():
        row = row_of.get(task_id)
        prompt, domain = (row.prompt, row.domain) if row is not None else ("", "")
        tasks.append(Task(task_id=task_id, prompt=prompt, domain=domain, rubrics=task_rubrics))
    return tasks


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


# --- the summary, shared by the terminal table and the HTML table


@dataclass(frozen=True)
class _Cell:
    field: str
    value: str | int | float | None
    """The raw number (or text) behind ``text``; HTML keeps it in ``data-value``."""
    text: str


_HEADERS: dict[str, str] = {
    "name": "benchmark",
    "model": "model",
    "done": "done",
    "running": "running",
    "failed": "failed",
    "pending": "pending",
    "graded": "graded",
    "score": "score",
    "cost_per_report": "cost/report",
    "median_cost": "median cost",
    "total_cost": "total cost",
    "steps": "steps",
    "tokens": "tokens",
    "wall_s": "wall",
}


def _cells(stats: BenchStats) -> list[_Cell]:
    """The summary row of one benchmark; both tables print exactly these."""
    counts = [_Cell(status, stats.counts[status], str(stats.counts[status])) for status in STATUSES]
    return [
        _Cell("name", stats.name, stats.name),
        _Cell("model", stats.model, stats.model or "n/a"),
        *counts,
        _Cell("graded", stats.graded, str(stats.graded)),
        _Cell("score", stats.score, _fmt(stats.score, "{:.1f}%")),
        _Cell("cost_per_report", stats.cost_per_report, _usd(stats.cost_per_report)),
        _Cell("median_cost", stats.median_cost_per_report, _usd(stats.median_cost_per_report)),
        _Cell("total_cost", stats.total_cost, _usd(stats.total_cost)),
        _Cell("steps", stats.mean_steps, _fmt(stats.mean_steps, "{:.1f}")),
        _Cell("tokens", stats.mean_tokens, _fmt(stats.mean_tokens, "{:,.0f}")),
        _Cell("wall_s", stats.mean_wall_s, _fmt(stats.mean_wall_s, "{:.1f} s")),
    ]


def _fmt(value: float | None, template: str) -> str:
    return "n/a" if value is None else template.format(value)


def _usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def _modes(stats_list: Sequence[BenchStats]) -> str:
    """How the benchmarks were scored, each way once (benchmarks graded differently are labelled so)."""
    return ", ".join(dict.fromkeys(s.mode for s in stats_list)) or "ternary"


def stats_table(stats_list: Sequence[BenchStats]) -> Table:
    """A rich table with one row per benchmark (means are over finished reports)."""
    from rich.table import Table

    table = Table(*_HEADERS.values(), title=f"benchmarks (score: {_modes(stats_list)})")
    for stats in stats_list:
        table.add_row(*(cell.text for cell in _cells(stats)))
    return table


# --- figures


@dataclass(frozen=True)
class _Panel:
    """One figure slot: the SVG when there is something to draw, else the reason there is not."""

    fig_id: str
    caption: str
    svg: Markup | None
    note: str = ""
    """Why the figure is missing, or which benchmarks it leaves out."""


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "the HTML report draws its plots with matplotlib, in the optional extra 'bench' "
            "(pip install 'deepresearch[bench]')"
        ) from exc


def _svg(fig: Figure, fig_id: str) -> Markup:
    """The figure as an ``<svg>`` element; the salt and id are fixed so the output is reproducible."""
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context({"svg.hashsalt": fig_id, "svg.id": f"{fig_id}-svg", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return Markup(text[text.index("<svg") :])  # matplotlib escapes the text it draws


def _new_figure() -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(8, 4), layout="constrained")


def _label(text: str) -> str:
    """Plot text shown as written: a ``$`` would start mathtext, a leading ``_`` hides a legend entry."""
    text = text.replace("$", r"\$")
    return f" {text}" if text.startswith("_") else text


def _why_unscored(unscored: Sequence[BenchStats]) -> str:
    """Why these benchmarks have no score: never graded, or graded but nothing could be scored."""
    never = [s.name for s in unscored if not s.unscored]
    notes = (
        ["no grades yet: run " + "; ".join(f"deepresearch bench grade {n}" for n in never)] if never else []
    )
    if len(never) < len(unscored):
        names = ", ".join(s.name for s in unscored if s.unscored)
        notes.append(f"graded but no task could be scored (see Failures): {names}")
    return "; ".join(notes)


def _score_panel(
    stats_list: Sequence[BenchStats],
    fig_id: str,
    what: str,
    get: Callable[[BenchStats], Mapping[str, float | None]],
) -> _Panel:
    """Grouped bars: one group per axis (or domain), one bar per benchmark with grades."""
    caption = f"Score per {what} (%), one bar per benchmark."
    shown = [s for s in stats_list if get(s)]
    missing = [s for s in stats_list if not get(s)]
    if not shown:
        return _Panel(fig_id, caption, None, _why_unscored(missing))
    groups = sorted({key for s in shown for key in get(s)})
    fig = _new_figure()
    ax = fig.add_subplot()
    width = 0.8 / len(shown)
    for i, stats in enumerate(shown):
        values = [get(stats).get(g) for g in groups]
        heights = [float("nan") if v is None else v for v in values]
        ax.bar(
            [x + (i - (len(shown) - 1) / 2) * width for x in range(len(groups))],
            heights,
            width,
            label=_label(stats.name),
        )
    ax.set_xticks(range(len(groups)), [_label(g) or "(none)" for g in groups], rotation=20, ha="right")
    ax.set_ylabel("score (%)")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend()
    return _Panel(fig_id, caption, _svg(fig, fig_id), _why_unscored(missing))


def _cost_score_panel(stats_list: Sequence[BenchStats]) -> _Panel:
    """Cost against score, one labelled point per benchmark (Step-DeepResearch, Figure 1a)."""
    fig_id, caption = "fig-cost-score", "Score (%) against mean cost per finished report (USD)."
    points = [
        (s.name, s.cost_per_report, s.score)
        for s in stats_list
        if s.score is not None and s.cost_per_report is not None
    ]
    unfinished = [s.name for s in stats_list if s.cost_per_report is None]
    notes = [_why_unscored([s for s in stats_list if s.score is None])]
    notes += [f"no finished reports yet: {', '.join(unfinished)}"] if unfinished else []
    if not points:
        return _Panel(fig_id, caption, None, "; ".join(n for n in notes if n))
    fig = _new_figure()
    ax = fig.add_subplot()
    for name, cost, score in points:
        ax.scatter([cost], [score], s=40)
        ax.annotate(_label(name), (cost, score), xytext=(5, 5), textcoords="offset points")
    ax.set_xlabel("cost per report (USD)")
    ax.set_ylabel("score (%)")
    # the whole frame from zero, as in the report's figure: autoscaling one point around itself
    # would make any two systems look far apart
    costs, scores = [cost for _, cost, _ in points], [score for _, _, score in points]
    ax.set_xlim(0, max(max(costs) * 1.25, 1e-4))
    ax.set_ylim(min(0.0, min(scores) - 5), max(100.0, max(scores) + 5))
    return _Panel(fig_id, caption, _svg(fig, fig_id), "; ".join(n for n in notes if n))


def _box_panel(
    stats_list: Sequence[BenchStats], fig_id: str, what: str, get: Callable[[BenchStats], Sequence[float]]
) -> _Panel:
    """Box plots of a per-task quantity over the finished tasks, one box per benchmark."""
    caption = f"{what.capitalize()} per finished task, one box per benchmark (the triangle is the mean)."
    shown = [s for s in stats_list if get(s)]
    missing = [s.name for s in stats_list if not get(s)]
    note = f"no finished reports yet: {', '.join(missing)}" if missing else ""
    if not shown:
        return _Panel(fig_id, caption, None, note)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.boxplot([list(get(s)) for s in shown], tick_labels=[_label(s.name) for s in shown], showmeans=True)
    ax.set_ylabel(what)
    return _Panel(fig_id, caption, _svg(fig, fig_id), note)


def _panels(stats_list: Sequence[BenchStats]) -> list[_Panel]:
    return [
        _score_panel(stats_list, "fig-axis", "axis", lambda s: s.axis_scores),
        _score_panel(stats_list, "fig-domain", "domain", lambda s: s.domain_scores),
        _cost_score_panel(stats_list),
        _box_panel(stats_list, "fig-steps", "steps", lambda s: s.steps),
        _box_panel(stats_list, "fig-tokens", "tokens", lambda s: s.tokens),
    ]


# --- HTML


def write_html_report(stats_list: Sequence[BenchStats], out_path: Path) -> Path:
    """Write the self-contained HTML report of ``stats_list`` to ``out_path`` and return the path.

    The page is ``bench/pages/report.html``; it escapes every string it is given, and only the SVG
    figures (whose text matplotlib escapes) go in as markup."""
    if not stats_list:
        raise ValueError("no benchmarks to report on")
    _require_matplotlib()
    page = render_page(
        "deepresearch.bench",
        "bench-report.html",
        {
            "names": ", ".join(s.name for s in stats_list),
            "mode": _modes(stats_list),
            "headers": list(_HEADERS.values()),
            "rows": [{"name": stats.name, "cells": _cells(stats)} for stats in stats_list],
            "panels": _panels(stats_list),
            "failures": [_failures(stats) for stats in stats_list],
        },
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path


def _failures(stats: BenchStats) -> dict[str, Any]:
    """One benchmark's failed tasks, unscored tasks, grading failures and the judge that graded it."""
    return {
        "name": stats.name,
        "grading_failures": stats.grading_failures,
        "judge": [(key, json.dumps(value, ensure_ascii=False)) for key, value in stats.judge_meta.items()],
        "failed": stats.failed,
        "unscored": stats.unscored,
    }
