"""``deepresearch bench …``: run the agent over a task set, grade it, report, and compare systems."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from deepresearch.cli.common import run_or_exit, say
from deepresearch.cli.grading import (
    FailuresOpt,
    PromptsOpt,
    ProtocolModeOpt,
    ProtocolOpt,
    QueriesOpt,
    ReferencesOpt,
    print_progress,
)
from deepresearch.cli.options import BUDGETS, ENDPOINT, JUDGE, MODEL, SEARCH, SettingsFlags, settings_options
from deepresearch.errors import DeepResearchError

bench_app = typer.Typer(
    no_args_is_help=True,
    help="Benchmarks: run the agent over a task set, grade the reports, compare systems head to head.",
)

RootOpt = Annotated[Path, typer.Option("--root", help="Folder holding the benchmarks.")]
DEFAULT_ROOT = Path("bench")
RUN_BUDGETS = tuple("max_run_cost" if name == "max_cost" else name for name in BUDGETS)
"""Each task's budgets: ``--max-cost`` is the whole benchmark's, ``--max-run-cost`` one run's."""
ModeOpt = Annotated[
    Literal["ternary", "binary", "strict"] | None,
    typer.Option("--mode", help="ternary, binary or strict (default: the mode the benchmark was graded in)."),
]


def _fail(exc: DeepResearchError) -> typer.Exit:
    say(f"error: {exc}", color="red")
    return typer.Exit(1)


def _resolve(names: list[str], root: Path) -> list[Path]:
    from deepresearch.bench.compare import resolve_bench

    try:
        return [resolve_bench(name, root) for name in names]
    except DeepResearchError as exc:
        raise _fail(exc) from None


