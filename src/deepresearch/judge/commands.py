"""What ``deepresearch judge …`` does, as functions: grade a folder of reports against a task file,
check their citations, and synthesise RL tasks from seeds. The CLI only parses flags and prints what
these return.

``grade`` follows the task file's benchmark (``judge/protocols.py``): per-rubric verdicts scored the
way ResearchRubrics, ResearcherBench or our own tasks score them, or DeepResearch Bench's RACE against
its reference articles. Either way it writes one ``summary.json`` next to ``out`` with the same keys
(``overall``, ``per_task``, ``per_dimension``, ``per_domain``, ``failed``, ``protocol``, ``tokens``,
``cost``), each breakdown averaged per task as the benchmarks average (a dimension's score is the mean
of the tasks' scores within it, not the rubrics pooled over tasks), scores × 100. With ``fact`` it also
checks every citation against the page it cites (DeepResearch Bench's FACT, ResearcherBench's
faithfulness and groundedness) and adds them under ``citations``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.config import Settings, default_cache_dir
from deepresearch.errors import ConfigError
from deepresearch.judge.loaders import collect_reports, load_tasks
from deepresearch.judge.protocols import (
    RACE,
    AppliedProtocol,
    PromptsChoice,
    choose_protocol,
    drb_companions,
)
from deepresearch.judge.records import JudgeRecord
from deepresearch.judge.rubrics import Task
from deepresearch.judge.scoring import (
    Failures,
    ScoreMode,
    TaskScore,
    benchmark_score,
    by_axis,
    by_domain,
    task_score,
)

SUMMARY_NAME = "summary.json"
"""Written next to ``grade``'s ``out``."""
FACT_NAME = "fact.jsonl"
"""``grade --fact``'s per-report citation checks, next to ``out``."""


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
    gradings: int = 0
    """Rubric gradings attempted (one record each)."""
    zero_weight: int = 0
    """Rubrics of weight 0 in the graded tasks: loaded, not sent to the judge, counted in no score."""
    mode: ScoreMode = "ternary"
    protocol: AppliedProtocol | None = None
    task_format: str = ""
    unscored: dict[str, str] = field(default_factory=dict)
    """Graded tasks that got no score (task id → why)."""
    per_dimension: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Axis → ``{score, tasks}``: the mean over tasks of each task's compliance within the axis (× 100)."""
    per_domain: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Domain → ``{score, tasks, flagged}``: the mean task score of the domain's tasks (× 100)."""
    domains: dict[str, str] = field(default_factory=dict)
    """Task id → domain, for the graded tasks."""

    def to_json(self) -> dict[str, Any]:
        """The ``summary.json`` object (scores × 100, as the benchmarks report them)."""
        return {
            "overall": self.benchmark,
            "tasks_scored": len(self.scores),
            "protocol": {**asdict(self.protocol), "description": self.protocol.describe()}
            if self.protocol
            else None,
            "format": self.task_format,
            "per_task": {
                s.task_id: {
                    "score": 100.0 * s.score,
                    "domain": self.domains.get(s.task_id, ""),
                    "failed_gradings": s.failed_items,
                    "fatal": s.fatal_hit,
                    "cost_usd": self.costs.get(s.task_id, 0.0),
                }
                for s in self.scores
            },
            "per_dimension": self.per_dimension,
            "per_domain": self.per_domain,
            "failed": {
                "gradings": self.failed,
                "of": self.gradings,
                "counted_as": self.failures,
                "tasks_with_failed_gradings": [s.task_id for s in self.scores if s.failed_items],
                "unscored_tasks": self.unscored,
                "missing_reports": self.missing,
            },
            "zero_weight_rubrics": self.zero_weight,
            "tokens": {
                key: int(self.usage.get(key, 0))
                for key in ("prompt_tokens", "completion_tokens", "total_tokens")
            },
            "cost": {"usd": float(self.usage.get("cost_usd", 0.0)), "per_task_usd": self.costs},
            "problems": self.problems,
        }


