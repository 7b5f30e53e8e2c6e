"""What ``deepresearch judge …`` does, as functions: grade a folder of reports against a task file, and
synthesise RL tasks from seeds. The CLI only parses flags and prints what these return.

A benchmark's number depends on how it reads a verdict and counts a failed grading, so each benchmark
has a **protocol** (``PROTOCOLS``): ResearchRubrics grades ternary (its official compliance),
ResearcherBench binary coverage (a point is covered or not: partial credit would inflate it), our own
tasks ternary; all count a failed grading as 0 with its weight kept, as both benchmarks do. A protocol
also names its prompt family: each benchmark's ``official-*`` prompts follow its released evaluator's
inputs (ResearchRubrics: criterion, axis and weight, no task prompt, binary; ResearcherBench: the point
and its weight, covered or not), our own tasks the paper's ternary prompts. ``auto`` picks the protocol
from the format the task file was read as; an explicit ``mode``, ``failures`` or ``prompts`` (``paper``
or ``official``) still wins over the protocol's, and the summary says so. DeepResearch Bench criteria
graded here give an absolute compliance under our protocol; its official RACE number is ``judge race``.

``grade`` writes ``summary.json`` next to the records: the overall score, and per task, per dimension
and per domain, each averaged per task as the benchmarks average (a dimension's score is the mean of
the tasks' compliance within it, not the rubrics pooled over tasks), with the failures, the protocol,
the tokens and the cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

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
    by_domain,
    task_score,
)

ProtocolName = Literal["auto", "researchrubrics", "researcherbench", "ours"]
PromptsChoice = Literal["paper", "official"]
SUMMARY_NAME = "summary.json"
"""Written next to ``grade``'s ``out``."""


@dataclass(frozen=True)
class Protocol:
    """How one benchmark turns verdicts into its number: the score mode, the failure accounting and
    the judge's prompt family (``grader.PROMPT_FAMILIES``)."""

    name: str
    mode: ScoreMode
    failures: Failures
    about: str
    prompts: str = "paper"


PROTOCOLS: dict[str, Protocol] = {
    "researchrubrics": Protocol(
        "researchrubrics",
        "ternary",
        "zero",
        "ResearchRubrics' official ternary compliance",
        "official-researchrubrics",
    ),
    "researcherbench": Protocol(
        "researcherbench",
        "binary",
        "zero",
        "ResearcherBench coverage: a point is covered or not",
        "official-researcherbench",
    ),
    "ours": Protocol("ours", "ternary", "zero", "our own tasks: ternary compliance"),
}
FORMAT_PROTOCOL = {
    "researchrubrics": "researchrubrics",
    "researcherbench": "researcherbench",
    "native": "ours",
    "drb": "ours",  # absolute compliance on DRB's criteria; its official RACE score is ``judge race``
}


@dataclass(frozen=True)
class AppliedProtocol:
    """The protocol a grading ran under, and what overrode it."""

    name: str
    mode: ScoreMode
    failures: Failures
    chosen: str
    """``auto (<format> task file)`` or ``explicit``."""
    mode_overridden: bool = False
    failures_overridden: bool = False
    prompts: str = "paper"
    """The judge's prompt family."""
    prompts_overridden: bool = False

    def describe(self) -> str:
        """E.g. ``researcherbench (binary, failures counted as zero), official-researcherbench prompts``."""
        base = PROTOCOLS[self.name]
        mode = f"{self.mode} by --mode instead of {base.mode}" if self.mode_overridden else self.mode
        failures = (
            f"failures counted as {self.failures} by --failures instead of {base.failures}"
            if self.failures_overridden
            else f"failures counted as {self.failures}"
        )
        prompts = (
            f"{self.prompts} prompts by --prompts instead of {base.prompts}"
            if self.prompts_overridden
            else f"{self.prompts} prompts"
        )
        return f"{self.name} ({mode}, {failures}), {prompts}"


