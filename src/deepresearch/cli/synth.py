"""``deepresearch synth …`` and ``deepresearch curate``: training data by atomic capability.

Each ``synth`` command is one pipeline of ``deepresearch.synth`` (JSONL out, resumable: run the same
command again after a kill and only what was not decided is done). It prints what it kept, dropped
(per reason) and spent, writes ``<out>.summary.json``, and exits 1 when it kept nothing at all or
left items undecided (a rerun retries those).
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from deepresearch.cli.common import run_or_exit, say
from deepresearch.cli.options import BUDGETS, ENDPOINT, JUDGE, MODEL, SEARCH, SettingsFlags, settings_options

synth_app = typer.Typer(
    no_args_is_help=True,
    help="Synthesise training data per atomic capability (planning, deep search, reflection, writing).",
)

OutOpt = Annotated[Path, typer.Option("--out", help="Output JSONL (its ledger and runs go beside it).")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", help="Items in flight at once.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
LanguageOpt = Annotated[
    Literal["auto", "en", "zh"], typer.Option("--language", help="Prompt language; auto: from the item.")
]
LimitOpt = Annotated[int, typer.Option("--limit", help="Items to make (seeds or walks).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the deterministic sampling.")]


def _finish(summary: Any, out: Path) -> None:
    """Print the summary, write it beside ``out``, and exit 1 when nothing was kept or items failed."""
    path = out.with_name(out.name + ".summary.json")
    path.write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    typer.echo(summary.describe())
    for error in summary.errors[:5]:
        say(f"  {error}", color="yellow")
    if summary.failed:
        say(
            f"error: {summary.failed} item(s) failed and were not decided; run the same command again to "
            "retry them",
            color="red",
        )
        raise typer.Exit(1)
    if summary.total_kept == 0:
        say(
            f"error: nothing was kept in {out}; see the reasons above and in {out.name}.ledger.jsonl",
            color="red",
        )
        raise typer.Exit(1)


def _run(coro: Coroutine[Any, Any, Any], out: Path) -> None:
    _finish(run_or_exit(coro, again="the same command (finished items are not redone)"), out)


@synth_app.command("plan")
@settings_options(*ENDPOINT, *SEARCH, *MODEL, *BUDGETS)
def synth_plan_command(
    documents: Annotated[
        Path, typer.Option("--documents", help="Folder of documents (Markdown, HTML, PDF).")
    ],
    out: OutOpt,
    run_agent: Annotated[
        bool, typer.Option("--run-agent", help="Also run the agent on each task and keep it only if aligned.")
    ] = False,
    min_alignment: Annotated[
        float, typer.Option("--min-alignment", help="Least plan alignment of a kept run (0-1).")
    ] = 0.6,
    concurrency: ConcurrencyOpt = 4,
    quiet: QuietOpt = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Planning by reverse engineering: a task and a high-level plan written back from each document."""
    from deepresearch.synth.plan import synth_plan

    _run(
        synth_plan(
            flags.settings(),
            documents=documents,
            out=out,
            run_agent=run_agent,
            min_alignment=min_alignment,
            concurrency=concurrency,
            progress=not quiet,
        ),
        out,
    )