OnTask = Callable[[str, float | None, float], None]
"""Called as each task is graded: task id, its score (0–1; None when it got none), its cost in USD."""


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
    protocol: str = "auto",
    mode: ScoreMode | None = None,
    failures: Failures | None = None,
    prompts: PromptsChoice | None = None,
    references: Path | None = None,
    queries: Path | None = None,
    fact: bool = False,
    concurrency: int = 8,
    max_report_tokens: int = 100_000,
    cache: Path | None = None,
    on_task: OnTask | None = None,
) -> dict[str, Any]:
    """Grade every task's report under the task file's protocol, write the per-task results to ``out``
    (JSONL: one record per rubric, or one RACE line per task) and ``summary.json`` next to it, and
    return the summary. ``mode``/``failures``/``prompts`` left None follow the protocol; DeepResearch
    Bench's ``references``/``queries`` default to where the benchmark ships them."""
    loaded = load_tasks(tasks_path)
    if not loaded.tasks:
        raise ConfigError(f"{tasks_path}: no task could be loaded ({'; '.join(loaded.errors[:3])})")
    if loaded.format == "drb":
        shipped_references, shipped_queries = drb_companions(tasks_path)
        references, queries = references or shipped_references, queries or shipped_queries
    applied = choose_protocol(
        protocol, loaded.format, mode=mode, failures=failures, prompts=prompts, references=references
    )
    found = collect_reports(reports, tasks=loaded.tasks)
    if not any(t.task_id in found.reports for t in loaded.tasks):
        raise ConfigError(f"{reports}: no report matches a task of {tasks_path}")
    out.parent.mkdir(parents=True, exist_ok=True)
    settings_used = {"concurrency": concurrency}
    if applied.is_race:
        assert references is not None  # choose_protocol refuses RACE without them
        summary = await race_grade(
            settings,
            criteria=tasks_path,
            references=references,
            queries=queries,
            reports=found.reports,
            out=out,
            protocol=applied,
            problems=found.errors,
            concurrency=concurrency,
            on_task=on_task,
        )
    else:
        settings_used |= {"trials": trials, "batch": batch, "max_report_tokens": max_report_tokens}
        graded = await _grade_rubrics(
            settings,
            loaded.tasks,
            found.reports,
            out=out,
            protocol=applied,
            trials=trials,
            batch=batch,
            concurrency=concurrency,
            max_report_tokens=max_report_tokens,
            cache=cache,
            on_task=on_task,
        )
        graded.task_format = loaded.format
        graded.problems[:0] = [*loaded.errors, *found.errors]
        summary = graded.to_json()
    summary["settings"] = settings_used
    if fact:
        wanted = {t.task_id for t in loaded.tasks}
        summary["citations"] = await check_citations(
            settings,
            {task_id: text for task_id, text in found.reports.items() if task_id in wanted},
            out=out.with_name(FACT_NAME),
            languages=_languages_of(tasks_path, loaded.format, queries),
            concurrency=concurrency,
        )
    write_json(out.with_name(SUMMARY_NAME), summary)
    return summary


async def _grade_rubrics(
    settings: Settings,
    tasks: list[Task],
    reports: dict[str, str],
    *,
    out: Path,
    protocol: AppliedProtocol,
    trials: int,
    batch: int,
    concurrency: int,
    max_report_tokens: int,
    cache: Path | None,
    on_task: OnTask | None,
) -> GradeSummary:
    from deepresearch.judge.cache import JudgeCache
    from deepresearch.judge.grader import Judge

    mode, failures = protocol.mode, protocol.failures
    summary = GradeSummary(failures=failures, mode=mode, protocol=protocol)
    summary.missing = [t.task_id for t in tasks if t.task_id not in reports]
    order = {t.task_id: i for i, t in enumerate(tasks)}
    tasks = [t for t in tasks if t.task_id in reports]
    summary.zero_weight = sum(t.zero_weight for t in tasks)
    tasks = [t.scored() for t in tasks]
    client = judge_client(settings)
    judge = Judge(
        client,
        trials=trials,
        batch=batch,
        concurrency=concurrency,
        max_report_tokens=max_report_tokens,
        cache=JudgeCache(cache or default_cache_dir() / "judge.sqlite"),
        prompts=protocol.prompts,
    )
    records: list[JudgeRecord] = []
    try:
        with out.open("w", encoding="utf-8") as handle:
            async for graded in judge.grade_many(tasks, reports):
                for record in graded.records:
                    handle.write(record.model_dump_json() + "\n")
                handle.flush()
                records.extend(graded.records)
                summary.failed += sum(1 for r in graded.records if r.failed or r.verdict is None)
                summary.gradings += len(graded.records)
                cost = sum(r.cost_usd for r in graded.records)
                summary.costs[graded.task_id] = cost
                try:
                    scored: TaskScore | None = task_score(graded.records, mode=mode, failures=failures)
                except ValueError as exc:  # no positive rubric (or, skipping, none graded): say why
                    summary.problems.append(f"{graded.task_id}: {exc}")
                    summary.unscored[graded.task_id] = str(exc)
                    scored = None
                if scored is not None:
                    summary.scores.append(scored)
                if on_task is not None:
                    on_task(graded.task_id, None if scored is None else scored.score, cost)
    finally:
        await client.aclose()
    summary.scores.sort(key=lambda s: order.get(s.task_id, 0))
    summary.benchmark = benchmark_score(summary.scores) if summary.scores else None
    summary.axes = by_axis(records, mode=mode, failures=failures)
    summary.usage = judge.usage.to_dict()
    summary.domains = {t.task_id: t.domain for t in tasks}
    summary.per_dimension = per_dimension(summary.scores)
    summary.per_domain = {
        domain: {"score": d.score, "tasks": d.tasks, "flagged": d.flagged}
        for domain, d in by_domain(tasks, summary.scores).items()
    }
    return summary


