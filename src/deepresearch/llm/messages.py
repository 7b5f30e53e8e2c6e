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


ROLES = frozenset({"system", "user", "assistant", "tool"})


def chat_problems(messages: Any, offered: set[str] | None = None) -> list[str]:
    """Why ``messages`` is not a valid OpenAI chat conversation (empty when it is): known roles,
    string contents, reasoning only on assistant messages, well-formed tool calls (an id, type
    ``function``, arguments a JSON object in a string, a name in ``offered`` when given), every tool
    message answering a call of the assistant message before its group, every call answered, and no
    empty assistant message. Training data is checked with it before it is written."""
    import json

    if not isinstance(messages, list) or not messages:
        return ["messages: not a non-empty list"]
    problems: list[str] = []
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            problems.append(f"{where}: no known role")
            continue
        role = message["role"]
        if role != "tool" and open_calls:
            problems.append(f"{where}: tool calls {sorted(open_calls)} were never answered")
            open_calls = set()
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                problems.append(f"{where}: answers no open tool call ({call_id!r})")
            open_calls.discard(call_id)
        if not isinstance(message.get("content"), str):
            problems.append(f"{where}: content is not a string")
        if "reasoning_content" in message and (
            role != "assistant" or not isinstance(message["reasoning_content"], str)
        ):
            problems.append(f"{where}: reasoning_content belongs to assistant messages, as a string")
        if "tool_calls" in message:
            if role != "assistant":
                problems.append(f"{where}: only assistant messages make tool calls")
            calls = message["tool_calls"]
            if not isinstance(calls, list) or not calls:
                problems.append(f"{where}: tool_calls is not a non-empty list")
                calls = []
            open_calls = set()
            for number, call in enumerate(calls):
                at = f"{where}.tool_calls[{number}]"
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(call, dict) or not isinstance(function, dict):
                    problems.append(f"{at}: not a tool call")
                    continue
                if not isinstance(call.get("id"), str) or not call["id"] or call["id"] in open_calls:
                    problems.append(f"{at}: a missing or repeated id")
                open_calls.add(str(call.get("id")))
                if call.get("type") != "function":
                    problems.append(f"{at}: type is not 'function'")
                if offered is not None and function.get("name") not in offered:
                    problems.append(f"{at}: calls {function.get('name')!r}, which the tools do not offer")
                arguments = function.get("arguments")
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else None
                except json.JSONDecodeError:
                    parsed = None
                if not isinstance(parsed, dict):
                    problems.append(f"{at}: arguments are not a JSON object in a string")
        elif role == "assistant" and not str(message.get("content") or "").strip():
            problems.append(f"{where}: an empty assistant message")
    if open_calls:
        problems.append(f"tool calls {sorted(open_calls)} were never answered")
    return problems