def choose_protocol(
    protocol: str,
    task_format: str,
    *,
    mode: ScoreMode | None = None,
    failures: Failures | None = None,
    prompts: PromptsChoice | None = None,
) -> AppliedProtocol:
    """The protocol for a task file read as ``task_format``; an explicit ``mode``/``failures`` wins, and
    ``prompts`` (``paper``, or ``official``: the protocol's benchmark's own) overrides its prompt family."""
    if protocol not in get_args(ProtocolName):
        raise ConfigError(f"unknown protocol {protocol!r}; use one of {', '.join(get_args(ProtocolName))}")
    if protocol == "auto":
        name, chosen = (
            FORMAT_PROTOCOL.get(task_format, "ours"),
            f"auto ({task_format or 'unknown'} task file)",
        )
    else:
        name, chosen = protocol, "explicit"
    base = PROTOCOLS[name]
    family = base.prompts
    if prompts == "paper":
        family = "paper"
    elif prompts == "official":
        if base.prompts == "paper":
            raise ConfigError(
                f"protocol {name} has no official prompts (only ResearchRubrics and ResearcherBench do); "
                "use --prompts paper or choose --protocol researchrubrics|researcherbench"
            )
    elif prompts is not None:
        raise ConfigError(f"unknown prompts {prompts!r}; use paper or official")
    return AppliedProtocol(
        name=name,
        mode=mode or base.mode,
        failures=failures or base.failures,
        chosen=chosen,
        mode_overridden=mode is not None and mode != base.mode,
        failures_overridden=failures is not None and failures != base.failures,
        prompts=family,
        prompts_overridden=family != base.prompts,
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
    settings: dict[str, Any] = field(default_factory=dict)
    """The grading knobs: trials, batch, concurrency, max_report_tokens."""
    summary_path: Path | None = None

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
            "settings": self.settings,
            "problems": self.problems,
        }


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
    concurrency: int = 8,
    max_report_tokens: int = 100_000,
    cache: Path | None = None,
    on_task: Callable[[str, TaskScore | None, float], None] | None = None,
) -> GradeSummary:
    """Grade every task's report, write one ``JudgeRecord`` per rubric to ``out`` (JSONL), score, and
    write ``summary.json`` next to ``out``. ``mode``/``failures``/``prompts`` left None follow the
    protocol."""
    from deepresearch.judge.cache import JudgeCache
    from deepresearch.judge.grader import Judge

    loaded = load_tasks(tasks_path)
    if not loaded.tasks:
        raise ConfigError(f"{tasks_path}: no task could be loaded ({'; '.join(loaded.errors[:3])})")
    applied = choose_protocol(protocol, loaded.format, mode=mode, failures=failures, prompts=prompts)
    mode, failures = applied.mode, applied.failures
    found = collect_reports(reports, tasks=loaded.tasks)
    summary = GradeSummary(
        problems=[*loaded.errors, *found.errors],
        failures=failures,
        mode=mode,
        protocol=applied,
        task_format=loaded.format,
        settings={
            "trials": trials,
            "batch": batch,
            "concurrency": concurrency,
            "max_report_tokens": max_report_tokens,
        },
    )
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
        concurrency=concurrency,
        max_report_tokens=max_report_tokens,
        cache=JudgeCache(cache or default_cache_dir() / "judge.sqlite"),
        prompts=applied.prompts,
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
                    summary.unscored[graded.task_id] = str(exc)
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
    summary.domains = {t.task_id: t.domain for t in tasks}
    summary.per_dimension = per_dimension(summary.scores)
    summary.per_domain = {
        domain: {"score": d.score, "tasks": d.tasks, "flagged": d.flagged}
        for domain, d in by_domain(tasks, summary.scores).items()
    }
    summary.summary_path = out.with_name(SUMMARY_NAME)
    summary.summary_path.write_text(
        json.dumps(summary.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return summary


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