async def race_grade(
    settings: Settings,
    *,
    criteria: Path,
    references: Path,
    queries: Path | None,
    reports: dict[str, str],
    out: Path,
    protocol: AppliedProtocol | None = None,
    problems: list[str] | None = None,
    concurrency: int = 8,
    on_task: OnTask | None = None,
) -> dict[str, Any]:
    """DeepResearch Bench's RACE of ``reports``: one comparative call per task, one line per task in
    ``out``; returns the summary (the ``grade`` keys, scores × 100). Tasks without a report are listed
    as missing, not scored."""
    from deepresearch.judge.drb import load_drb
    from deepresearch.judge.race import race_benchmark, race_many

    loaded = load_drb(criteria, references=references, queries=queries)
    tasks = [task for task in loaded.tasks if task.task_id in reports]
    if not tasks:
        raise ConfigError(f"no report matches a task of {criteria}")
    protocol = protocol or choose_protocol(RACE, "drb", references=references)
    scores = []
    out.parent.mkdir(parents=True, exist_ok=True)
    client = judge_client(settings)
    try:
        with out.open("w", encoding="utf-8") as handle:
            async for score in race_many(client, tasks, reports, loaded.references, concurrency=concurrency):
                scores.append(score)
                handle.write(json.dumps(score.to_dict(), ensure_ascii=False) + "\n")
                handle.flush()
                if on_task is not None:
                    on_task(score.task_id, score.overall, score.usage.cost_usd)
    finally:
        await client.aclose()
    order = {task.task_id: i for i, task in enumerate(loaded.tasks)}
    scores.sort(key=lambda s: order.get(s.task_id, 0))
    benchmark = race_benchmark(scores)
    usage = benchmark.usage

    def scaled(value: float | None) -> float | None:
        return None if value is None else 100.0 * value

    dimension_tasks: dict[str, int] = {}
    topic_tasks: dict[str, int] = {}
    for score in scores:
        if score.overall is not None:
            for dimension in score.dimensions:
                dimension_tasks[dimension] = dimension_tasks.get(dimension, 0) + 1
            if score.topic:
                topic_tasks[score.topic] = topic_tasks.get(score.topic, 0) + 1
    return {
        "overall": scaled(benchmark.overall),
        "tasks_scored": benchmark.scored,
        "protocol": {**asdict(protocol), "description": protocol.describe()},
        "format": "drb",
        "per_task": {
            s.task_id: {
                "score": scaled(s.overall),
                "domain": s.topic,
                "language": s.language,
                "failed_gradings": s.failed_criteria,
                "failed_dimensions": s.failed_dimensions,
                "target": s.target,
                "reference": s.reference,
                "cost_usd": s.usage.cost_usd,
                "error": s.error,
            }
            for s in scores
        },
        "per_dimension": {
            dimension: {"score": 100.0 * value, "tasks": dimension_tasks.get(dimension, 0)}
            for dimension, value in benchmark.dimensions.items()
        },
        "per_domain": {
            topic: {"score": 100.0 * value, "tasks": topic_tasks.get(topic, 0)}
            for topic, value in benchmark.topics.items()
        },
        "failed": {
            "gradings": benchmark.failed_criteria,
            "of": sum(len(s.criteria) for s in scores),
            "counted_as": "renormalised inside their dimension",
            "dimensions_dropped": benchmark.failed_dimensions,
            "tasks_with_failed_gradings": [s.task_id for s in scores if s.failed_criteria],
            "unscored_tasks": {s.task_id: s.error or "not scored" for s in scores if s.overall is None},
            "missing_reports": [t.task_id for t in loaded.tasks if t.task_id not in reports],
        },
        "tokens": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "per_task": usage.total_tokens / len(scores) if scores else 0.0,
        },
        "cost": {"usd": usage.cost_usd, "per_task_usd": {s.task_id: s.usage.cost_usd for s in scores}},
        "calls": benchmark.calls,
        "problems": [*loaded.errors, *(problems or [])],
    }