@bench_app.command("run")
@settings_options(*ENDPOINT, *SEARCH, *RUN_BUDGETS, *MODEL, "language")
def bench_run(
    tasks: Annotated[Path, typer.Option("--tasks", help="Task file (ResearchRubrics, DRB, ours, …).")],
    name: Annotated[str, typer.Option("--name", help="The benchmark's name (its folder under bench/).")],
    bench_dir: Annotated[
        Path | None, typer.Option("--dir", help="The benchmark's folder (default ./bench/NAME).")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Tasks run at once.")] = 8,
    executor: Annotated[
        Literal["local", "ray"], typer.Option("--executor", help="local (asyncio) or ray.")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster to join (default: start a local Ray).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Run only the first N tasks.")] = None,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="USD limit for the whole benchmark.")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed/--keep-failed", help="Run failed tasks again.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Run the agent on every task (resumable: run it again to continue); one run directory per task."""
    from deepresearch.bench.progress import bench_view
    from deepresearch.bench.runner import run_benchmark

    settings = flags.settings()
    if executor == "local" or ray_address is None:  # a cluster's workers may keep their index elsewhere
        from deepresearch.search.backends import check_search

        try:  # every task would fail the same way: say it once, before anything is created
            check_search(settings)
        except DeepResearchError as exc:
            raise _fail(exc) from None
    view = bench_view(quiet=quiet)
    again = "the same command (finished tasks are skipped, interrupted ones resumed)"
    summary = run_or_exit(
        run_benchmark(
            settings,
            tasks_path=tasks,
            name=name,
            bench_dir=bench_dir,
            concurrency=concurrency,
            executor=executor,
            ray_address=ray_address,
            limit=limit,
            max_cost=max_cost,
            retry_failed=retry_failed,
            on_update=view,
        ),
        again=f"{again}: deepresearch {shlex.join(sys.argv[1:])}" if sys.argv[1:] else again,
    )
    for error in summary.load_errors:
        say(f"  skipped task: {error}", color="yellow")
    for row in summary.rows:
        if row.status == "failed":
            say(f"  failed {row.task_id}: {row.error}", color="yellow")
    for note in summary.notes():
        say(f"  {note}", color="yellow")
    from deepresearch.runs import FAILED_OUTCOMES

    uncited = [row for row in summary.rows if row.status == "done" and row.outcome in FAILED_OUTCOMES]
    if uncited:  # done, and graded as such (a report that cites nothing scores what it scores)
        listed = ", ".join(f"{row.task_id} ({row.outcome})" for row in uncited[:10])
        more = f" and {len(uncited) - 10} more" if len(uncited) > 10 else ""
        say(f"  {len(uncited)} task(s) done without a cited report: {listed}{more}", color="yellow")
    typer.echo(
        f"{summary.name}: {summary.done} done, {summary.failed} failed, {summary.pending} pending "
        f"({len(summary.ran)} run now, {len(summary.resumed)} resumed, {len(summary.skipped)} already done); "
        f"${summary.spent_usd:.4f} spent; results in {summary.bench_dir}"
    )
    if summary.failed or summary.pending:
        raise typer.Exit(1)


@bench_app.command("grade")
@settings_options(*JUDGE)
def bench_grade(
    names: Annotated[list[str], typer.Argument(help="Benchmarks (names under --root, or folders).")],
    root: RootOpt = DEFAULT_ROOT,
    tasks: Annotated[
        Path | None, typer.Option("--tasks", help="Task file with rubrics (default: the one it ran).")
    ] = None,
    trials: Annotated[int, typer.Option("--trials", help="Independent gradings per rubric (paper: 3).")] = 1,
    batch: Annotated[int, typer.Option("--batch", help="Rubrics per judge call.")] = 1,
    protocol: ProtocolOpt = "auto",
    mode: ProtocolModeOpt = None,
    failures: FailuresOpt = None,
    prompts: PromptsOpt = None,
    references: ReferencesOpt = None,
    queries: QueriesOpt = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Judge requests in flight at once.")] = 8,
    max_report_tokens: Annotated[
        int, typer.Option("--max-report-tokens", help="Longer reports are judged in chunks.")
    ] = 100_000,
    cache: Annotated[Path | None, typer.Option("--cache", help="Verdict cache (SQLite).")] = None,
    *,
    flags: SettingsFlags,
) -> None:
    """Grade every finished report with the judge under the task file's protocol, as judge grade does.

    Per-rubric records go into the benchmark's store; a DeepResearch Bench task set with its reference
    articles is scored by RACE (race.jsonl and race-summary.json beside the store).
    """
    from deepresearch.bench.grading import grade_benchmark

    settings = flags.settings()
    unscored: list[str] = []
    for bench in _resolve(names, root):
        graded = run_or_exit(
            grade_benchmark(
                settings,
                bench,
                tasks_path=tasks,
                trials=trials,
                batch=batch,
                protocol=protocol,
                mode=mode,
                failures=failures,
                prompts=prompts,
                references=references,
                queries=queries,
                concurrency=concurrency,
                max_report_tokens=max_report_tokens,
                cache=cache,
                on_task=print_progress(f"{bench.name}: "),
            )
        )
        for problem in graded.problems:
            say(f"  {problem}", color="yellow")
        if graded.without_rubrics:
            typer.secho(
                f"  {len(graded.without_rubrics)} task(s) have no rubrics (compare them pairwise)",
                fg="yellow",
                err=True,
            )
        if graded.protocol is not None:
            typer.echo(f"{bench.name}: protocol: {graded.protocol.describe()}")
        score = "n/a" if graded.benchmark is None else f"{graded.benchmark:.1f}"
        label = "RACE" if graded.race is not None else graded.protocol.mode if graded.protocol else "n/a"
        typer.echo(
            f"{bench.name}: score ({label}) {score} over {graded.tasks_scored} "
            f"task(s); {graded.failed} failed gradings; {len(graded.not_finished)} without a finished "
            f"report; {graded.calls} judge calls, ${graded.usage.get('cost_usd', 0):.4f}"
        )
        if graded.failed:
            say(f"  {graded.failed} of {graded.gradings} gradings failed (see the judge's errors above)")
        if graded.benchmark is None or graded.judge_failed:
            unscored.append(bench.name)
    if unscored:  # asked for scores and got none (or only failures) for these
        names_shown = ", ".join(unscored)
        say(f"error: no task could be scored in {names_shown}: the judge gave no verdict", color="red")
        raise typer.Exit(1)


@bench_app.command("report")
def bench_report(
    names: Annotated[list[str], typer.Argument(help="Benchmarks (names under --root, or folders).")],
    root: RootOpt = DEFAULT_ROOT,
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML report (default: ROOT/report.html).")
    ] = None,
    mode: ModeOpt = None,
) -> None:
    """Print a table of the benchmarks and write an HTML report with plots."""
    from rich.console import Console

    from deepresearch.bench.report import bench_stats, stats_table, write_html_report

    stats = [bench_stats(bench, mode=mode) for bench in _resolve(names, root)]
    Console().print(stats_table(stats))
    try:
        path = write_html_report(stats, out or root / "report.html")
    except DeepResearchError as exc:
        raise _fail(exc) from None
    typer.echo(f"report: {path}")


@bench_app.command("compare")
@settings_options(*JUDGE)
def bench_compare(
    names: Annotated[list[str], typer.Argument(help="Two or more benchmarks (names or folders).")],
    root: RootOpt = DEFAULT_ROOT,
    source: Annotated[
        Literal["llm", "human", "both"],
        typer.Option("--source", help="Count LLM verdicts, human verdicts (--verdicts), or both."),
    ] = "both",
    verdicts: Annotated[
        list[Path] | None,
        typer.Option("--verdicts", help="More verdicts (JSONL, e.g. from bench import-pairs)."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Judge calls at once.")] = 4,
    missing: Annotated[
        Literal["failed", "loss"],
        typer.Option("--missing", help="A task only one side finished: failed, or a loss for the other."),
    ] = "failed",
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.")] = 2000,
    *,
    flags: SettingsFlags,
) -> None:
    """Judge the systems' reports pairwise (both orders), print win/tie/loss and, for 3+, Elo ratings."""
    from rich.console import Console
    from rich.table import Table

    from deepresearch.bench.compare import compare_benchmarks, read_verdicts
    from deepresearch.bench.pairwise import summary_table

    benches = _resolve(names, root)
    settings = None
    if source != "human":
        settings = flags.settings()
    try:
        extra = [v for path in verdicts or [] for v in read_verdicts(path)]
    except (DeepResearchError, OSError) as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    result = run_or_exit(
        compare_benchmarks(
            settings,
            benches,
            root=root,
            source=source,
            extra=extra,
            concurrency=concurrency,
            missing=missing,
            resamples=resamples,
        )
    )
    console = Console()
    for pair in result.pairs:
        console.print(summary_table(pair))
        if pair.order_agreement is not None:
            typer.echo(f"  the two presentation orders agreed on {pair.order_agreement:.0%} of tasks")
    if result.elo:
        table = Table("system", "Elo", "95% CI", title="Bradley–Terry ratings (overall)")
        for system, interval in sorted(result.elo.items(), key=lambda item: -item[1].estimate):
            table.add_row(system, f"{interval.estimate:.0f}", f"{interval.low:.0f}–{interval.high:.0f}")
        console.print(table)
    for problem in result.problems:
        say(f"  {problem}", color="yellow")
    files = ", ".join(str(path) for path in result.verdict_files) or "none"
    typer.echo(f"judge cost ${result.cost_usd:.4f}; verdicts in {files}")


@bench_app.command("export-pairs")
def bench_export_pairs(
    names: Annotated[list[str], typer.Argument(help="The two benchmarks (names or folders).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for pairs.csv, pairs.html and key.json.")],
    root: RootOpt = DEFAULT_ROOT,
    seed: Annotated[int, typer.Option("--seed", help="Decides which report is shown first.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export.")] = False,
) -> None:
    """Export blinded report pairs for human reviewers (CSV to fill in, HTML to read, a key kept apart)."""
    from deepresearch.bench.annotation import export_pairs
    from deepresearch.bench.compare import load_bench_reports

    if len(names) != 2:
        raise _fail(DeepResearchError("export-pairs takes exactly two benchmarks"))
    bench_a, bench_b = _resolve(names, root)
    (reports_a, prompts_a), (reports_b, prompts_b) = load_bench_reports(bench_a), load_bench_reports(bench_b)
    try:
        exported = export_pairs(
            reports_a,
            reports_b,
            {**prompts_b, **prompts_a},
            name_a=bench_a.name,
            name_b=bench_b.name,
            out_dir=out,
            seed=seed,
            overwrite=overwrite,
        )
    except DeepResearchError as exc:
        raise _fail(exc) from None
    for task_id, why in exported.skipped.items():
        say(f"  skipped {task_id}: {why}", color="yellow")
    typer.echo(
        f"{len(exported.key.pairs)} pair(s) in {out}: give reviewers pairs.csv and pairs.html; keep "
        f"key.json to import their answers (deepresearch bench import-pairs {out / 'pairs.csv'} "
        f"--key {out / 'key.json'})"
    )


@bench_app.command("import-pairs")
def bench_import_pairs(
    sheet: Annotated[Path, typer.Argument(help="The filled-in pairs.csv.")],
    key: Annotated[Path, typer.Option("--key", help="key.json from the export.")],
    out: Annotated[Path, typer.Option("--out", help="Verdicts (JSONL) for bench compare --verdicts.")] = Path(
        "human-verdicts.jsonl"
    ),
    reviewer: Annotated[
        str, typer.Option("--reviewer", help="Name for rows that leave the reviewer column empty.")
    ] = "reviewer",
) -> None:
    """Import reviewers' verdicts; count them with: bench compare A B --verdicts FILE --source human."""
    from deepresearch.bench.annotation import import_pairs
    from deepresearch.bench.compare import write_verdicts

    try:
        imported = import_pairs(sheet, key, reviewer_default=reviewer)
    except (DeepResearchError, OSError) as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    write_verdicts(out, imported.verdicts)
    for error in imported.errors:
        say(f"  {error}", color="yellow")
    typer.echo(
        f"{len(imported.verdicts)} verdict(s) from {imported.annotated} answered row(s) in {out}; "
        f"{imported.unannotated} blank row(s), {len(imported.pending)} pair(s) nobody answered, "
        f"{len(imported.errors)} error(s)"
    )
    if imported.errors:
        raise typer.Exit(1)
