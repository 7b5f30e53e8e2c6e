"""What a person watching a run sees: a live panel on a terminal, one line per event otherwise.

Both views are fed the same events the run directory records; neither is the record. Between events, the
embedded llama.cpp server reports how far it is through a long prompt (``prompt_progress``), which on a slow
CPU takes minutes; the panel shows it instead of a still "starting". What they show
comes partly from the model and from web pages (queries, commands, paths, error messages), so every
line passes through ``printable`` first: an escape sequence in a tool argument must not retitle the
terminal, write the clipboard (OSC 52) or clear the screen.

A tool call reads as its tool describes it (``Tool.describe``): the views look the recorded name up in
the run's tools (the built-in ones unless told otherwise), so the events stay what was recorded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from deepresearch.events import (
    ContextCompacted,
    ErrorEvent,
    Event,
    FinalAnswerForced,
    GuidedCall,
    LLMCall,
    Nudge,
    ReportWritten,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolCallEvent,
    ToolResultEvent,
)
from deepresearch.terminal import printable
from deepresearch.tools.base import Tool
from deepresearch.tools.registry import builtin_tools, describe_call

_KEPT = {"model": "written by the model", "quoted": "quoted from the sources", "none": "skipped"}


class Progress:
    """Counters shared by both views."""

    def __init__(
        self, max_steps: int, *, run_dir: str | Path = "", tools: Mapping[str, Tool] | None = None
    ) -> None:
        self.max_steps = max_steps
        self.tools = builtin_tools() if tools is None else tools
        """Where a recorded call's name is looked up to describe it."""
        self.step = 0
        self.action = "starting"
        self.sources_seen: set[str] = set()
        self.sources_read: set[str] = set()
        self.tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()
        self.run_dir = printable(str(run_dir))
        """Shown in the panel's header; without it, the run's id once the run starts."""

    @property
    def shown_step(self) -> int:
        """The step to show: the forced final answer takes a step past the budget, never shown as 31/30."""
        return min(self.step, self.max_steps) if self.max_steps > 0 else self.step

    def update(self, event: Event) -> None:
        self.step = max(self.step, event.step)
        match event:
            case RunStarted():
                self.run_dir = self.run_dir or printable(event.run_id)
            case LLMCall():
                self.tokens += int(event.usage.get("total_tokens", 0))
                self.cost += float(event.usage.get("cost_usd", 0.0))
                calls = event.message.get("tool_calls") or []
                self.action = "running tools" if calls else "writing the report"
            case ToolCallEvent():
                self.action = printable(describe_call(self.tools, event.name, event.arguments))
            case ToolResultEvent():
                for source in event.sources:
                    self.sources_seen.add(source["key"])
                    if source.get("fetched"):
                        self.sources_read.add(source["key"])
                self.action = "thinking"
            case GuidedCall():
                self.tokens += int(event.usage.get("total_tokens", 0))
                self.cost += float(event.usage.get("cost_usd", 0.0))
                self.action = (
                    "writing the sections"
                    if event.purpose == "plan"
                    else f"section {event.index + 1} {_KEPT.get(str(event.result.get('kept')), 'done')}"
                )
            case FinalAnswerForced():
                self.action = f"final answer forced ({event.reason})"
            case ReportWritten():
                self.action = "report written" + (f" ({event.outcome})" if event.outcome else "")
            case _:
                pass

    def prompt_progress(self, processed: int, total: int) -> None:
        """The model server is ``processed`` tokens (cached ones included) into a ``total``-token prompt."""
        if processed < total:
            self.action = f"loading prompt {processed:,}/{total:,} tokens"
        else:
            self.action = f"generating (prompt of {total:,} tokens loaded)"