async def check_citations(
    settings: Settings,
    reports: dict[str, str],
    *,
    out: Path,
    languages: dict[str, str] | None = None,
    default_language: str | None = None,
    batch: int = 10,
    concurrency: int = 8,
    on_report: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """FACT and ResearcherBench's faithfulness/groundedness of ``reports``: every cited page fetched
    once (our fetcher: SSRF guard, cache), one judge call per URL; one line per report in ``out``."""
    import asyncio

    from deepresearch.judge.fact import FactChecker, FactResult, summarize
    from deepresearch.services import open_fetcher

    if not reports:
        raise ConfigError("no reports to check")
    languages = languages or {}
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[FactResult] = []
    client = judge_client(settings)
    fetcher = open_fetcher(settings)
    try:
        checker = FactChecker(client, fetcher, batch=batch, concurrency=concurrency)

        async def one(task_id: str, text: str) -> FactResult:
            language = languages.get(task_id) or default_language
            return await checker.check(text, task_id=task_id, language=language)

        jobs = [asyncio.ensure_future(one(task_id, text)) for task_id, text in reports.items()]
        try:
            with out.open("w", encoding="utf-8") as handle:
                for finished in asyncio.as_completed(jobs):
                    result = await finished
                    results.append(result)
                    handle.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
                    handle.flush()
                    if on_report is not None:
                        on_report(result)
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
    finally:
        await client.aclose()
        await fetcher.aclose()
    return {
        **summarize(results),
        "per_task": {
            r.task_id: {
                "citation_accuracy": r.citation_accuracy,
                "effective_citations": r.effective_citations,
                "faithfulness": r.faithfulness,
                "groundedness": r.groundedness,
            }
            for r in sorted(results, key=lambda r: r.task_id)
        },
        "fetches": checker.fetches,
        "calls": checker.calls,
        "tokens": checker.usage.total_tokens,
        "cost_usd": checker.usage.cost_usd,
        "results": str(out),
    }


def _languages_of(tasks_path: Path, task_format: str, queries: Path | None) -> dict[str, str]:
    """Task id → ``en``/``zh`` for a DeepResearch Bench task file (from its queries, or its prompts)."""
    if task_format != "drb":
        return {}
    from deepresearch.judge.drb import load_drb

    return {task.task_id: task.language for task in load_drb(tasks_path, queries=queries).tasks}


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON through a temporary file, so a reader never sees half of it."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def per_dimension(scores: list[TaskScore]) -> dict[str, dict[str, Any]]:
    """Axis → ``{score, tasks}``: the mean over tasks of each task's compliance in the axis (× 100).

    Averaged per task, as the benchmarks average (DeepResearch Bench's per-dimension score is a mean
    over tasks); a task with no graded positive weight in an axis does not count for it.
    """
    values: dict[str, list[float]] = {}
    for score in scores:
        for axis, value in score.per_axis.items():
            if value is not None:
                values.setdefault(axis, []).append(value)
    return {axis: {"score": 100.0 * sum(v) / len(v), "tasks": len(v)} for axis, v in sorted(values.items())}


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
