"""One short line per event worth showing a person who follows a run from a chat client: the
OpenAI-compatible stream sends them as reasoning deltas, the MCP tool as progress notifications."""

from __future__ import annotations

import json

from deepresearch.display import describe_call
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

LINE_MAX_CHARS = 160


def progress_line(event: Event) -> str | None:
    """One short line for a person following the run, or None for events not worth a line."""
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
            line = prefix + _describe_tool_call(event)
        case ToolResultEvent():
            line = _describe_tool_result(event)
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


def _describe_tool_call(event: ToolCallEvent) -> str:
    if event.name == "batch_web_surfer":
        try:
            args = json.loads(event.arguments or "{}")
        except ValueError:
            args = {}
        if isinstance(args, dict) and args.get("action") == "batch_search":
            queries = args.get("queries") or []
            queries = queries if isinstance(queries, list) else [queries]
            return "searching: " + "; ".join(str(q) for q in queries)
        if isinstance(args, dict) and args.get("action") == "batch_open":
            urls = args.get("urls") or []
            return f"opening {len(urls) if isinstance(urls, list) else 1} page(s)"
    return describe_call(event.name, event.arguments)


def _describe_tool_result(event: ToolResultEvent) -> str | None:
    action = event.data.get("action")
    if action == "batch_search":
        return f"found {event.data.get('results', 0)} result(s)"
    if action == "batch_open":
        opened = event.data.get("opened") or []
        ok = sum(1 for page in opened if isinstance(page, dict) and page.get("ok"))
        return f"opened {ok} page(s)" + (f", {len(opened) - ok} failed" if ok < len(opened) else "")
    if event.is_error:
        return f"{event.name} failed"
    return None
