"""Grade a benchmark's finished reports with the Checklist judge and keep the records in its store.

Every call grades every finished report again, through the judge's verdict cache: a report or rubric
that did not change costs no request, one that did is graded afresh, and a changed judge model or
prompt misses the cache as it should. That is simpler and safer than tracking which grades are stale.
Each task's records replace its old ones in one transaction as soon as it is graded, so an interrupted
grading keeps what it finished. Tasks without rubrics (an ADR-Bench task set, say) are not graded here:
compare them pairwise instead.

The grading follows the task file's protocol as ``judge grade`` does (mode, failure accounting, prompt
family), and the store's ``judge_meta`` records it, so ``bench report`` scores the stored verdicts the
same way. A DeepResearch Bench task set with its reference articles is scored by RACE instead: its
per-task lines and summary go beside the store (``RACE_RESULTS``, ``RACE_SUMMARY``), since they are
ratios per task, not verdicts per rubric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.bench.store import BenchStore
from deepresearch.config import Settings, default_cache_dir
from deepresearch.errors import ConfigError
from deepresearch.judge.commands import OnTask
from deepresearch.judge.loaders import load_tasks
from deepresearch.judge.protocols import AppliedProtocol, PromptsChoice, choose_protocol, drb_companions
from deepresearch.judge.scoring import Failures, ScoreMode, TaskScore, benchmark_score, task_score

RACE_RESULTS = "race.jsonl"
"""Per-task RACE lines of a benchmark graded under DeepResearch Bench's protocol (in its folder)."""
RACE_SUMMARY = "race-summary.json"
"""That grading's summary (``judge.commands.race_grade``'s keys); ``bench report`` reads it."""


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
    protocol: AppliedProtocol | None = None
    failed: int = 0
    """Gradings (rubrics, or RACE criteria) that failed, counted as the protocol counts them."""
    gradings: int = 0
    """Gradings attempted."""
    race: dict[str, Any] | None = None
    """The RACE summary, when the benchmark was graded under DeepResearch Bench's protocol."""

    @property
    def judge_failed(self) -> bool:
        """Every grading failed: a score made of failures (0 each, officially) says nothing."""
        return self.gradings > 0 and self.failed == self.gradings

    @property
    def tasks_scored(self) -> int:
        return len(self.scores) if self.race is None else int(self.race["tasks_scored"])


async def grade_benchmark(
    settings: Settings,
    bench_dir: Path,
    *,
    tasks_path: Path | None = None,
    trials: int = 1,
    batch: int = 1,
    protocol: str = "auto",
    mode: ScoreMode | None = None,
    failures: Failures | None = None,
    prompts: PromptsChoice | None = None,
    references: Path | None = None,
    queries: Path | None = None,
    concurrency: int = 8,
    max_report_tokens: int = 100_000,
    cache: Path | None = None,
    on_task: OnTask | None = None,
) -> BenchGrades:
    """Grade the finished reports of the benchmark in ``bench_dir`` under its task file's protocol
    (``judge.protocols``), as ``judge grade`` does.

    ``tasks_path`` defaults to the task file the benchmark was run with.
    """
    from deepresearch.judge.cache import JudgeCache
    from deepresearch.judge.commands import judge_client, race_grade, write_json
    from deepresearch.judge.grader import Judge

    if not (bench_dir / "results.sqlite").is_file():
        raise ConfigError(f"{bench_dir}: no benchmark there (run deepresearch bench run first)")
    with BenchStore.open(bench_dir) as store:
        source = tasks_path or _recorded_tasks_file(store, bench_dir)
        loaded = load_tasks(source)
        if loaded.format == "drb":
            shipped_references, shipped_queries = drb_companions(source)
            references, queries = references or shipped_references, queries or shipped_queries
        applied = choose_protocol(
            protocol, loaded.format, mode=mode, failures=failures, prompts=prompts, references=references
        )
        outcome = BenchGrades(problems=list(loaded.errors), protocol=applied)
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
        meta = {
            "protocol": applied.name,
            "protocol_description": applied.describe(),
            "mode": applied.mode,
            "failures": applied.failures,
            "prompts": applied.prompts,
            "tasks_file": str(source),
            "concurrency": concurrency,
        }
        if applied.is_race:
            assert references is not None  # choose_protocol refuses RACE without them
            race = await race_grade(
                settings,
                criteria=source,
                references=references,
                queries=queries,
                reports=reports,
                out=bench_dir / RACE_RESULTS,
                protocol=applied,
                concurrency=concurrency,
                on_task=on_task,
            )
            write_json(bench_dir / RACE_SUMMARY, race)
            store.set_judge_meta({**meta, "references": str(references)})
            outcome.race = race
            outcome.graded = list(race["per_task"])
            outcome.benchmark = race["overall"]
            outcome.failed, outcome.gradings = race["failed"]["gradings"], race["failed"]["of"]
            outcome.problems.extend(race["problems"])
            outcome.calls = race["calls"]
            outcome.usage = {**race["tokens"], "cost_usd": race["cost"]["usd"]}
            return outcome
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
        store.set_judge_meta(
            {
                **meta,
                "model": judge.model_name,
                "trials": trials,
                "batch": batch,
                "max_report_tokens": max_report_tokens,
            }
        )
        try:
            async for graded in judge.grade_many([known[t].scored() for t in reports], reports):
                store.replace_grades(graded.task_id, graded.records)
                outcome.graded.append(graded.task_id)
                outcome.failed += sum(1 for r in graded.records if r.failed or r.verdict is None)
                outcome.gradings += len(graded.records)
                try:
                    scored: TaskScore | None = task_score(
                        graded.records, mode=applied.mode, failures=applied.failures
                    )
                except ValueError as exc:  # no positive rubric (or, skipping, none graded): say why
                    outcome.problems.append(f"{graded.task_id}: {exc}")
                    scored = None
                if scored is not None:
                    outcome.scores.append(scored)
                if on_task is not None:
                    on_task(graded.task_id, None if scored is None else scored.score, graded.usage.cost_usd)
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
