"""What every sub-command shares: the agent's flags, settings loading, and turning errors into exits.

Flags win over ``DEEPRESEARCH_*`` over ``deepresearch.toml``; a ``DeepResearchError`` becomes one line on
stderr and exit 1 (a traceback only with ``--debug``); Ctrl-C exits 130 and names what to resume.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from deepresearch.errors import DeepResearchError

T = TypeVar("T")
STATE: dict[str, bool] = {"debug": False}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="deepresearch.toml to read (default: ./deepresearch.toml).")
]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint (env DEEPRESEARCH_BASE_URL).")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name (env DEEPRESEARCH_MODEL).")]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", help="API key (env DEEPRESEARCH_API_KEY or OPENAI_API_KEY).")
]
SearchOpt = Annotated[
    str | None,
    typer.Option(
        "--search",
        help="Search backend: local, auto, searxng, tavily, brave, serper, exa, jina, stepfun or ddg "
        "(env DEEPRESEARCH_SEARCH).",
    ),
]
IndexOpt = Annotated[Path | None, typer.Option("--index", help="Local index file (env DEEPRESEARCH_INDEX).")]
MaxStepsOpt = Annotated[
    int | None, typer.Option("--max-steps", help="Steps before the final answer is forced (30).")
]
MaxCostOpt = Annotated[float | None, typer.Option("--max-cost", help="USD budget for the run.")]
MaxTokensOpt = Annotated[
    int | None, typer.Option("--max-tokens", help="Token budget for the run (all calls).")
]
MaxTimeOpt = Annotated[float | None, typer.Option("--max-time", help="Wall-clock budget in seconds.")]


def setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def run_or_exit(coro: Coroutine[Any, Any, T], run_dir: Path | None = None, *, again: str = "") -> T:
    """Run ``coro``; on Ctrl-C name how to continue: ``resume RUN_DIR``, or ``again`` (a command)."""
    try:
        return asyncio.run(coro)
    except DeepResearchError as exc:
        if STATE["debug"]:
            raise
        typer.secho(f"error: {exc}", fg="red", err=True)
        for note in getattr(exc, "__notes__", ()):
            typer.echo(note, err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        where = f" — continue with: deepresearch resume {run_dir}" if run_dir and run_dir.exists() else ""
        where = f" — continue with: {again}" if again else where
        typer.secho(f"interrupted{where}", fg="red", err=True)
        raise typer.Exit(130) from None


def cli_settings(config: Path | None, **flags: Any) -> Any:
    from deepresearch.config import load_settings

    try:
        return load_settings(flags, config_file=config)
    except DeepResearchError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def research_view(max_steps: int, quiet: bool) -> Any:
    from deepresearch.display import LineView, LiveView, Progress

    if quiet:
        return None
    progress = Progress(max_steps)
    return LiveView(progress) if sys.stderr.isatty() else LineView(progress)
