"""``deepresearch judge race``: DeepResearch Bench's RACE score of a set of reports.

Kept apart from ``cli/judge.py`` because RACE reads other files (reference articles, queries) and
writes per-task ratios rather than per-rubric records. Register it on the judge group with
``judge_app.command("race")(judge_race)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from deepresearch.cli.common import run_or_exit, say
from deepresearch.cli.options import JUDGE, SettingsFlags, settings_options
from deepresearch.config import Settings


@settings_options(*JUDGE)
def judge_race(
    tasks: Annotated[Path, typer.Option("--tasks", help="DeepResearch Bench criteria.jsonl.")],
    references: Annotated[Path, typer.Option("--references", help="The benchmark's reference.jsonl.")],
    reports: Annotated[
        Path, typer.Option("--reports", help="Folder of <task_id>.md, folder of run directories, or JSONL.")
    ],
    queries: Annotated[
        Path | None, typer.Option("--queries", help="query.jsonl (language and topic of each task).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Per-task RACE (JSONL).")] = Path("race.jsonl"),
    concurrency: Annotated[int, typer.Option("--concurrency", help="Judge calls in flight.")] = 8,
    *,
    flags: SettingsFlags,
) -> None:
    """Score reports with RACE against the benchmark's reference articles; print the benchmark means."""
    summary = run_or_exit(
        race_files(
            flags.settings(),
            tasks=tasks,
            references=references,
            queries=queries,
            reports=reports,
            out=out,
            concurrency=concurrency,
        )
    )
    overall = summary["overall"]
    typer.echo(
        f"RACE overall: {'n/a' if overall is None else f'{overall * 100:.2f}'} over {summary['scored']}"
    )
    for dimension, value in summary["per_dimension"].items():
        typer.echo(f"  {dimension}: {value * 100:.2f}")
    failed = summary["failed"]
    tokens = summary["tokens"]
    typer.echo(
        f"failed: {len(failed['tasks'])} tasks, {failed['criteria']} criteria, {failed['dimensions']} "
        f"dimensions; judge tokens {tokens['total']} ({tokens['per_task']:.0f} per task), "
        f"cost ${summary['cost_usd']:.4f}; results in {out}, summary in {out.parent / 'summary.json'}"
    )
    if overall is None:  # asked for a RACE score and got none
        say("error: no task could be scored", color="red")
        raise typer.Exit(1)


async def race_files(
    settings: Settings,
    *,
    tasks: Path,
    references: Path,
    queries: Path | None,
    reports: Path,
    out: Path,
    concurrency: int,
) -> dict[str, Any]:
    """Load, judge every task, write ``out`` (one line per task) and ``summary.json`` beside it."""
    from deepresearch.judge.commands import judge_client
    from deepresearch.judge.drb import load_drb
    from deepresearch.judge.loaders import collect_reports
    from deepresearch.judge.race import race_benchmark, race_many

    loaded = load_drb(tasks, references=references, queries=queries)
    for problem in loaded.errors:
        say(f"  {problem}", color="yellow")
    found = collect_reports(reports, [task.task_id for task in loaded.tasks])
    for problem in found.errors:
        say(f"  {problem}", color="yellow")
    out.parent.mkdir(parents=True, exist_ok=True)
    scores = []
    client = judge_client(settings)
    try:
        with out.open("w", encoding="utf-8") as handle:
            async for score in race_many(
                client, loaded.tasks, found.reports, loaded.references, concurrency=concurrency
            ):
                scores.append(score)
                handle.write(json.dumps(score.to_dict(), ensure_ascii=False) + "\n")
                handle.flush()
                shown = "n/a" if score.overall is None else f"{score.overall * 100:.1f}"
                typer.echo(f"race {score.task_id}: {shown} (${score.usage.cost_usd:.4f})", err=True)
    finally:
        await client.aclose()
    benchmark = race_benchmark(scores).to_dict()
    summary = {
        "protocol": "drb-race",
        "overall": benchmark["overall"],
        "per_task": {s.task_id: s.overall for s in sorted(scores, key=lambda s: _order(s.task_id))},
        "per_dimension": benchmark["dimensions"],
        "per_domain": benchmark["topics"],
        "failed": {
            "tasks": benchmark["failed_tasks"],
            "criteria": benchmark["failed_criteria"],
            "dimensions": benchmark["failed_dimensions"],
        },
        "scored": benchmark["scored"],
        "tokens": benchmark["tokens"],
        "cost_usd": benchmark["cost_usd"],
        "calls": benchmark["calls"],
    }
    path = out.parent / "summary.json"
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return summary


def _order(task_id: str) -> tuple[int, str]:
    return (int(task_id), "") if task_id.isdigit() else (1 << 30, task_id)
