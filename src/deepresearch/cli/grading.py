"""What ``judge grade``, ``judge race`` and ``bench grade`` share: the protocol options and the printout
of a grading summary (the ``summary.json`` object of ``judge.commands``), whatever the protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from deepresearch.cli.common import say

ProtocolOpt = Annotated[
    Literal["auto", "researchrubrics", "researcherbench", "deepresearchbench", "ours"],
    typer.Option(
        "--protocol",
        help="Scoring protocol: researchrubrics (ternary), researcherbench (binary), ours (ternary), all "
        "counting failed gradings as 0; deepresearchbench (RACE against the reference articles); auto "
        "picks it from the task file's format.",
    ),
]
ProtocolModeOpt = Annotated[
    Literal["ternary", "binary", "strict"] | None,
    typer.Option("--mode", help="ternary, binary or strict; overrides the protocol's mode."),
]
FailuresOpt = Annotated[
    Literal["zero", "skip"] | None,
    typer.Option(
        "--failures",
        help="A failed grading: zero (official: worth 0, weight kept) or skip (left out of both sums); "
        "overrides the protocol's (zero).",
    ),
]
PromptsOpt = Annotated[
    Literal["paper", "official"] | None,
    typer.Option(
        "--prompts",
        help="Judge prompts: official (the benchmark's released evaluator: ResearchRubrics binary with "
        "axis and weight, no task prompt; ResearcherBench covered or not, with the weight) or paper "
        "(ternary, with negative-rubric handling); overrides the protocol's (official for the two "
        "benchmarks, paper for ours).",
    ),
]
ReferencesOpt = Annotated[
    Path | None,
    typer.Option(
        "--references",
        help="DeepResearch Bench's reference.jsonl, for RACE (default: where the benchmark ships it, "
        "data/test_data/cleaned_data/, or beside the criteria).",
    ),
]
QueriesOpt = Annotated[
    Path | None,
    typer.Option(
        "--queries",
        help="DeepResearch Bench's query.jsonl: each task's language and topic (default: "
        "data/prompt_data/, or beside the criteria).",
    ),
]
FactOpt = Annotated[
    bool,
    typer.Option(
        "--fact",
        help="Also check every citation against the page it cites (fetches each cited URL once): "
        "FACT accuracy and effective citations, ResearcherBench faithfulness and groundedness.",
    ),
]


def print_progress(prefix: str = "") -> Any:
    """An ``on_task`` callback that prints each graded task on stderr."""

    def progress(task_id: str, score: float | None, cost: float) -> None:
        shown = "n/a" if score is None else f"{score * 100:.1f}"
        typer.echo(f"{prefix}graded {task_id}: {shown} (${cost:.4f})", err=True)

    return progress


def judge_gave_nothing(summary: dict[str, Any]) -> bool:
    """Every grading failed: the score (0 per failure, officially) measures the judge, not the reports."""
    failed = summary["failed"]
    return bool(failed.get("of")) and failed["gradings"] == failed["of"]


def print_summary(summary: dict[str, Any], *, records: Path, summary_path: Path) -> None:
    """The per-task table, the problems, the protocol, the breakdowns and the headline line."""
    from rich.console import Console
    from rich.table import Table

    table = Table("task", "score", "failed items", "fatal", "cost")
    for task_id, task in summary["per_task"].items():
        table.add_row(
            task_id,
            "n/a" if task["score"] is None else f"{task['score']:.1f}",
            str(task["failed_gradings"]),
            "yes" if task.get("fatal") else "",
            f"${task['cost_usd']:.4f}",
        )
    Console().print(table)
    failed = summary["failed"]
    for problem in summary.get("problems", []):
        say(f"  {problem}", color="yellow")
    for task_id, why in failed["unscored_tasks"].items():
        if not any(problem.startswith(f"{task_id}:") for problem in summary.get("problems", [])):
            say(f"  {task_id}: {why}", color="yellow")
    if failed["missing_reports"]:
        say(f"  no report for: {', '.join(failed['missing_reports'])}", color="yellow")
    protocol = summary["protocol"]
    typer.echo(f"protocol: {protocol['description']}")
    if protocol["chosen"].startswith("auto (drb task file"):
        say(f"  {protocol['chosen']}", color="yellow")
    if summary["per_dimension"]:
        shown = ", ".join(f"{axis} {d['score']:.2f}" for axis, d in summary["per_dimension"].items())
        typer.echo(f"by dimension (mean over tasks): {shown}")
    domains = summary["per_domain"]
    if len(domains) > 1 or any(domains):
        shown = ", ".join(
            f"{domain or '(none)'} {d['score']:.2f} ({d['tasks']})" for domain, d in domains.items()
        )
        typer.echo(f"by domain: {shown}")
    citations = summary.get("citations")
    if citations is not None:
        print_citations(citations)
    overall = "n/a" if summary["overall"] is None else f"{summary['overall']:.2f}"
    race = protocol["name"] == "deepresearchbench"
    label = "RACE" if race else protocol["mode"]
    if race:
        failures = f"{failed['gradings']} failed criteria {failed['counted_as']}"
    else:
        failures = f"{failed['gradings']} failed gradings counted as {failed['counted_as']}"
        if summary.get("zero_weight_rubrics"):
            failures += f"; {summary['zero_weight_rubrics']} weight-0 rubrics not graded"
    typer.echo(
        f"benchmark score ({label}): {overall} over {summary['tasks_scored']} tasks; {failures}; "
        f"judge cost ${summary['cost']['usd']:.4f} ({summary['tokens']['total_tokens']} tokens); "
        f"records in {records}; summary in {summary_path}"
    )


def print_citations(summary: dict[str, Any]) -> None:
    """FACT and ResearcherBench's citation numbers of ``judge.commands.check_citations``."""

    def shown(value: float | None, scale: float = 100.0) -> str:
        return "n/a" if value is None else f"{value * scale:.2f}"

    typer.echo(
        f"FACT citation accuracy: {shown(summary['citation_accuracy'])}; effective citations: "
        f"{shown(summary['effective_citations'], 1.0)} per task over {summary['tasks_with_citations']} tasks"
    )
    typer.echo(
        f"ResearcherBench faithfulness: {shown(summary['faithfulness'])}; "
        f"groundedness: {shown(summary['groundedness'])} over {summary['tasks']} reports"
    )
    verdicts = ", ".join(f"{name} {count}" for name, count in sorted(summary["pair_verdicts"].items()))
    typer.echo(
        f"citation pairs: {verdicts or 'none'}; {summary['fetches']} URLs fetched; judge tokens "
        f"{summary['tokens']}, cost ${summary['cost_usd']:.4f}; results in {summary['results']}"
    )
