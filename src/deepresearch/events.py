"""The run's record: one typed event per thing that happened, appended to ``events.jsonl``.

Events are the source of truth. ``messages.json`` (the training trajectory), the source registry, the
todo list, usage totals and the context policy's decisions can all be rebuilt from them, which is
what ``resume`` does after a crash. Every event has ``type``, ``step`` and ``ts`` (UTC, ISO 8601).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    step: int = 0
    """The step (model call number) the event belongs to; 0 before the first call."""
    ts: str = Field(default_factory=now_iso)
    """When it happened, UTC, ISO 8601 with milliseconds."""


class RunStarted(_Event):
    """A new run: the question, the model, the settings and the first two messages."""

    type: Literal["run_started"] = "run_started"
    run_id: str
    question: str
    model: str
    search: str
    language: str
    tool_mode: str
    strategy: str = "react"
    """``react`` or ``guided`` (``Settings.strategy`` resolved); runs from before it existed are ``react``."""
    tools: list[str]
    messages: list[dict[str, Any]]
    """The system prompt and the question, as sent."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """The run's effective settings, secrets removed."""


class RunResumed(_Event):
    """A later process took the run over (``deepresearch resume``)."""

    type: Literal["run_resumed"] = "run_resumed"
    pending_calls: list[str] = Field(default_factory=list)
    """Tool calls of the interrupted step that will run again (their results were never recorded)."""


class LLMCall(_Event):
    """One model reply, as appended to the conversation, with its usage."""

    type: Literal["llm_call"] = "llm_call"
    message: dict[str, Any]
    usage: dict[str, Any]
    finish_reason: str | None = None
    duration_s: float = 0.0
    context_tokens: int = 0
    """Tokens of the context actually sent (after compaction)."""
    phase: str | None = None
    """Set when the code took this step, not the model: the guided strategy's ``search``,
    ``subsearch``, ``open`` and ``answer``, or a loop guard's ``guard_search``."""


class GuidedCall(_Event):
    """One model call of the guided strategy, outside the conversation: the plan or one section.

    ``result`` is what the run kept: for the plan ``{"sections": [{"heading", "query"}], "why"}``
    (``why`` says why the model's plan was replaced, else null); for a section ``{"heading",
    "paragraphs": [{"text", "keys"}], "kept": "model" | "quoted" | "none", "why", "passages":
    [{"key", "start", "end"}]}``.
    """

    type: Literal["guided_call"] = "guided_call"
    purpose: Literal["plan", "section"]
    index: int = 0
    """The section's number (0 is the overview)."""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    """The prompt, as sent (empty when no call was made: no passages, or a budget was used up)."""
    reply: str = ""
    usage: dict[str, Any] = Field(default_factory=dict)
    finish_reason: str | None = None
    duration_s: float = 0.0
    result: dict[str, Any] = Field(default_factory=dict)


class ToolCallEvent(_Event):
    """A tool call about to run."""

    type: Literal["tool_call"] = "tool_call"
    call_id: str
    name: str
    arguments: str


class ToolResultEvent(_Event):
    """What a tool call returned (recorded as soon as it lands, in any order)."""

    type: Literal["tool_result"] = "tool_result"
    call_id: str
    name: str
    content: str
    """Exactly what the model was sent as the tool message."""
    compact: str | None = None
    is_error: bool = False
    error_type: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    sources: list[dict[str, Any]] = Field(default_factory=list)
    """Sightings registered by this call, in order (replayed on resume to rebuild the registry)."""
    state: dict[str, Any] | None = None
    """The tool state after this call when it changed (e.g. the todo list)."""
    duration_s: float = 0.0


class ContextCompacted(_Event):
    """The context policy shrank the model's view of the conversation."""

    type: Literal["context_compacted"] = "context_compacted"
    compressed: list[int] = Field(default_factory=list)
    """History indices of tool results replaced by their compact form."""
    dropped: list[int] = Field(default_factory=list)
    """History indices removed from the model's view (whole search cycles)."""
    tokens_before: int = 0
    tokens_after: int = 0


class FinalAnswerForced(_Event):
    """A budget or the context limit ended tool use; the model is asked for its report."""

    type: Literal["final_answer_forced"] = "final_answer_forced"
    reason: str
    message: dict[str, Any]
    """The instruction appended to the conversation."""


class Nudge(_Event):
    """A reply was empty, cut by the output limit, or not an answer when one was required."""

    type: Literal["nudge"] = "nudge"
    reason: Literal["empty_reply", "length", "invalid_answer", "echoed_prompt", "fake_citations"]
    message: dict[str, Any]


class FollowUp(_Event):
    """A user turn added to a finished run, which then goes on (``research.follow_up``): a correction
    or a further request, with everything the run read still in its history and its sources."""

    type: Literal["follow_up"] = "follow_up"
    message: dict[str, Any]


class ReportWritten(_Event):
    """``report.md`` and ``report.html`` were written; ``citations`` is the audit."""

    type: Literal["report"] = "report"
    path: str
    chars: int
    origin: Literal["answer", "forced", "fallback", "guided"]
    citations: dict[str, int]
    outcome: str | None = None
    """``report``, ``extractive``, ``uncited`` or ``empty`` (``runs.RunInfo.outcome``)."""


class RunFinished(_Event):
    """The process stopped working on the run (``done``, ``failed`` or ``cancelled``)."""

    type: Literal["run_finished"] = "run_finished"
    status: Literal["done", "failed", "cancelled"]
    usage: dict[str, Any]
    steps: int


class ErrorEvent(_Event):
    """An exception ended the run; the run can be resumed."""

    type: Literal["error"] = "error"
    error_type: str
    message: str
    traceback: str = ""


Event = Annotated[
    RunStarted
    | RunResumed
    | LLMCall
    | GuidedCall
    | ToolCallEvent
    | ToolResultEvent
    | ContextCompacted
    | FinalAnswerForced
    | Nudge
    | FollowUp
    | ReportWritten
    | RunFinished
    | ErrorEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def event_json(event: Event) -> str:
    """The event as one compact JSON object, byte for byte what ``model_dump_json(exclude_none=True)``
    gives, without its side effect: pydantic-core reads each string through CPython's UTF-8 view, which
    a non-ASCII string then keeps for as long as it lives. Events share their strings with the history
    and the sources (tool results, page texts), so at 50 steps that was ~1.3 MB kept for nothing. The
    JSON-mode dump hands back the same string objects and the C encoder makes new ones."""
    data = event.model_dump(mode="json", exclude_none=True)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def parse_event(line: str) -> Event:
    """One ``events.jsonl`` line as its typed event (raises ``pydantic.ValidationError``)."""
    return EVENT_ADAPTER.validate_json(line)
