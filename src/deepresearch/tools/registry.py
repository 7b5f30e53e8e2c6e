"""The tool registry: a plain ``dict[str, Tool]``.

Built-in tools register through ``register`` exactly as an extension would; the four names and their
arguments are frozen by ARCHITECTURE.md because the StepFun model was trained on them.

Whoever shows a run to a person (the terminal panel, the server's progress lines) looks a recorded
call up here and asks the tool to describe it (``describe_call``, ``summarize_call``): the events stay
as they were recorded, and a name no registry knows (a tool of another run, an MCP tool after the
fact) still gets the generic line.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from deepresearch.errors import ConfigError
from deepresearch.tools.base import Tool, ToolResult, describe_arguments, summarize_result

Registry = dict[str, Tool]


def register(registry: Registry, tool: Tool) -> None:
    if tool.name in registry:
        raise ConfigError(f"a tool named {tool.name!r} is already registered")
    registry[tool.name] = tool


def default_tools() -> Registry:
    """``batch_web_surfer``, ``file``, ``todo`` and ``shell``."""
    from deepresearch.tools.file import file_tool
    from deepresearch.tools.shell import shell_tool
    from deepresearch.tools.todo import todo_tool
    from deepresearch.tools.web import web_tool

    registry: Registry = {}
    for tool in (web_tool(), file_tool(), todo_tool(), shell_tool()):
        register(registry, tool)
    return registry


def builtin_tools() -> Mapping[str, Tool]:
    """The built-in tools, read-only and built once: what the views use when not given the run's."""
    return MappingProxyType(_builtin_tools())


@cache
def _builtin_tools() -> Registry:
    return default_tools()


def describe_call(tools: Mapping[str, Tool], name: str, arguments: str) -> str:
    """One short line for a person on a call of ``name`` with ``arguments`` (raw JSON text)."""
    tool = tools.get(name)
    return describe_arguments(name, arguments, tool.describer if tool is not None else None)


def summarize_call(tools: Mapping[str, Tool], name: str, result: ToolResult) -> str | None:
    """One short line for a person on the result of a call of ``name``, or ``None``."""
    tool = tools.get(name)
    return summarize_result(name, result, tool.summarizer if tool is not None else None)
