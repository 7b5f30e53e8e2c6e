"""The tool registry: a plain ``dict[str, Tool]``.

Built-in tools register through ``register`` exactly as an extension would; the four names and their
arguments are frozen by ARCHITECTURE.md because the StepFun model was trained on them.
"""

from __future__ import annotations

from deepresearch.errors import ConfigError
from deepresearch.tools.base import Tool

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
