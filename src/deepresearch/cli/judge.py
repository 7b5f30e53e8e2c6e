"""``deepresearch judge …``: grade reports against rubrics and synthesise rubric tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from deepresearch.cli.common import run_or_exit, say
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
    protocol: Annotated[
        Literal["auto", "researchrubrics", "researcherbench", "ours"],
        typer.Option(
            "--protocol",
            help="Scoring protocol: researchrubrics (ternary), researcherbench (binary), ours (ternary), "
            "all counting failed gradings as 0; auto picks it from the task file's format.",
        ),
    ] = "auto",
    mode: Annotated[
        Literal["ternary", "binary", "strict"] | None,
        typer.Option("--mode", help="ternary, binary or strict; overrides the protocol's mode."),
    ] = None,
    failures: Annotated[
        Literal["zero", "skip"] | None,
        typer.Option(
            "--failures",
            help="A failed grading: zero (official: worth 0, weight kept) or skip (left out of both "
            "sums); overrides the protocol's (zero).",
        ),
    ] = None,
    prompts: Annotated[
        Literal["paper", "official"] | None,
        typer.Option(
            "--prompts",
            help="Judge prompts: official (the benchmark's released evaluator: ResearchRubrics binary with "
            "axis and weight, no task prompt; ResearcherBench covered or not, with the weight) or paper "
            "(ternary, with negative-rubric handling); overrides the protocol's (official for the two "
            "benchmarks, paper for ours).",
        ),
    ] = None,
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
    and the judge's prompts.

    An explicit --mode, --failures or --prompts overrides the protocol's.
    """
    from rich.console import Console
    from rich.table import Table

    from deepresearch.judge.commands import grade

    settings = flags.settings()

    def progress(task_id: str, scored: Any, cost: float) -> None:
        shown = f"{scored.score * 100:.1f}" if scored is not None else "n/a"
        typer.echo(f"graded {task_id}: {shown} (${cost:.4f})", err=True)

    summary = run_or_exit(
        grade(
            settings,
            tasks_path=tasks,
            reports=reports,
            out=out,
            trials=trials,
            batch=batch,
            protocol=protocol,
            mode=mode,
            failures=failures,
            prompts=prompts,
            concurrency=concurrency,
            max_report_tokens=max_report_tokens,
            cache=cache,
            on_task=progress,
        )
    )
    table = Table("task", "score", "failed items", "fatal", "cost")
    for scored in summary.scores:
        table.add_row(
            scored.task_id,
            f"{scored.score * 100:.1f}",
            str(scored.failed_items),
            "yes" if scored.fatal_hit else "",
            f"${summary.costs.get(scored.task_id, 0):.4f}",
        )
    Console().print(table)
    for problem in summary.problems:
        say(f"  {problem}", color="yellow")
    if summary.missing:
        say(f"  no report for: {', '.join(summary.missing)}", color="yellow")
    if summary.protocol is not None:
        typer.echo(f"protocol: {summary.protocol.describe()}")
    if summary.per_dimension:
        shown = ", ".join(f"{axis} {d['score']:.2f}" for axis, d in summary.per_dimension.items())
        typer.echo(f"by dimension (mean over tasks): {shown}")
    if len(summary.per_domain) > 1 or any(summary.per_domain):
        shown = ", ".join(
            f"{domain or '(none)'} {d['score']:.2f} ({d['tasks']})"
            for domain, d in summary.per_domain.items()
        )
        typer.echo(f"by domain: {shown}")
    score = "n/a" if summary.benchmark is None else f"{summary.benchmark:.2f}"
    zero = f"; {summary.zero_weight} weight-0 rubrics not graded" if summary.zero_weight else ""
    tokens = summary.usage.get("total_tokens", 0)
    typer.echo(
        f"benchmark score ({summary.mode}): {score} over {len(summary.scores)} tasks; "
        f"{summary.failed} failed gradings counted as {summary.failures}{zero}; "
        f"judge cost ${summary.usage.get('cost_usd', 0):.4f} ({tokens} tokens); records in {out}; "
        f"summary in {summary.summary_path}"
    )
    if summary.benchmark is None:  # asked for a score and got none
        say("error: no task could be scored", color="red")
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
