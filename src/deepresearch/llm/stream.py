"""Turning what an OpenAI-compatible endpoint sent into one reply: SSE lines, chunks, or a JSON body.

Pure functions and small classes, no I/O, so the whole wire format is testable without a socket and
the streaming and non-streaming paths share one ``RawReply`` shape. Contracts kept here:

- every ``data:`` payload is handled in arrival order, however many arrive in one read — the tail of
  a stream (last delta, finish chunk, usage chunk, ``[DONE]``) often comes in a single TCP burst;
- assembly is O(total size): deltas are appended to lists and joined once at the end;
- tool-call deltas merge by ``index``: ``id`` and ``name`` are taken when first seen and never
  concatenated (several servers repeat them in every delta), ``arguments`` are concatenated and
  returned exactly as sent, even when the output limit cut them mid-JSON;
- an accumulator is used for one attempt only: a retried request gets a fresh one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from deepresearch.errors import LLMBadResponse, LLMError
from deepresearch.llm.messages import ToolCall

_FATAL_ERROR_CODES = frozenset({400, 401, 403, 404, 422})
"""Error codes inside a payload that retrying cannot fix."""


class _Done:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DONE"


DONE: Final = _Done()
"""Returned by ``SSEDecoder.feed`` for ``data: [DONE]``."""


@dataclass(slots=True)
class RawReply:
    """One reply as the server sent it, before ``<think>`` splitting, usage estimation and pricing."""

    content: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str = ""


class SSEDecoder:
    """Server-sent-event lines in, parsed ``data`` payloads out.

    A ``data:`` line that is complete JSON is returned at once (the usual case, one event per line);
    one that is not is held and joined with the following ``data:`` lines of the same event, as the
    SSE spec allows. Comments, ``event:``/``id:``/``retry:`` fields and blank lines yield nothing.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: list[str] = []

    def feed(self, line: str) -> Any:
        """The payload completed by ``line`` (a JSON value or ``DONE``), else ``None``."""
        if not line:
            return self.flush()
        if not line.startswith("data:"):
            return None
        payload = line[6:] if line.startswith("data: ") else line[5:]
        if self._pending:
            self._pending.append(payload)
            try:
                value = json.loads("\n".join(self._pending))
            except ValueError:
                return None
            self._pending.clear()
            return value
        if payload.strip() == "[DONE]":
            return DONE
        try:
            return json.loads(payload)
        except ValueError:
            self._pending.append(payload)
            return None

    def flush(self) -> Any:
        """End of an event (or of the stream): a held payload that still does not parse is an error."""
        if not self._pending:
            return None
        text = "\n".join(self._pending)
        self._pending.clear()
        try:
            return json.loads(text)
        except ValueError as exc:
            raise LLMBadResponse(f"unparsable stream event: {text[:200]!r}") from exc


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAccumulator:
    """Assembles ``chat.completion.chunk`` dicts into a ``RawReply`` (choice 0 only)."""

    __slots__ = ("_calls", "_content", "_reasoning", "finish_reason", "model", "usage")

    def __init__(self) -> None:
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model = ""

    def feed(self, chunk: Any) -> None:
        """Merge one parsed chunk; an ``error`` object inside the stream raises."""
        if not isinstance(chunk, dict):
            raise LLMBadResponse(f"stream chunk is not an object: {str(chunk)[:200]!r}")
        if chunk.get("error"):
            raise payload_error(chunk["error"])
        if not self.model and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:
            self.usage = usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content and isinstance(content, str):
                self._content.append(content)
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning and isinstance(reasoning, str):
                self._reasoning.append(reasoning)
            for call_delta in delta.get("tool_calls") or ():
                self._merge_call(call_delta)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

    def _merge_call(self, delta: dict[str, Any]) -> None:
        index = delta.get("index")
        call_id = delta.get("id") or ""
        if not isinstance(index, int):
            # No index (some llama.cpp/Ollama builds): a new id starts a call, anything else continues
            # the last one.
            known = [i for i, c in self._calls.items() if c.id == call_id] if call_id else []
            if known:
                index = known[0]
            elif call_id or not self._calls:
                index = len(self._calls)
            else:
                index = max(self._calls)
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _PartialCall()
        if call_id and not call.id:
            call.id = call_id
        function = delta.get("function") or {}
        if function.get("name") and not call.name:
            call.name = function["name"]
        arguments = function.get("arguments")
        if arguments:
            call.arguments.append(arguments if isinstance(arguments, str) else _compact(arguments))

    def result(self) -> RawReply:
        """The assembled reply; call once, after the last chunk."""
        calls = [
            ToolCall(id=call.id or new_call_id(), name=call.name, arguments="".join(call.arguments))
            for _, call in sorted(self._calls.items())
        ]
        return RawReply(
            content="".join(self._content),
            reasoning="".join(self._reasoning) or None,
            tool_calls=calls,
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
        )


def read_body(body: Any) -> RawReply:
    """A non-streaming ``chat.completion`` body as a ``RawReply``; a body without choices raises."""
    if not isinstance(body, dict):
        raise LLMBadResponse(f"reply is not a JSON object: {str(body)[:200]!r}")
    if body.get("error"):
        raise payload_error(body["error"])
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMBadResponse("reply has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    calls = []
    for wire in message.get("tool_calls") or ():
        function = wire.get("function") or {}
        arguments = function.get("arguments")
        calls.append(
            ToolCall(
                id=wire.get("id") or new_call_id(),
                name=function.get("name") or "",
                arguments=arguments if isinstance(arguments, str) else _compact(arguments or {}),
            )
        )
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    usage = body.get("usage")
    return RawReply(
        content=content_text(message.get("content")),
        reasoning=reasoning if isinstance(reasoning, str) and reasoning else None,
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
        usage=usage if isinstance(usage, dict) and usage else None,
        model=body.get("model") or "",
    )


def payload_error(error: Any) -> LLMError:
    """The error for an ``error`` object sent with a 200 status or inside a stream.

    Retryable (``LLMBadResponse``) unless its code says the request itself is wrong.
    """
    message = error.get("message") if isinstance(error, dict) else error
    code = error.get("code") if isinstance(error, dict) else None
    text = f"server error: {str(message)[:500]}"
    if isinstance(code, int) and code in _FATAL_ERROR_CODES:
        return LLMError(text, status=code)
    return LLMBadResponse(text)


def prompt_progress(chunk: Any) -> tuple[int, int] | None:
    """``(processed, total)`` prompt tokens from a llama.cpp chunk's ``prompt_progress`` (asked for with
    ``return_progress``; ``processed`` includes the tokens taken from the prompt cache), else ``None``."""
    progress = chunk.get("prompt_progress") if isinstance(chunk, dict) else None
    if not isinstance(progress, dict):
        return None
    processed, total = _count(progress.get("processed")), _count(progress.get("total"))
    if processed is None or not total:
        return None
    return min(processed, total), total


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def new_call_id() -> str:
    """An id for a tool call the server sent without one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def content_text(content: Any) -> str:
    """The text of a message ``content`` value: a string, ``None`` or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
