"""The conversation as the agent keeps it: every message, encoded and counted once.

The full history is never edited (it is the trajectory in ``messages.json``). What the model is sent
is a *view* of it in which the context policy has swapped some tool results for their compact form
or hidden whole search cycles. Each entry caches its JSON encodings and its token count (a compact
form's is scaled from it when the policy first uses it), so building a step's request and checking the
context limit cost O(new messages) work, not a re-encode and re-tokenise of the whole conversation
(what made the reference agent slow down as runs grew).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from deepresearch.llm.messages import Encoded, Message
from deepresearch.tools.execute import KEPT_ARGUMENT_CHARS, omit_oversized_arguments

MESSAGE_OVERHEAD_TOKENS = 4
"""Role and separator tokens every chat template adds per message (an estimate)."""


def _encode(message: Message) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def _byte_bound(message: Message) -> int:
    """At least ``History.count_message(message)``, for any tokenizer: bytes, plus the overheads."""
    content = message.get("content") or ""
    text = content if isinstance(content, str) else json.dumps(content)
    total = len(text.encode()) + len((message.get("reasoning_content") or "").encode())
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        total += len(function.get("name", "").encode()) + len((function.get("arguments") or "").encode()) + 3
    return total + MESSAGE_OVERHEAD_TOKENS


def _scaled_count(tokens: int, full: Message, compact: Message) -> int:
    """The compact form's tokens, scaled from the full result's by length: the compact form is the
    same kind of text with parts left out (page contents, long passages), so the ratio holds to a few
    percent, well inside the context limits' headroom, and compaction, which compresses many results
    at once, does not tokenise them all again."""
    whole = len(str(full.get("content") or ""))
    part = len(str(compact.get("content") or ""))
    text_tokens = max(0, tokens - MESSAGE_OVERHEAD_TOKENS)
    scaled = -(-text_tokens * part // whole) if whole else 0
    return min(tokens, scaled + MESSAGE_OVERHEAD_TOKENS)


def _with_arguments_omitted(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function", {})
    arguments = omit_oversized_arguments(function.get("arguments") or "")
    return {**call, "function": {**function, "arguments": arguments}}


@dataclass(slots=True)
class Entry:
    message: Message
    record: str
    """JSON for ``messages.json`` (reasoning included)."""
    wire: Encoded
    """JSON sent to the model."""
    tokens: int
    """Its tokens as sent; ``-1`` until counted (``History`` counts when a decision needs it)."""
    cycle: int
    """Index of the assistant message whose tool calls this entry answers (its own index for that message)."""
    compact: Message | None = None
    compact_wire: Encoded | None = None
    compact_tokens: int = 0
    compressed: bool = False
    dropped: bool = False

    @property
    def visible_tokens(self) -> int:
        if self.dropped:
            return 0
        return self.compact_tokens if self.compressed else self.tokens


class History:
    """Append-only messages plus the view the model gets.

    Counting is deferred until a decision needs it: an appended message is only measured in UTF-8
    bytes, a bound no tokenizer can exceed (every token is at least one byte). While the view's
    bound is under the context limit nothing has to be counted, so the first request goes out before
    the tokenizer's ranks are even loaded; ``view_tokens`` counts what is pending, exactly, when it is
    read (after the reply, for the record, or when the bound says the limit may be near)."""

    def __init__(self, count_tokens: Callable[[str], int], *, replay_reasoning: bool = False) -> None:
        self._count = count_tokens
        self._replay_reasoning = replay_reasoning
        self.entries: list[Entry] = []
        self._counted = 0
        """Tokens of the visible view's counted entries."""
        self._pending: list[int] = []
        """Entries appended and not yet counted (all visible: nothing hides an uncounted entry)."""
        self._pending_bound = 0
        self._last_assistant = -1

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def append(self, message: Message, *, compact: str | None = None) -> int:
        """Add a message (``compact`` is a shorter content the policy may substitute); returns its index."""
        index = len(self.entries)
        wire_message = self._wire(message)
        if message["role"] == "assistant":
            self._last_assistant = index
        cycle = self._last_assistant if message["role"] == "tool" else index
        record = Encoded(_encode(message))  # one string for both: wrapping it later copies it
        entry = Entry(
            message=message,
            record=record,
            wire=record if wire_message is message else Encoded(_encode(wire_message)),
            tokens=-1,
            cycle=cycle,
        )
        if compact is not None and message["role"] == "tool":
            # encoded and counted when the policy compresses it: most never are
            entry.compact = {**message, "content": compact}
        self.entries.append(entry)
        self._pending.append(index)
        self._pending_bound += _byte_bound(wire_message)
        return index

    @property
    def view_tokens(self) -> int:
        """Tokens of the view the model gets (counts what is pending first)."""
        self._settle()
        return self._counted

    def view_bound(self) -> int:
        """An upper bound on ``view_tokens`` that counts nothing."""
        return self._counted + self._pending_bound

    def _settle(self) -> None:
        for index in self._pending:
            entry = self.entries[index]
            entry.tokens = self.count_message(self._wire(entry.message))
            self._counted += entry.tokens
        self._pending.clear()
        self._pending_bound = 0

    def _wire(self, message: Message) -> Message:
        if message["role"] != "assistant":
            return message
        if "reasoning_content" in message and not self._replay_reasoning:
            message = {k: v for k, v in message.items() if k != "reasoning_content"}
        calls = message.get("tool_calls") or ()
        if any(len(c.get("function", {}).get("arguments") or "") > KEPT_ARGUMENT_CHARS for c in calls):
            # recorded before the loop kept such arguments out (an old run): do not resend them each step
            message = {**message, "tool_calls": [_with_arguments_omitted(c) for c in calls]}
        return message

    def count_message(self, message: Message) -> int:
        text = message.get("content") or ""
        total = self._count(text) if isinstance(text, str) else self._count(json.dumps(text))
        if message.get("reasoning_content"):
            total += self._count(message["reasoning_content"])
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            total += self._count(function.get("name", "")) + self._count(function.get("arguments", "")) + 3
        return total + MESSAGE_OVERHEAD_TOKENS

    # --- the policy's levers

    def compress(self, index: int) -> None:
        entry = self.entries[index]
        if entry.compact is None or entry.compressed or entry.dropped:
            return
        self._settle()
        entry.compact_wire = Encoded(_encode(entry.compact))
        entry.compact_tokens = _scaled_count(entry.tokens, entry.message, entry.compact)
        self._counted += entry.compact_tokens - entry.tokens
        entry.compressed = True

    def drop(self, index: int) -> None:
        entry = self.entries[index]
        if not entry.dropped:
            self._settle()
            self._counted -= entry.visible_tokens
            entry.dropped = True

    def cycle_members(self, assistant_index: int) -> list[int]:
        """The assistant message at ``assistant_index`` and the tool results that answer it."""
        members = [assistant_index]
        for i in range(assistant_index + 1, len(self.entries)):
            if self.entries[i].cycle != assistant_index or self.entries[i].message["role"] != "tool":
                break
            members.append(i)
        return members

    # --- what is sent and what is saved

    def view(self) -> list[Encoded]:
        """The messages the model gets, pre-encoded (native tool mode)."""
        return [
            e.compact_wire if e.compressed and e.compact_wire else e.wire
            for e in self.entries
            if not e.dropped
        ]

    def view_messages(self) -> list[Message]:
        """The same view as dicts (text tool mode converts them before sending)."""
        out: list[Message] = []
        for e in self.entries:
            if e.dropped:
                continue
            message = e.compact if e.compressed and e.compact is not None else e.message
            out.append(self._wire(message))
        return out

    def records(self) -> list[str]:
        """``messages.json`` items: the full conversation, reasoning included, nothing compacted."""
        return [e.record for e in self.entries]

    def messages(self) -> list[Message]:
        return [e.message for e in self.entries]

    def state(self) -> dict[str, Any]:
        return {
            "compressed": [i for i, e in enumerate(self.entries) if e.compressed],
            "dropped": [i for i, e in enumerate(self.entries) if e.dropped],
        }
