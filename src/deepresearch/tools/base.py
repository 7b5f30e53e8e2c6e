"""The tool contract: a pydantic argument model plus one async function returning a ``ToolResult``.

The JSON schema the model sees comes from the argument model; the description from the prompt-data
file ``tools/prompts/<name>.md``, so model-facing wording stays out of the code. A tool never raises
for a mistake the model made: it raises ``ToolError`` (or anything else) and the executor turns that
into an ``Error: …`` tool message, so the run goes on.

A tool owns everything about itself, so that nothing outside ``tools/`` switches on a tool's name:
how a call reads to a person (``Tool.describe``), a line about its result (``Tool.summarize``), the
bounded shape of its free-form arguments in JSON action mode (``Tool.constrained``), how to search
the web with it if it can (``Tool.search_arguments``), and the sources and state a call produced,
which it returns in its ``ToolResult`` rather than leaving them on the context.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from deepresearch.llm.jsonmode import CONSTRAINED_ARGUMENTS
from deepresearch.sources import Source, SourceRegistry

if TYPE_CHECKING:
    from deepresearch.fetch import Fetcher
    from deepresearch.search import SearchBackend


DEFAULT_WORKSPACE_MAX_BYTES = 1024 * 1024 * 1024
"""The workspace quota when the run sets none (``Settings.workspace_max_mb``)."""


@dataclass(slots=True)
class ToolResult:
    """What a call produced: ``text`` for the model, ``data`` (JSON-able) for the event log.

    ``compact`` is a shorter stand-in for ``text`` that the context policy may swap in when the
    context is full (search results without page contents); ``None`` means the result cannot shrink.
    """

    text: str
    data: dict[str, Any] = field(default_factory=dict)
    compact: str | None = None
    is_error: bool = False
    sources: list[Source] = field(default_factory=list)
    """The sources this call showed the model (from ``ToolContext.cite``, so their keys are final), in
    the order it saw them: recorded with the result, which is how a resumed run knows them."""
    state: dict[str, Any] | None = None
    """Keys of the run's tool state this call set, with their new values (``{"todo": plan}``); the
    executor merges them into the state at once, and the new state is recorded with the result."""


class ShellConfig(BaseModel):
    """Limits of the ``shell`` tool."""

    sandbox: Literal["auto", "bwrap", "unshare", "none"] = "auto"
    """`auto` uses bubblewrap when it works here, else `unshare` (network only), else nothing (recorded)."""
    max_timeout: int = 600
    """Upper bound in seconds for the `timeout` argument the model passes (0 means this bound)."""
    memory_mb: int = 2048
    """Memory limit of one call, all its processes together (cgroup), else per process (RLIMIT_AS)."""
    max_file_mb: int = 256
    """Largest file a command may write (RLIMIT_FSIZE)."""
    max_processes: int = 256
    """Process limit inside the sandbox (RLIMIT_NPROC), the fork-bomb guard."""
    output_tail_chars: int = 10240
    """Characters of stdout and of stderr shown to the model (the tail, like a terminal)."""
    max_capture_bytes: int = 16 * 1024 * 1024
    """Output captured per command; a command that prints more is killed."""
    extra_ro_binds: list[str] = Field(default_factory=list)
    """More host paths made visible read-only inside the bubblewrap sandbox."""


@dataclass
class ToolContext:
    """What a tool may touch during one call. Built by the agent, one per call."""

    workspace: Path
    sources: SourceRegistry
    state: dict[str, Any]
    """Tool state that survives the step (e.g. the todo list), to read: a tool returns what it changes
    in ``ToolResult.state``. Snapshotted into events, restored on resume."""
    step: int = 0
    call_id: str = ""
    search: SearchBackend | None = None
    fetcher: Fetcher | None = None
    shell: ShellConfig = field(default_factory=ShellConfig)
    workspace_max_bytes: int = DEFAULT_WORKSPACE_MAX_BYTES
    """Disk quota of ``workspace`` (all files in it), enforced by the tools that write there."""

    def cite(self, url: str, *, title: str = "", snippet: str = "", fetched: bool = False) -> Source:
        """The source for ``url``, registered in the run's registry now, so that its key is final and
        can go into the result text; return it in ``ToolResult.sources`` to have the sighting recorded."""
        return self.sources.add(url, title=title, snippet=snippet, fetched=fetched, step=self.step)


ToolFunction = Callable[[Any, ToolContext], Awaitable[ToolResult]]
Describer = Callable[[dict[str, Any]], str]
"""A call's arguments (parsed, not validated: whatever the model wrote) → one short line for a person."""
Summarizer = Callable[[ToolResult], str | None]
"""A result → one short line for a person, or ``None`` when the tool has nothing to say about it."""


