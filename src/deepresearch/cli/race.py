"""``deepresearch judge race``: DeepResearch Bench's RACE score of a set of reports.

Kept apart from ``cli/judge.py`` because RACE reads other files (reference articles, queries) and
writes per-task ratios rather than per-rubric records; ``judge grade`` reaches the same code
(``judge.commands.race_grade``) when the task file is DeepResearch Bench's and its references are
found. Register it on the judge group with
``judge_app.command("race")(judge_race)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepresearch.cli.common import run_or_exit, say
from deepresearch.cli.grading import judge_gave_nothing, print_progress, print_summary
from deepresearch.cli.options import JUDGE, SettingsFlags, settings_options


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
    """Score reports with RACE against the benchmark's reference articles; print the benchmark means.

    The same as judge grade --protocol deepresearchbench, with the reference file required.
    """
    from deepresearch.judge.commands import SUMMARY_NAME, race_grade, write_json
    from deepresearch.judge.loaders import collect_reports

    found = collect_reports(reports)
    if not found.reports:
        raise typer.BadParameter(f"{reports}: no reports found", param_hint="--reports")
    summary = run_or_exit(
        race_grade(
            flags.settings(),
            criteria=tasks,
            references=references,
            queries=queries,
            reports=found.reports,
            out=out,
            problems=found.errors,
            concurrency=concurrency,
            on_task=print_progress("race "),
        )
    )
    summary["settings"] = {"concurrency": concurrency}
    summary_path = out.with_name(SUMMARY_NAME)
    write_json(summary_path, summary)
    print_summary(summary, records=out, summary_path=summary_path)
    if summary["overall"] is None or judge_gave_nothing(summary):  # asked for a RACE score, got none
        say("error: no task could be scored", color="red")
        raise typer.Exit(1)
