"""Tool calling for models that were never given a native tool-call API: calls written as text.

With ``tool_mode = "text"`` the client never sends ``tools``. Instead the tool list and the call
format (``llm/prompts/text_mode_tools.j2``) are appended to the first system message, the history
is rewritten so the model sees its earlier calls and their results as plain text, and the reply's
``<tool_call>{"name": …, "arguments": {…}}</tool_call>`` blocks are parsed back into ``ToolCall``s.
The agent therefore works with one message format in both modes; only the wire differs.

Parsing is forgiving, because small models are sloppy: code fences around the JSON, a missing closing
tag at the end, ``parameters`` instead of ``arguments``, broken JSON (repaired with ``json_repair``).
A block that cannot be read at all becomes a call of ``invalid_tool_call`` whose arguments are the
raw text, so the agent can tell the model what went wrong instead of dropping the call silently.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import json_repair

from deepresearch.llm.messages import Encoded, Message, ToolCall
from deepresearch.llm.stream import content_text
from deepresearch.templates import render_prompt

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
INVALID_TOOL_CALL = "invalid_tool_call"
"""Name given to a block that could not be parsed; its arguments are the block's raw text."""

_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def render(name: str, /, **variables: Any) -> str:
    """Render ``llm/prompts/<name>``: the tool-call formats, model-facing text that belongs to this
    package (the agent's prompts are the agent's; the client renders these itself)."""
    return render_prompt("deepresearch.llm", name, variables)


def instructions(tools: Sequence[Mapping[str, Any]]) -> str:
    """The tool list and call format, for the system message (OpenAI ``tools`` entries or bare specs)."""
    entries = []
    for tool in tools:
        spec = tool.get("function", tool)
        parameters = spec.get("parameters") or {"type": "object", "properties": {}}
        entries.append(
            {
                "name": spec.get("name", ""),
                "description": (spec.get("description") or "").strip(),
                "parameters": json.dumps(parameters, ensure_ascii=False),
            }
        )
    return render("text_mode_tools.j2", tools=entries)


def to_wire(
    messages: Sequence[Message | Encoded], tools: Sequence[Mapping[str, Any]] | None = None
) -> list[Message]:
    """The history as a model without native tool calls must see it; ``messages`` is not modified.

    Assistant ``tool_calls`` become ``<tool_call>`` blocks after the assistant's text; tool results
    become user messages of ``<tool_response name="…">`` blocks, consecutive results merged into one
    message. With ``tools``, their instructions are appended to the first system message (a system
    message is added when there is none).
    """
    wire: list[Message] = []
    names: dict[str, str] = {}  # tool_call_id → tool name, for results that do not repeat the name
    responses: list[str] = []
    for message in messages:
        if isinstance(message, str):
            raise TypeError("text tool mode needs message dicts; Encoded messages cannot be rewritten")
        if message.get("role") == "tool":
            responses.append(_tool_response(message, names))
            continue
        if responses:
            wire.append({"role": "user", "content": "\n".join(responses)})
            responses = []
        if message.get("role") == "assistant" and message.get("tool_calls"):
            wire.append(_assistant_as_text(message, names))
        else:
            wire.append(message)
    if responses:
        wire.append({"role": "user", "content": "\n".join(responses)})
    if tools:
        add_to_system(wire, instructions(tools))
    return wire


def used_call_ids(messages: Sequence[Message | Encoded]) -> set[str]:
    """Ids of the tool calls already in the history, so new ids never collide with them."""
    ids: set[str] = set()
    for message in messages:
        if isinstance(message, str):
            continue
        for call in message.get("tool_calls") or ():
            if call.get("id"):
                ids.add(call["id"])
    return ids


def parse_tool_calls(text: str, *, taken_ids: Collection[str] = ()) -> tuple[str, list[ToolCall]]:
    """``(text without the blocks, calls)`` for every ``<tool_call>`` block in ``text``.

    Calls get ids ``call_<n>`` with ``n`` counting on from the calls already in the conversation
    (``taken_ids``), skipping any id already taken. Arguments are compact JSON, or the model's raw
    string when it is not JSON at all.
    """
    if OPEN not in text:
        return text, []
    kept: list[str] = []
    raw_blocks: list[str] = []
    position = 0
    while (start := text.find(OPEN, position)) != -1:
        kept.append(text[position:start])
        body_start = start + len(OPEN)
        end = text.find(CLOSE, body_start)
        next_open = text.find(OPEN, body_start)
        if end == -1 or (next_open != -1 and next_open < end):
            # Unclosed: the block runs to the next opening tag or to the end of the reply.
            position = next_open if next_open != -1 else len(text)
            raw_blocks.append(text[body_start:position])
        else:
            raw_blocks.append(text[body_start:end])
            position = end + len(CLOSE)
    kept.append(text[position:])
    ids = _new_ids(len(raw_blocks), taken_ids)
    calls = [_parse_block(raw, call_id) for raw, call_id in zip(raw_blocks, ids, strict=True)]
    return "".join(kept).strip(), calls


def _parse_block(raw: str, call_id: str) -> ToolCall:
    body = raw.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    data = _load(body)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
        return ToolCall(id=call_id, name=INVALID_TOOL_CALL, arguments=raw.strip())
    arguments = data["arguments"] if "arguments" in data else data.get("parameters")
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):  # some models encode the arguments twice
        decoded = _load(arguments)
        arguments = decoded if isinstance(decoded, dict) else arguments
    text = (
        arguments
        if isinstance(arguments, str)
        else json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    )
    return ToolCall(id=call_id, name=data["name"].strip(), arguments=text)


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return json_repair.loads(text) if text else None


def _new_ids(count: int, taken: Collection[str]) -> list[str]:
    ids: list[str] = []
    number = len(taken)
    while len(ids) < count:
        number += 1
        candidate = f"call_{number}"
        if candidate not in taken:
            ids.append(candidate)
    return ids


def _assistant_as_text(message: Message, names: dict[str, str]) -> Message:
    blocks = []
    for call in message["tool_calls"]:
        function = call.get("function") or {}
        name = function.get("name") or ""
        names[call.get("id") or ""] = name
        raw = function.get("arguments")
        if name == INVALID_TOOL_CALL:  # show the model exactly what it wrote
            blocks.append(f"{OPEN}\n{raw}\n{CLOSE}")
            continue
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else (raw or {})
        except ValueError:
            arguments = raw
        blocks.append(
            f"{OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{CLOSE}"
        )
    text = content_text(message.get("content")).strip()
    rewritten = {key: value for key, value in message.items() if key != "tool_calls"}
    rewritten["content"] = "\n\n".join([text, *blocks] if text else blocks)
    return rewritten


def _tool_response(message: Message, names: Mapping[str, str]) -> str:
    name = message.get("name") or names.get(message.get("tool_call_id") or "") or "unknown"
    return tool_response_block(name, content_text(message.get("content")))


def tool_response_block(name: str, content: str) -> str:
    """How a tool result is shown to a model that has no tool role (text and JSON modes)."""
    return f'<tool_response name="{html.escape(name)}">\n{content}\n</tool_response>'


def add_to_system(wire: list[Message], text: str) -> None:
    """Append ``text`` to the first system message (or start with one)."""
    for index, message in enumerate(wire):
        if message.get("role") == "system":
            content = message.get("content")
            if isinstance(content, list):
                new_content: Any = [*content, {"type": "text", "text": text}]
            else:
                new_content = f"{content_text(content)}\n\n{text}" if content else text
            wire[index] = {**message, "content": new_content}
            return
    wire.insert(0, {"role": "system", "content": text})
