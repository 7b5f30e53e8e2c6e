"""The chat data that crosses the model boundary: tool calls, usage and one completed reply.

Messages themselves stay plain OpenAI-format dicts (``{"role": ..., "content": ...}``): that is the
format of ``messages.json`` and of every endpoint we talk to, so there is nothing to convert. What the
model sends back is parsed once into a ``Completion``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
"""One chat message in OpenAI format."""


class Encoded(str):
    """A message already serialised to JSON; the client splices it into the request body as is.

    The agent serialises each message once when it enters the history, so a step costs
    O(new messages) in JSON work instead of re-encoding the whole conversation.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call requested by the model; ``arguments`` is the raw JSON text it wrote."""

    id: str
    name: str
    arguments: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class Usage:
    """Token usage of one call (or a running total); ``estimated`` when the server sent none."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd
        self.estimated = self.estimated or other.estimated

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 8),
        }


@dataclass(slots=True)
class Completion:
    """One assistant reply, assembled from a stream or read from a JSON body.

    ``content`` has any ``<think>`` block moved into ``reasoning``. ``finish_reason`` is ``"length"``
    when the output limit cut the reply.
    """

    content: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str = ""

    def to_message(self) -> Message:
        """The assistant message to append to the history (and to ``messages.json``)."""
        message: Message = {"role": "assistant", "content": self.content}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = [call.to_wire() for call in self.tool_calls]
        return message
