"""The run's state as a fold over its events.

The loop records an event and then *applies* it; resume applies the recorded events to a fresh state.
Because both go through ``RunState.apply``, a resumed run sees exactly the conversation, sources,
todo list, usage and compaction decisions the interrupted one had, and ``messages.json`` can always
be rebuilt from ``events.jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from deepresearch.agent.history import History
from deepresearch.errors import RunCorrupted
from deepresearch.events import (
    ContextCompacted,
    ErrorEvent,
    Event,
    FinalAnswerForced,
    FollowUp,
    GuidedCall,
    LLMCall,
    Nudge,
    ReportWritten,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolResultEvent,
)
from deepresearch.llm.messages import Completion, ToolCall, Usage
from deepresearch.sources import SourceRegistry


@dataclass
class RunState:
    history: History
    sources: SourceRegistry = field(default_factory=SourceRegistry)
    tool_state: dict[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    step: int = 0
    """Number of the last model call made."""
    forced: str | None = None
    """Why the final answer was forced, once it was."""
    calls: list[ToolCall] = field(default_factory=list)
    """Tool calls of the latest model reply."""
    results: dict[str, ToolResultEvent] = field(default_factory=dict)
    """Their recorded results, until all are in and they join the history in call order."""
    answer_parts: list[str] = field(default_factory=list)
    """Earlier pieces of an answer that hit the output limit and was continued."""
    nudges: int = 0
    """Consecutive replies that were neither a tool call nor an answer."""
    call_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Tool calls the model made, by (name, arguments): the repeat guard's memory."""
    audit: Counter[str] = field(default_factory=Counter)
    """What the guards did: ``repeated_calls`` refused, ``guard_steps`` taken for the model, and
    final answers rejected for ``echoed_prompt`` or ``fake_citations``."""
    guided: dict[str, Any] = field(default_factory=dict)
    """The guided strategy's record: ``phases`` taken, the ``plan``, the ``sections`` by number."""
    finished: bool = False
    question: str = ""
    language: str = "en"
    strategy: str = "react"
    run_id: str = ""
    elapsed_before: float = 0.0
    """Wall time spent by earlier sessions of this run."""
    _segment_start: datetime | None = None
    _last_ts: datetime | None = None

    @property
    def pending_calls(self) -> list[ToolCall]:
        return [c for c in self.calls if c.id not in self.results]

    def apply(self, event: Event) -> None:
        self._track_time(event)
        match event:
            case RunStarted():
                self.run_id, self.question, self.language = event.run_id, event.question, event.language
                self.strategy = event.strategy
                for message in event.messages:
                    self.history.append(message)
            case LLMCall():
                self._flush_results()
                self.history.append(event.message)
                self.usage.add(_usage(event.usage))
                self.step = event.step
                self.calls = [
                    ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments", ""))
                    for c in event.message.get("tool_calls") or ()
                ]
                self.results = {}
                if self.calls:
                    self.nudges = 0
                if event.phase:
                    self.guided.setdefault("phases", []).append(event.phase)
                    if event.phase.startswith("guard_"):
                        self.audit["guard_steps"] += 1
                else:
                    self.call_counts.update((c.name, c.arguments) for c in self.calls)
            case GuidedCall():
                self.usage.add(_usage(event.usage))
                if event.purpose == "plan":
                    self.guided["plan"] = event.result
                else:
                    self.guided.setdefault("sections", {})[str(event.index)] = event.result
            case ToolResultEvent():
                self.results[event.call_id] = event
                self.sources.extend(event.sources)
                if event.data.get("repeat"):  # the repeat guard refused or replaced this call
                    self.audit["repeated_calls"] += 1
                if event.state is not None:
                    snapshot = json.loads(json.dumps(event.state))
                    self.tool_state.clear()  # same dict object: live tool contexts keep seeing it
                    self.tool_state.update(snapshot)
                self._flush_results()
            case ContextCompacted():
                for i in event.compressed:
                    self.history.compress(i)
                for i in event.dropped:
                    self.history.drop(i)
            case FinalAnswerForced():
                self.forced = event.reason
                self.history.append(event.message)
            case Nudge():
                if event.reason == "length":
                    self.answer_parts.append(self._last_content())
                else:
                    self.nudges += 1
                if event.reason in ("echoed_prompt", "fake_citations"):
                    self.audit[event.reason] += 1
                self.history.append(event.message)
            case FollowUp():
                self.finished, self.forced, self.answer_parts, self.nudges = False, None, [], 0
                self.history.append(event.message)
            case ReportWritten() | RunFinished():
                self.finished = self.finished or (isinstance(event, RunFinished) and event.status == "done")
            case RunResumed():
                pass

    def _flush_results(self) -> None:
        """Once every call of the latest reply has a result, add the tool messages in call order."""
        if not self.calls or len(self.results) < len(self.calls) or self.pending_calls:
            return
        for call in self.calls:
            result = self.results[call.id]
            self.history.append(
                {"role": "tool", "tool_call_id": call.id, "content": result.content}, compact=result.compact
            )
        self.calls, self.results = [], {}

    def _last_content(self) -> str:
        for entry in reversed(self.history.entries):
            if entry.message["role"] == "assistant":
                return str(entry.message.get("content") or "")
        return ""

    def _track_time(self, event: Event) -> None:
        ts = datetime.fromisoformat(event.ts.replace("Z", "+00:00"))
        if isinstance(event, RunStarted | RunResumed):
            if self._segment_start is not None and self._last_ts is not None:
                self.elapsed_before += (self._last_ts - self._segment_start).total_seconds()
            self._segment_start = ts
        self._last_ts = ts


def _usage(recorded: dict[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=int(recorded.get("prompt_tokens", 0)),
        completion_tokens=int(recorded.get("completion_tokens", 0)),
        cost_usd=float(recorded.get("cost_usd", 0.0)),
    )


def replay(events: list[Event], history: History, *, path: Path) -> RunState:
    """The state a run had after ``events`` (resume); ``path`` names the log in errors."""
    if not events or not isinstance(events[0], RunStarted):
        raise RunCorrupted(path, 1, "the first event is not run_started")
    state = RunState(history=history)
    for event in events:
        state.apply(event)
    if state._segment_start is not None and state._last_ts is not None:
        state.elapsed_before += (state._last_ts - state._segment_start).total_seconds()
        state._segment_start = None
    return state


def unacted_reply(events: list[Event]) -> Completion | None:
    """The model's last reply, when it was text the run never acted on.

    A kill or a failure between recording that reply and what follows it (writing the report, or a
    nudge) leaves it last in the log. Resume acts on it again instead of asking the model once more,
    which would add a step the interrupted run never took.
    """
    for event in reversed(events):
        if isinstance(event, RunResumed | RunFinished | ErrorEvent | ReportWritten):
            continue  # how earlier sessions ended, or a report the run did not finish delivering
        if isinstance(event, LLMCall) and not event.message.get("tool_calls"):
            return Completion(
                content=str(event.message.get("content") or ""), finish_reason=event.finish_reason
            )
        return None
    return None
