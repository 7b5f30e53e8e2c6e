"""Grade a benchmark's finished reports with the Checklist judge and keep the records in its store.

Every call grades every finished report again, through the judge's verdict cache: a report or rubric
that did not change costs no request, one that did is graded afresh, and a changed judge model or
prompt misses the cache as it should. That is simpler and safer than tracking which grades are stale.
Each task's records replace its old ones in one transaction as soon as it is graded, so an interrupted
grading keeps what it finished. Tasks without rubrics (an ADR-Bench task set, say) are not graded here:
compare them pairwise instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.bench.store import BenchStore
from deepresearch.config import Settings, default_cache_dir
from deepresearch.errors import ConfigError
from deepresearch.judge.loaders import load_tasks
from deepresearch.judge.scoring import ScoreMode, TaskScore, benchmark_score, task_score


@dataclass
class BenchGrades:
    """What one ``grade_benchmark`` did."""

    scores: list[TaskScore] = field(default_factory=list)
    graded: list[str] = field(default_factory=list)
    not_finished: list[str] = field(default_factory=list)
    """Tasks without a finished report (pending, running or failed): not graded."""
    without_rubrics: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    benchmark: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    calls: int = 0


async def grade_benchmark(
    settings: Settings,
    bench_dir: Path,
    *,
    tasks_path: Path | None = None,
    trials: int = 1,
    batch: int = 1,
    mode: ScoreMode = "ternary",
    max_report_tokens: int = 100_000,
    cache: Path | None = None,
    on_task: Callable[[str, TaskScore | None, float], None] | None = None,
) -> BenchGrades:
    """Grade the finished reports of the benchmark in ``bench_dir`` against its tasks' rubrics.

    ``tasks_path`` defaults to the task file the benchmark was run with.
    """
    from deepresearch.judge.cache import JudgeCache
    from deepresearch.judge.commands import judge_client
    from deepresearch.judge.grader import Judge

    if not (bench_dir / "results.sqlite").is_file():
        raise ConfigError(f"{bench_dir}: no benchmark there (run deepresearch bench run first)")
    with BenchStore.open(bench_dir) as store:
        source = tasks_path or _recorded_tasks_file(store, bench_dir)
        loaded = load_tasks(source)
        outcome = BenchGrades(problems=list(loaded.errors))
        known = {task.task_id: task for task in loaded.tasks}
        reports: dict[str, str] = {}
        for row in store.tasks():
            if row.status != "done" or not row.report_path:
                outcome.not_finished.append(row.task_id)
                continue
            task = known.get(row.task_id)
            if task is None:
                outcome.problems.append(f"{row.task_id}: not in {source}; not graded")
            elif not task.rubrics:
                outcome.without_rubrics.append(row.task_id)
            else:
                try:
                    reports[row.task_id] = Path(row.report_path).read_text(encoding="utf-8")
                except OSError as exc:
                    outcome.problems.append(f"{row.task_id}: report unreadable ({exc.strerror or exc})")
        if not reports:
            outcome.problems.append("no finished report with rubrics to grade")
            return outcome
        client = judge_client(settings)
        judge = Judge(
            client,
            trials=trials,
            batch=batch,
            max_report_tokens=max_report_tokens,
            cache=JudgeCache(cache or default_cache_dir() / "judge.sqlite"),
        )
        store.set_judge_meta(
            {
                "model": judge.model_name,
                "trials": trials,
                "batch": batch,
                "mode": mode,
                "max_report_tokens": max_report_tokens,
                "tasks_file": str(source),
            }
        )
        try:
            async for graded in judge.grade_many([known[t].scored() for t in reports], reports):
                store.replace_grades(graded.task_id, graded.records)
                outcome.graded.append(graded.task_id)
                try:
                    scored: TaskScore | None = task_score(graded.records, mode=mode)
                except ValueError as exc:  # every positive rubric failed: no score, and why
                    outcome.problems.append(f"{graded.task_id}: {exc}")
                    scored = None
                if scored is not None:
                    outcome.scores.append(scored)
                if on_task is not None:
                    on_task(graded.task_id, scored, graded.usage.cost_usd)
        finally:
            await client.aclose()
    order = {task_id: i for i, task_id in enumerate(reports)}
    outcome.scores.sort(key=lambda s: order[s.task_id])
    outcome.graded.sort(key=order.__getitem__)
    outcome.benchmark = benchmark_score(outcome.scores) if outcome.scores else None
    outcome.usage, outcome.calls = judge.usage.to_dict(), judge.calls
    return outcome


def _recorded_tasks_file(store: BenchStore, bench_dir: Path) -> Path:
    recorded = store.meta().get("tasks_file")
    if not recorded:
        raise ConfigError(f"{bench_dir}: the benchmark does not name its task file; pass --tasks")
    path = Path(recorded)
    if not path.is_file():
        raise ConfigError(f"{bench_dir}: its task file {path} is gone; pass --tasks")
    return path
