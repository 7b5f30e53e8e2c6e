"""What ``deepresearch judge …`` does, as functions: grade a folder of reports against a task file, and
synthesise RL tasks from seeds. The CLI only parses flags and prints what these return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.config import Settings, default_cache_dir
from deepresearch.errors import ConfigError
from deepresearch.judge.loaders import collect_reports, load_tasks
from deepresearch.judge.records import JudgeRecord
from deepresearch.judge.scoring import (
    Failures,
    ScoreMode,
    TaskScore,
    benchmark_score,
    by_axis,
    task_score,
)


@dataclass
class GradeSummary:
    """The outcome of one ``judge grade``: per-task scores, the benchmark score and the spend."""

    scores: list[TaskScore] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    """Tasks without a report (graded as failed, not scored)."""
    problems: list[str] = field(default_factory=list)
    benchmark: float | None = None
    axes: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    failures: Failures = "zero"
    """How failed gradings were counted (``zero``: the benchmarks' official 0; ``skip``: left out)."""
    failed: int = 0
    """Rubrics whose grading failed, over every graded task (always reported, whatever ``failures``)."""
    zero_weight: int = 0
    """Rubrics of weight 0 in the graded tasks: loaded, not sent to the judge, counted in no score."""


def judge_client(settings: Settings) -> Any:
    """A chat client for the judge: ``judge_*`` settings, falling back to the agent's endpoint."""
    from deepresearch.judge.grader import judge_llm_config
    from deepresearch.llm.client import ChatClient
    from deepresearch.services import llm_config

    return ChatClient(judge_llm_config(llm_config(settings, "judge")))


async def grade(
    settings: Settings,
    *,
    tasks_path: Path,
    reports: Path,
    out: Path,
    trials: int = 1,
    batch: int = 1,
    mode: ScoreMode = "ternary",
    failures: Failures = "zero",
    max_report_tokens: int = 100_000,
    cache: Path | None = None,
    on_task: Callable[[str, TaskScore | None, float], None] | None = None,
) -> GradeSummary:
    """Grade every task's report, append one ``JudgeRecord`` per rubric to ``out`` (JSONL), and score."""
    from deepresearch.judge.cache import JudgeCache
    from deepresearch.judge.grader import Judge

    loaded = load_tasks(tasks_path)
    if not loaded.tasks:
        raise ConfigError(f"{tasks_path}: no task could be loaded ({'; '.join(loaded.errors[:3])})")
    found = collect_reports(reports, tasks=loaded.tasks)
    summary = GradeSummary(problems=[*loaded.errors, *found.errors], failures=failures)
    summary.missing = [t.task_id for t in loaded.tasks if t.task_id not in found.reports]
    tasks = [t for t in loaded.tasks if t.task_id in found.reports]
    summary.zero_weight = sum(t.zero_weight for t in tasks)
    tasks = [t.scored() for t in tasks]
    if not tasks:
        raise ConfigError(f"{reports}: no report matches a task of {tasks_path}")
    client = judge_client(settings)
    judge = Judge(
        client,
        trials=trials,
        batch=batch,
        max_report_tokens=max_report_tokens,
        cache=JudgeCache(cache or default_cache_dir() / "judge.sqlite"),
    )
    records: list[JudgeRecord] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out.open("w", encoding="utf-8") as handle:
            async for graded in judge.grade_many(tasks, found.reports):
                for record in graded.records:
                    handle.write(record.model_dump_json() + "\n")
                handle.flush()
                records.extend(graded.records)
                summary.failed += sum(1 for r in graded.records if r.failed or r.verdict is None)
                cost = sum(r.cost_usd for r in graded.records)
                summary.costs[graded.task_id] = cost
                try:
                    scored: TaskScore | None = task_score(graded.records, mode=mode, failures=failures)
                except ValueError as exc:  # no positive rubric (or, skipping, none graded): say why
                    summary.problems.append(f"{graded.task_id}: {exc}")
                    scored = None
                if scored is not None:
                    summary.scores.append(scored)
                if on_task is not None:
                    on_task(graded.task_id, scored, cost)
    finally:
        await client.aclose()
    order = {t.task_id: i for i, t in enumerate(loaded.tasks)}
    summary.scores.sort(key=lambda s: order.get(s.task_id, 0))
    summary.benchmark = benchmark_score(summary.scores) if summary.scores else None
    summary.axes = by_axis(records, mode=mode, failures=failures)
    summary.usage = judge.usage.to_dict()
    return summary


async def synth_rubrics(
    settings: Settings, *, seeds: Path, out: Path, threshold: float = 0.7, concurrency: int = 4
) -> Any:
    """Two-step reverse synthesis of RL tasks from ``seeds`` into ``out`` (resumable)."""
    from deepresearch.judge.synth import synthesize_file

    writer = judge_client(
        settings.model_copy(update={"judge_base_url": None, "judge_model": None, "judge_api_key": None})
    )
    checker = judge_client(settings)
    try:
        return await synthesize_file(
            seeds, out, writer, judge_client=checker, concurrency=concurrency, threshold=threshold
        )
    finally:
        await writer.aclose()
        await checker.aclose()