class LiveView:
    """A rich panel redrawn on every event (and four times a second for the clock)."""

    def __init__(self, progress: Progress, console: Console | None = None) -> None:
        self.progress = progress
        self.console = console or Console(stderr=True)
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __rich__(self) -> Group:
        p = self.progress
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("step", f"{p.shown_step}/{p.max_steps}")
        table.add_row("now", Text(p.action, overflow="ellipsis", no_wrap=True))
        table.add_row("sources", f"{len(p.sources_read)} read · {len(p.sources_seen)} seen")
        table.add_row("tokens", f"{p.tokens:,}")
        table.add_row("cost", f"${p.cost:.4f}")
        table.add_row("elapsed", f"{time.monotonic() - p.started:.0f}s")
        return Group(Text(f"deepresearch · {p.run_dir}", style="dim"), table)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted | RunResumed):
            self.live.start()
        self.progress.update(event)
        self.live.refresh()
        if isinstance(event, RunFinished):
            self.live.stop()

    def prompt_progress(self, processed: int, total: int) -> None:
        """Pass as the chat client's ``on_progress``: shows ``loading prompt 1,200/3,600 tokens``."""
        self.progress.prompt_progress(processed, total)
        if self.live.is_started:
            self.live.refresh()

    def stop(self) -> None:
        self.live.stop()


class LineView:
    """One plain line per event, for logs and pipes."""

    def __init__(self, progress: Progress, stream: IO[str] | None = None) -> None:
        self.progress = progress
        self.stream = stream or sys.stderr

    def __call__(self, event: Event) -> None:
        self.progress.update(event)
        line = self.format(event)
        if line:
            print(f"[step {self.progress.shown_step}] {printable(line)}", file=self.stream, flush=True)

    def prompt_progress(self, processed: int, total: int) -> None:
        """Kept for the counters only: a line per batch of a prompt would flood a log."""
        self.progress.prompt_progress(processed, total)

    def format(self, event: Event) -> str:
        match event:
            case RunStarted():
                return f"run {event.run_id} started · model {event.model} · search {event.search}"
            case RunResumed():
                return f"resumed · {len(event.pending_calls)} tool call(s) to redo"
            case LLMCall() if event.phase:
                return f"{event.phase}: a step the code took for the model"
            case GuidedCall() if event.purpose == "plan":
                sections = [s.get("heading", "") for s in event.result.get("sections", [])]
                return f"plan: {'; '.join(sections)}" + (
                    f" ({event.result['why']})" if event.result.get("why") else ""
                )
            case GuidedCall():
                kept = _KEPT.get(str(event.result.get("kept")), "done")
                why = f" ({event.result['why']})" if event.result.get("why") else ""
                return f"section {event.index + 1} {event.result.get('heading', '')}: {kept}{why}"
            case LLMCall():
                calls = len(event.message.get("tool_calls") or [])
                what = f"{calls} tool call(s)" if calls else "answer"
                return (
                    f"model: {what} · {event.usage.get('total_tokens', 0)} tokens · "
                    f"{event.duration_s:.1f}s · finish {event.finish_reason}"
                )
            case ToolCallEvent():
                return describe_call(self.progress.tools, event.name, event.arguments)
            case ToolResultEvent():
                status = f"error ({event.error_type})" if event.is_error else "ok"
                return f"  ↳ {event.name} {status} · {len(event.content)} chars · {event.duration_s:.1f}s"
            case ContextCompacted():
                return (
                    f"context compacted {event.tokens_before:,} → {event.tokens_after:,} tokens "
                    f"({len(event.compressed)} compressed, {len(event.dropped)} hidden)"
                )
            case FinalAnswerForced():
                return f"final answer forced: {event.reason}"
            case Nudge():
                return f"nudge: {event.reason}"
            case ReportWritten():
                c = event.citations
                return (
                    f"report written ({event.origin}) · {c.get('resolved', 0)} sources cited"
                    f" · {c.get('unresolved', 0)} unresolved citations removed"
                    + (f" · outcome {event.outcome}" if event.outcome else "")
                )
            case RunFinished():
                return (
                    f"run {event.status} · {event.usage.get('total_tokens', 0)} tokens · "
                    f"${float(event.usage.get('cost_usd', 0)):.4f}"
                )
            case ErrorEvent():
                return f"error: {event.error_type}: {event.message}"
        return ""
