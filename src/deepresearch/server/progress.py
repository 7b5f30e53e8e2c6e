"""One short line per event worth showing a person who follows a run from a chat client: the
OpenAI-compatible stream sends them as reasoning deltas, the MCP tool as progress notifications.

Tool calls and their results read as their tools describe them (``Tool.describe``/``summarize``),
looked up by the recorded name in the run's tools (the built-in ones unless given).
"""

from __future__ import annotations

from collections.abc import Mapping

from deepresearch.events import (
    ContextCompacted,
    ErrorEvent,
    Event,
    FinalAnswerForced,
    LLMCall,
    ReportWritten,
    RunResumed,
    RunStarted,
    ToolCallEvent,
    ToolResultEvent,
)
from deepresearch.tools.base import Tool, ToolResult
from deepresearch.tools.registry import builtin_tools, describe_call, summarize_call

LINE_MAX_CHARS = 160


def progress_line(event: Event, tools: Mapping[str, Tool] | None = None) -> str | None:
    """One short line for a person following the run, or None for events not worth a line."""
    tools = builtin_tools() if tools is None else tools
    prefix = f"step {event.step}: " if event.step else ""
    line: str | None = None
    match event:
        case RunStarted():
            line = "started the research"
        case RunResumed():
            line = "resumed the research where it stopped"
        case LLMCall() if not event.message.get("tool_calls"):
            line = prefix + "writing the report"
        case ToolCallEvent():
            line = prefix + describe_call(tools, event.name, event.arguments)
        case ToolResultEvent():
            result = ToolResult(event.content, event.data, event.compact, event.is_error)
            line = summarize_call(tools, event.name, result)
        case FinalAnswerForced():
            line = f"{prefix}budget reached ({event.reason}); writing the report"
        case ContextCompacted():
            line = f"compacted the context ({event.tokens_before:,} → {event.tokens_after:,} tokens)"
        case ReportWritten():
            cited = event.citations.get("resolved", 0)
            line = f"report written ({event.chars:,} characters, {cited} source(s) cited)"
        case ErrorEvent():
            line = f"error: {event.error_type}: {event.message}"
        case _:
            line = None
    return None if line is None else " ".join(line.split())[:LINE_MAX_CHARS]
