"""The run's record: one typed event per thing that happened, appended to ``events.jsonl``.

Events are the source of truth. ``messages.json`` (the training trajectory), the source registry, the
todo list, usage totals and the context policy's decisions can all be rebuilt from them, which is
what ``resume`` does after a crash. Every event has ``type``, ``step`` and ``ts`` (UTC, ISO 8601).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

FORMAT = "deepresearch-run-1"
"""Version of the run-directory format, written into ``run.json``."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    step: int = 0
    ts: str = Field(default_factory=now_iso)


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    run_id: str
    question: str
    model: str
    search: str
    language: str
    tool_mode: str
    tools: list[str]
    messages: list[dict[str, Any]]
    """The system prompt and the question, as sent."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """The run's effective settings, secrets removed."""


class RunResumed(_Event):
    type: Literal["run_resumed"] = "run_resumed"
    pending_calls: list[str] = Field(default_factory=list)
    """Tool calls of the interrupted step that will run again (their results were never recorded)."""


class LLMCall(_Event):
    type: Literal["llm_call"] = "llm_call"
    message: dict[str, Any]
    usage: dict[str, Any]
    finish_reason: str | None = None
    duration_s: float = 0.0
    context_tokens: int = 0
    """Tokens of the context actually sent (after compaction)."""


class ToolCallEvent(_Event):
    type: Literal["tool_call"] = "tool_call"
    call_id: str
    name: str
    arguments: str


class ToolResultEvent(_Event):
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
    type: Literal["context_compacted"] = "context_compacted"
    compressed: list[int] = Field(default_factory=list)
    """History indices of tool results replaced by their compact form."""
    dropped: list[int] = Field(default_factory=list)
    """History indices removed from the model's view (whole search cycles)."""
    tokens_before: int = 0
    tokens_after: int = 0


class FinalAnswerForced(_Event):
    type: Literal["final_answer_forced"] = "final_answer_forced"
    reason: str
    message: dict[str, Any]
    """The instruction appended to the conversation."""


class Nudge(_Event):
    type: Literal["nudge"] = "nudge"
    reason: Literal["empty_reply", "length", "invalid_answer"]
    message: dict[str, Any]


class ReportWritten(_Event):
    type: Literal["report"] = "report"
    path: str
    chars: int
    origin: Literal["answer", "forced", "fallback"]
    citations: dict[str, int]


class RunFinished(_Event):
    type: Literal["run_finished"] = "run_finished"
    status: Literal["done", "failed", "cancelled"]
    usage: dict[str, Any]
    steps: int


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    error_type: str
    message: str
    traceback: str = ""


Event = Annotated[
    RunStarted
    | RunResumed
    | LLMCall
    | ToolCallEvent
    | ToolResultEvent
    | ContextCompacted
    | FinalAnswerForced
    | Nudge
    | ReportWritten
    | RunFinished
    | ErrorEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(line: str) -> Event:
    """One ``events.jsonl`` line as its typed event (raises ``pydantic.ValidationError``)."""
    return EVENT_ADAPTER.validate_json(line)