@synth_app.command("kg")
@settings_options(*ENDPOINT, *SEARCH, *MODEL)
def synth_kg_command(
    out: OutOpt,
    triples: Annotated[
        Path | None,
        typer.Option("--triples", help="Triples (TSV or JSONL); default: the Debian example that ships."),
    ] = None,
    entity_labels: Annotated[
        Path | None, typer.Option("--entity-labels", help="Wikidata5m-style id→aliases file for entities.")
    ] = None,
    relation_labels: Annotated[
        Path | None, typer.Option("--relation-labels", help="Wikidata5m-style id→aliases file for relations.")
    ] = None,
    limit: LimitOpt = 20,
    seed: SeedOpt = 0,
    min_nodes: Annotated[int, typer.Option("--min-nodes", help="Smallest subgraph (BFS).")] = 10,
    max_nodes: Annotated[int, typer.Option("--max-nodes", help="Largest subgraph (BFS).")] = 40,
    max_degree: Annotated[
        int, typer.Option("--max-degree", help="Nodes of a higher degree are leaves, not expanded.")
    ] = 1000,
    language: LanguageOpt = "auto",
    concurrency: ConcurrencyOpt = 4,
    quiet: QuietOpt = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Deep search from a knowledge graph: search-verified subgraphs become obfuscated multi-hop questions."""
    from deepresearch.synth.kg import example_triples_path, synth_kg

    _run(
        synth_kg(
            flags.settings(),
            triples=triples or example_triples_path(),
            out=out,
            entity_labels=entity_labels,
            relation_labels=relation_labels,
            limit=limit,
            seed=seed,
            min_nodes=min_nodes,
            max_nodes=max_nodes,
            max_degree=max_degree,
            language=language,
            concurrency=concurrency,
            progress=not quiet,
        ),
        out,
    )


@synth_app.command("walk")
@settings_options(*ENDPOINT, *SEARCH, *MODEL)
def synth_walk_command(
    out: OutOpt,
    limit: LimitOpt = 20,
    seed: SeedOpt = 0,
    walk_steps: Annotated[int, typer.Option("--walk-steps", help="Documents visited per walk.")] = 4,
    language: LanguageOpt = "auto",
    concurrency: ConcurrencyOpt = 4,
    quiet: QuietOpt = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Deep search by hyperlink walk over the local index; a question answered by facts along the path."""
    from deepresearch.synth.walk import synth_walk

    _run(
        synth_walk(
            flags.settings(),
            out=out,
            limit=limit,
            seed=seed,
            max_steps=walk_steps,
            language=language,
            concurrency=concurrency,
            progress=not quiet,
        ),
        out,
    )


@synth_app.command("difficulty")
@settings_options(*ENDPOINT, *SEARCH, *MODEL, *BUDGETS, *JUDGE)
def synth_difficulty_command(
    questions: Annotated[Path, typer.Option("--questions", help="Questions with answers (JSONL).")],
    out: OutOpt,
    concurrency: ConcurrencyOpt = 2,
    quiet: QuietOpt = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Difficulty filter: run the baseline (--model) through the agent; drop what it solves."""
    from deepresearch.synth.difficulty import synth_difficulty

    _run(
        synth_difficulty(
            flags.settings(), questions=questions, out=out, concurrency=concurrency, progress=not quiet
        ),
        out,
    )


@synth_app.command("reflect")
@settings_options(*ENDPOINT, *SEARCH, *MODEL, *BUDGETS, *JUDGE)
def synth_reflect_command(
    questions: Annotated[Path, typer.Option("--questions", help="Questions with answers (JSONL).")],
    out: OutOpt,
    max_reflections: Annotated[
        int, typer.Option("--max-reflections", help="Reflection turns after a wrong answer.")
    ] = 3,
    concurrency: ConcurrencyOpt = 2,
    quiet: QuietOpt = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Reflection: a wrong answer gets a reflection turn and a retry; corrected trajectories are kept."""
    from deepresearch.synth.reflect import synth_reflect

    _run(
        synth_reflect(
            flags.settings(),
            questions=questions,
            out=out,
            max_reflections=max_reflections,
            concurrency=concurrency,
            progress=not quiet,
        ),
        out,
    )


@synth_app.command("verify")
@settings_options(*ENDPOINT, *SEARCH, *MODEL)
def synth_verify_command(
    paragraphs: Annotated[Path, typer.Option("--paragraphs", help="Paragraphs to fact-check (JSONL).")],
    out: OutOpt,
    max_rounds: Annotated[int, typer.Option("--max-rounds", help="Verify/replan rounds.")] = 3,
    concurrency: ConcurrencyOpt = 4,
    quiet: QuietOpt = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Verification traces: extract, plan, verify with search, replan, report; linearised for training."""
    from deepresearch.synth.verify import synth_verify

    _run(
        synth_verify(
            flags.settings(),
            paragraphs=paragraphs,
            out=out,
            max_rounds=max_rounds,
            concurrency=concurrency,
            progress=not quiet,
        ),
        out,
    )


@synth_app.command("draft")
@settings_options(*ENDPOINT, *SEARCH, *MODEL)
def synth_draft_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories, or folders of them.")],
    out: OutOpt,
    concurrency: ConcurrencyOpt = 4,
    quiet: QuietOpt = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Report writing: reasoned paragraphs drafted from a run's evidence, kept only when judged better."""
    from deepresearch.synth.draft import synth_draft

    _run(synth_draft(flags.settings(), runs=runs, out=out, concurrency=concurrency, progress=not quiet), out)


@synth_app.command("rubrics")
@settings_options(*ENDPOINT, *JUDGE)
def synth_rubrics_command(
    source: Annotated[
        Path, typer.Option("--from", help="Seeds, or the output of synth plan, kg or walk (JSONL).")
    ],
    out: Annotated[Path, typer.Option("--out", help="RL tasks with rubrics (JSONL).")],
    threshold: Annotated[float, typer.Option("--threshold", help="Least judge consistency to keep.")] = 0.7,
    concurrency: ConcurrencyOpt = 4,
    *,
    flags: SettingsFlags,
) -> None:
    """RL tasks: two-step reverse rubric synthesis (the judge's) over seeds or another pipeline's output."""
    from deepresearch.synth.rubrics import synth_rubrics

    report, problems = run_or_exit(
        synth_rubrics(flags.settings(), source=source, out=out, threshold=threshold, concurrency=concurrency)
    )
    for problem in problems[:10]:
        say(f"  {problem}", color="yellow")
    discarded = ", ".join(f"{reason} {count}" for reason, count in report.discarded.items()) or "none"
    typer.echo(
        f"kept {report.kept}; discarded: {discarded}; failed {report.failed}; "
        f"skipped {report.skipped} already done; cost ${report.cost_usd:.4f}; tasks in {out}"
    )
    if report.failed:
        say(f"error: {report.failed} seed(s) failed; run the same command again to retry them", color="red")
        raise typer.Exit(1)
    if report.kept == 0 and report.skipped == 0:
        say("error: no task was kept", color="red")
        raise typer.Exit(1)


def curate_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories, or folders of them.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for sft.jsonl, midtrain.jsonl and card.md.")],
    answers: Annotated[
        Path | None, typer.Option("--answers", help="Expected answers (JSONL: question or task_id, answer).")
    ] = None,
    documents: Annotated[
        Path | None, typer.Option("--documents", help="Documents for stage-I mid-training text.")
    ] = None,
    error_quota: Annotated[
        float, typer.Option("--error-quota", help="Share of kept runs that recover from tool errors.")
    ] = 0.1,
    min_alignment: Annotated[
        float, typer.Option("--min-alignment", help="Least plan alignment (runs whose task has a plan).")
    ] = 0.6,
) -> None:
    """Curate agent runs into training data: deterministic filters, sft.jsonl, midtrain.jsonl, card.md."""
    from deepresearch.curate.pipeline import curate
    from deepresearch.errors import DeepResearchError

    try:
        report = curate(
            runs,
            out=out,
            answers=answers,
            documents=documents,
            error_quota=error_quota,
            min_alignment=min_alignment,
        )
    except DeepResearchError as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    typer.echo(report.describe())
    if not report.kept:
        say(f"error: no run was kept; the reasons are in {out / 'decisions.jsonl'}", color="red")
        raise typer.Exit(1)