@dataclass(frozen=True)
class Tool:
    """A named tool: its argument model, its description, the coroutine that runs it, and how it
    presents itself (to a person, to JSON action mode, to the loop's guard search)."""

    name: str
    args: type[BaseModel]
    run: ToolFunction
    description: str = ""
    parameters: dict[str, Any] | None = field(default=None, hash=False)
    """A JSON schema shown to the model instead of the one built from ``args``: for a tool whose
    schema comes from elsewhere (an MCP server's ``inputSchema``), whose ``args`` model then accepts
    any object and whose owner validates the arguments."""
    describer: Describer | None = None
    """How a call reads to a person (``describe``); without one, the tool's name."""
    summarizer: Summarizer | None = None
    """A line about a result (``summarize``); without one (or when it says nothing), only a failure
    gets a line."""
    constrained: dict[str, dict[str, Any]] | None = field(default=None, hash=False)
    """Bounded JSON schemas of free-form object arguments, by argument name: the shape JSON action
    mode constrains them to instead of a generic map of flat values (``schema(constrained=True)``).
    Each must already be bounded in the keywords ``llm/jsonmode.py`` allows."""
    search_arguments: Callable[[str], dict[str, Any]] | None = None
    """The arguments of a call that searches the web for a query, for a tool that can: the loop's
    guard search (a run that has seen no source yet) uses the first tool that has them."""

    def schema(self, *, constrained: bool = False) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool. With ``constrained`` it also carries the tool's
        ``constrained`` shapes under ``llm.jsonmode.CONSTRAINED_ARGUMENTS``: for JSON and text modes
        only, where the entries never go to the server (the key is not part of the OpenAI format)."""
        parameters = json_schema(self.args) if self.parameters is None else copy.deepcopy(self.parameters)
        function: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": parameters,
        }
        if constrained and self.constrained:
            function[CONSTRAINED_ARGUMENTS] = copy.deepcopy(self.constrained)
        return {"type": "function", "function": function}

    def describe(self, arguments: str) -> str:
        """One short line for a person on what a call with ``arguments`` (raw JSON text) does."""
        return describe_arguments(self.name, arguments, self.describer)

    def summarize(self, result: ToolResult) -> str | None:
        """One short line for a person on ``result``, or ``None`` when there is nothing worth a line."""
        return summarize_result(self.name, result, self.summarizer)


def describe_arguments(name: str, arguments: str, describer: Describer | None = None) -> str:
    """``describer``'s line for the parsed ``arguments``; the generic line for a tool without one
    (an MCP tool, a name no registry knows): its name, or that its arguments do not parse."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return f"{name} (unparsable arguments)"
    if not isinstance(parsed, dict) or describer is None:
        return name
    return describer(parsed)


def summarize_result(name: str, result: ToolResult, summarizer: Summarizer | None = None) -> str | None:
    """``summarizer``'s line for ``result``; else, for a failed call, that it failed."""
    line = summarizer(result) if summarizer is not None else None
    if line is None and result.is_error:
        return f"{name} failed"
    return line


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The argument model's JSON schema without pydantic's ``title`` noise (a fresh copy each call:
    building it is ~1 ms, and every run asks for every tool's)."""
    return copy.deepcopy(_cached_schema(model))


@cache
def _cached_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema: dict[str, Any] = _strip_titles(model.model_json_schema())
    return schema


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def tool_description(name: str) -> str:
    """The model-facing description of tool ``name`` from ``tools/prompts/<name>.md``."""
    path = resources.files("deepresearch.tools").joinpath("prompts", f"{name}.md")
    return path.read_text(encoding="utf-8").strip()
