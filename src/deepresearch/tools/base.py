"""The tool contract: a pydantic argument model plus one async function returning a ``ToolResult``.

The JSON schema the model sees comes from the argument model; the description from the prompt-data
file ``agent/prompts/tools/<name>.md``, so model-facing wording lives with the other prompts. A tool
never raises for a mistake the model made: it raises ``ToolError`` (or anything else) and the executor
turns that into an ``Error: …`` tool message, so the run goes on.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

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
    """Tool state that survives the step (e.g. the todo list); snapshotted into events, restored on resume."""
    step: int = 0
    call_id: str = ""
    search: SearchBackend | None = None
    fetcher: Fetcher | None = None
    shell: ShellConfig = field(default_factory=ShellConfig)
    workspace_max_bytes: int = DEFAULT_WORKSPACE_MAX_BYTES
    """Disk quota of ``workspace`` (all files in it), enforced by the tools that write there."""
    new_sources: list[Source] = field(default_factory=list)
    state_changed: bool = False
    """Set by a tool that changed ``state``, so the new state is recorded with its result."""

    def add_source(self, url: str, *, title: str = "", snippet: str = "", fetched: bool = False) -> Source:
        """Register a URL the model is about to see; the sighting is recorded with the call's result."""
        source = self.sources.add(url, title=title, snippet=snippet, fetched=fetched, step=self.step)
        self.new_sources.append(source)
        return source


ToolFunction = Callable[[Any, ToolContext], Awaitable[ToolResult]]


@dataclass(frozen=True)
class Tool:
    """A named tool: its argument model, its description and the coroutine that runs it."""

    name: str
    args: type[BaseModel]
    run: ToolFunction
    description: str = ""
    parameters: dict[str, Any] | None = field(default=None, hash=False)
    """A JSON schema shown to the model instead of the one built from ``args``: for a tool whose
    schema comes from elsewhere (an MCP server's ``inputSchema``), whose ``args`` model then accepts
    any object and whose owner validates the arguments."""

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        parameters = json_schema(self.args) if self.parameters is None else copy.deepcopy(self.parameters)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }


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
    """The model-facing description of tool ``name`` from ``agent/prompts/tools/<name>.md``."""
    path = resources.files("deepresearch.agent").joinpath("prompts", "tools", f"{name}.md")
    return path.read_text(encoding="utf-8").strip()
