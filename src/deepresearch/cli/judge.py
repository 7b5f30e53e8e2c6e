"""``deepresearch judge …``: grade reports against rubrics and synthesise rubric tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepresearch.cli.common import run_or_exit, say
from deepresearch.cli.grading import (
    FactOpt,
    FailuresOpt,
    PromptsOpt,
    ProtocolModeOpt,
    ProtocolOpt,
    QueriesOpt,
    ReferencesOpt,
    judge_gave_nothing,
    print_progress,
    print_summary,
)
from deepresearch.cli.options import ENDPOINT, JUDGE, SettingsFlags, settings_options

judge_app = typer.Typer(
    no_args_is_help=True, help="Grade reports against rubrics (the Checklist-style Judger)."
)


@judge_app.command("grade")
@settings_options(*JUDGE)
def judge_grade(
    tasks: Annotated[
        Path, typer.Option("--tasks", help="Tasks: ResearchRubrics, DRB, ResearcherBench or ours.")
    ],
    reports: Annotated[
        Path, typer.Option("--reports", help="Folder of <task_id>.md, folder of run directories, or JSONL.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Per-rubric records (JSONL).")] = Path("results.jsonl"),
    trials: Annotated[int, typer.Option("--trials", help="Independent gradings per rubric (paper: 3).")] = 1,
    batch: Annotated[int, typer.Option("--batch", help="Rubrics per judge call.")] = 1,
    protocol: ProtocolOpt = "auto",
    mode: ProtocolModeOpt = None,
    failures: FailuresOpt = None,
    prompts: PromptsOpt = None,
    references: ReferencesOpt = None,
    queries: QueriesOpt = None,
    fact: FactOpt = False,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Judge requests in flight at once.")] = 8,
    max_report_tokens: Annotated[
        int, typer.Option("--max-report-tokens", help="Longer reports are judged in chunks.")
    ] = 100_000,
    cache: Annotated[Path | None, typer.Option("--cache", help="Verdict cache (SQLite).")] = None,
    *,
    flags: SettingsFlags,
) -> None:
    """Grade reports against their rubrics; print the scores and write summary.json next to --out.

    Summary: overall, per task, per dimension and per domain (means over tasks), failures, tokens, cost.

    The protocol (--protocol; auto: from the task file's format) sets the mode, the failure accounting
    and the judge's prompts; DeepResearch Bench is scored by RACE against its reference articles.

    An explicit --mode, --failures or --prompts overrides the protocol's.
    """
    from deepresearch.judge.commands import SUMMARY_NAME, grade

    summary = run_or_exit(
        grade(
            flags.settings(),
            tasks_path=tasks,
            reports=reports,
            out=out,
            trials=trials,
            batch=batch,
            protocol=protocol,
            mode=mode,
            failures=failures,
            prompts=prompts,
            references=references,
            queries=queries,
            fact=fact,
            concurrency=concurrency,
            max_report_tokens=max_report_tokens,
            cache=cache,
            on_task=print_progress(),
        )
    )
    print_summary(summary, records=out, summary_path=out.with_name(SUMMARY_NAME))
    if summary["overall"] is None or judge_gave_nothing(summary):  # asked for a score and got none
        say("error: no task could be scored: the judge gave no verdict", color="red")
        raise typer.Exit(1)


@judge_app.command("synth-rubrics")
@settings_options(*ENDPOINT, *JUDGE)
def judge_synth_rubrics(
    seeds: Annotated[Path, typer.Option("--seeds", help="Seeds (JSONL: id, topic, domain, document…).")],
    out: Annotated[Path, typer.Option("--out", help="Kept tasks (JSONL); discards go next to it.")],
    threshold: Annotated[float, typer.Option("--threshold", help="Minimum consistency to keep.")] = 0.7,
    *,
    flags: SettingsFlags,
) -> None:
    """Synthesise RL tasks and rubrics from seeds (two-step reverse synthesis with a consistency judge)."""
    from deepresearch.judge.commands import synth_rubrics

    settings = flags.settings()
    report = run_or_exit(synth_rubrics(settings, seeds=seeds, out=out, threshold=threshold))
    discarded = ", ".join(f"{reason} {count}" for reason, count in report.discarded.items()) or "none"
    typer.echo(
        f"kept {report.kept}; discarded: {discarded}; failed {report.failed}; "
        f"skipped {report.skipped} already done; cost ${report.cost_usd:.4f}; tasks in {out}"
    )
