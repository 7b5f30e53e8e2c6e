"""What every sub-command shares: turning errors into exits, one-line messages, the run view.

A ``DeepResearchError`` becomes one line on stderr and exit 1 (a traceback only with ``--debug``), and
so does a missing optional extra, naming the ``pip install`` that brings it; Ctrl-C exits 130 and names
what to resume. The options that set ``Settings`` live in ``cli.options``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer

from deepresearch.errors import DeepResearchError
from deepresearch.terminal import printable

T = TypeVar("T")
STATE: dict[str, bool] = {"debug": False}


def setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def say(text: str, *, color: str | None = None) -> None:
    """One line on stderr for a person; what it quotes (a page, a reply, a task file) is made printable."""
    typer.secho(printable(text), fg=color, err=True)


def run_or_exit(coro: Coroutine[Any, Any, T], run_dir: Path | None = None, *, again: str = "") -> T:
    """Run ``coro``; on Ctrl-C name how to continue: ``resume RUN_DIR``, or ``again`` (a command)."""
    try:
        return asyncio.run(coro)
    except DeepResearchError as exc:
        if STATE["debug"]:
            raise
        say(f"error: {exc}", color="red")
        for note in getattr(exc, "__notes__", ()):
            say(note)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        where = f" — continue with: deepresearch resume {run_dir}" if run_dir and run_dir.exists() else ""
        where = f" — continue with: {again}" if again else where
        say(f"interrupted{where}", color="red")
        raise typer.Exit(130) from None


@contextmanager
def needs_extra(extra: str, command: str) -> Iterator[None]:
    """Imports inside this block that fail for a missing third-party module end the command with one
    line naming the optional extra to install (exit 1); a missing module of our own is a bug and raises."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if STATE["debug"] or not exc.name or exc.name.partition(".")[0] == "deepresearch":
            raise
        say(
            f"error: {command} needs the optional extra '{extra}' ({exc.name} is not installed): "
            f"pip install 'deepresearch[{extra}]'",
            color="red",
        )
        raise typer.Exit(1) from None


def research_view(max_steps: int, quiet: bool, run_dir: Path | None = None) -> Any:
    """The live panel on a terminal, else one line per step; ``None`` with ``--quiet``. The view is
    the event callback, and its ``prompt_progress`` the local model's prompt-loading callback."""
    if quiet:
        return None  # and rich, which only the views use, is never imported
    from deepresearch.display import LineView, LiveView, Progress

    progress = Progress(max_steps, run_dir=run_dir or "")
    return LiveView(progress) if sys.stderr.isatty() else LineView(progress)
