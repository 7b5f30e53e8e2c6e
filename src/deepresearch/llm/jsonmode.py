"""Tool calling for small local models: one JSON action per reply, constrained by a JSON schema.

A 135M-parameter model on llama.cpp never writes OpenAI ``tool_calls``, and its ``<tool_call>`` text
is often broken; but when the server constrains decoding with a JSON schema (``response_format``,
compiled by llguidance or llama.cpp's own converter) the reply always parses. With
``tool_mode = "json"`` the client therefore sends no ``tools``: the tool list and the action format
(``llm/prompts/json_mode_tools.j2``) go into the first system message, every reply must be
``{"thought": …, "action": {"name": …, "arguments": {…}}}`` where the action is one registered tool
or ``final_answer``, and the schema of that object is sent as ``response_format``. A server that
refuses the schema (HTTP 400) is asked again with the prompt alone and the reply is parsed with
repair. Actions become ordinary ``ToolCall``s and the history is rewritten for the wire as the model
would have written it, so ``messages.json`` has the same shape in every mode.

Why every string, array and number in the schema is bounded: under a grammar a small model that
starts repeating itself cannot close the string, so it runs to ``max_tokens`` and the JSON is cut.
The caps keep the longest possible tool action at a few thousand tokens, far below the default
``max_tokens`` of 16384; each tool string stays under 2000 characters, the repetition limit of
llama.cpp's grammar parser (``MAX_REPETITION_THRESHOLD``), so the schema compiles there too. Only
the final report gets a long cap (see ``answer_cap``); a server that cannot compile it answers 400
and the run goes on with prompt-only JSON. The schema uses only keywords both llguidance and
llama.cpp's converter support: no ``$ref`` (definitions are inlined), no ``oneOf`` (``anyOf`` of
branches told apart by a ``const`` name), no ``format`` or ``pattern``; ``additionalProperties`` is
false wherever the properties are declared, so a model cannot wander into keys of its own. The one
engine-specific key, llguidance's ``x-guidance``, bounds the whitespace between tokens; other engines
ignore it.

A free-form object argument (any keys) is bounded as a small map of flat values, unless its tool knows
better: a tool spec may carry, beside ``parameters``, bounded schemas of such arguments by name under
``CONSTRAINED_ARGUMENTS`` (``Tool.schema(constrained=True)``; the ``todo`` plan is one), and those are
used instead. That key is not OpenAI's: the agent adds it only in the modes that never send the tool
list to the server.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import json_repair

from deepresearch.errors import LLMError
from deepresearch.llm.messages import Encoded, Message, ToolCall
from deepresearch.llm.stream import content_text
from deepresearch.llm.textmode import INVALID_TOOL_CALL, add_to_system, render, tool_response_block

FINAL_ANSWER = "final_answer"
"""The action that ends the research; its one argument, ``answer``, is the report."""
CONSTRAINED_ARGUMENTS = "x-constrained-arguments"
"""Key of a tool spec (beside ``parameters``) holding bounded schemas of free-form object arguments,
by argument name, used as they are instead of the generic bounded map."""

THOUGHT_MAX_CHARS = 1000
"""Cap of ``thought``: a few sentences (about 250 tokens) on what the last result said and why the
next action; the system prompt asks for a brief explanation, not an essay."""
STRING_MAX_CHARS = 1500
"""Cap of a tool's string argument (about 400 tokens): a command, a path, notes for a file. Below
llama.cpp's grammar repetition limit of 2000; longer files are built with several ``append`` calls."""
ITEM_MAX_CHARS = 500
"""Cap of a string inside an array (a search query, a URL), which may come ten at a time."""
ITEMS_MAX = 10
"""Most items in an array (queries or URLs per batch, step ids a step depends on)."""
KEYS_MAX = 16
"""Most keys in an object used as a map (steps in one ``todo`` update)."""
INTEGER_BOUND = 10**9
"""Integers without a documented range stay within ±1e9: ten digits, so no endless number."""
ANSWER_MAX_CHARS = 24_000
"""Cap of the final report: a long report (about 6,000 English tokens)."""
WHITESPACE_PATTERN = r"[\x20\x0A\x0D\x09]{1,24}"
"""Whitespace allowed between JSON tokens, for llguidance (``x-guidance``, ignored by other engines):
enough to pretty-print, too little for a model to loop on newlines, which unbounded JSON whitespace
allows."""
ANSWER_CHARS_PER_TOKEN = 1.5
"""Characters per output token assumed when fitting the report cap under ``max_tokens``: English runs
at about four, Chinese at about one to one and a half, so a report at the cap rarely hits the limit
(and one that does is continued by the agent)."""

_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated"})
_RANGE = re.compile(r"(?<![\w.])(-?\d+)\s*(?:-|–|to)\s*(-?\d+)(?![\w.])")
_AT_MOST = re.compile(r"at most\s+(\d[\d,_]*)", re.I)
_FENCE = re.compile(r"```[\w-]*[ \t]*\n?(.*?)```", re.S)
_OBJECT_START = re.compile(r'\{\s*"')
_REJECTION_HINTS = ("response_format", "json_schema", "grammar", "schema")


def answer_cap(max_tokens: int | None) -> int:
    """The ``maxLength`` of the final report for a reply limit of ``max_tokens``."""
    if max_tokens is None:
        return ANSWER_MAX_CHARS
    return max(STRING_MAX_CHARS, min(ANSWER_MAX_CHARS, int(max_tokens * ANSWER_CHARS_PER_TOKEN)))


def action_schema(
    tools: Sequence[Mapping[str, Any]],
    *,
    max_string: int = STRING_MAX_CHARS,
    max_answer: int = ANSWER_MAX_CHARS,
    max_thought: int = THOUGHT_MAX_CHARS,
    final_only: bool = False,
) -> dict[str, Any]:
    """The JSON schema of one reply: a thought and one action, a tool (``tools`` are OpenAI ``tools``
    entries or bare specs) or ``final_answer``; only ``final_answer`` when ``final_only``."""
    final = _branch(
        FINAL_ANSWER,
        _closed_object({"answer": {"type": "string", "maxLength": max_answer}}, required=["answer"]),
    )
    branches = [] if final_only else [_tool_branch(tool, max_string) for tool in tools]
    branches = [branch for branch in branches if branch is not None]
    action = {"anyOf": [*branches, final]} if branches else final
    schema = _closed_object(
        {"thought": {"type": "string", "maxLength": max_thought}, "action": action},
        required=["thought", "action"],
    )
    return {**schema, "x-guidance": {"whitespace_pattern": WHITESPACE_PATTERN}}


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI ``response_format`` that asks the server to constrain the reply to ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": "action", "schema": schema, "strict": True}}


def rejects_response_format(error: LLMError) -> bool:
    """Whether ``error`` is a server refusing the schema (400 naming it), not a failure to retry."""
    detail = str(error).lower().partition("http 400:")[2]  # the server's words, not the model's name
    return error.status == 400 and any(hint in detail for hint in _REJECTION_HINTS)


def instructions(
    tools: Sequence[Mapping[str, Any]],
    *,
    max_string: int = STRING_MAX_CHARS,
    max_answer: int = ANSWER_MAX_CHARS,
) -> str:
    """The action format and the tool list, for the system message."""
    entries = []
    for tool in tools:
        spec = tool.get("function", tool)
        if spec.get("name") == FINAL_ANSWER:
            continue
        parameters = spec.get("parameters") or {"type": "object", "properties": {}}
        entries.append(
            {
                "name": spec.get("name", ""),
                "description": (spec.get("description") or "").strip(),
                "parameters": json.dumps(parameters, ensure_ascii=False),
            }
        )
    return render(
        "json_mode_tools.j2",
        tools=entries,
        final_answer=FINAL_ANSWER,
        max_string=max_string,
        max_answer=max_answer,
    )


def to_wire(
    messages: Sequence[Message | Encoded],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    max_answer: int = ANSWER_MAX_CHARS,
) -> list[Message]:
    """The history as the model must see it in JSON mode; ``messages`` is not modified.

    Each assistant message becomes the JSON action text the model would have written: one action per
    tool call, in call order, each followed by its result as a user message of ``<tool_response>``
    (several calls, as after a resume from native mode, are replayed as consecutive turns); a reply
    without calls becomes a ``final_answer`` action. With ``tools``, the instructions are appended to
    the first system message (one is added when there is none).
    """
    wire: list[Message] = []
    pending: list[tuple[Message, dict[str, Any], str]] = []  # (assistant, call, thought) awaiting results
    results: dict[str, Message] = {}
    orphans: list[Message] = []

    def flush() -> None:
        for message, call, thought in pending:
            wire.append(_action_message(message, call, thought))
            result = results.pop(call.get("id") or "", None)
            if result is not None:
                wire.append(_user(_tool_response(result, call)))
        if orphans:  # results whose call is not in the view (a duplicate, a stray id)
            wire.append(_user("\n".join(_tool_response(m, None) for m in orphans)))
        pending.clear()
        results.clear()
        orphans.clear()

    for item in messages:
        message: Message = json.loads(item) if isinstance(item, Encoded) else item
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id") or ""
            if pending and call_id in {c.get("id") for _, c, _ in pending} and call_id not in results:
                results[call_id] = message
            else:
                orphans.append(message)
            continue
        flush()
        if role == "assistant" and message.get("tool_calls"):
            thought = _thought_of(message)
            for index, call in enumerate(message["tool_calls"]):
                pending.append((message, call, thought if index == 0 else ""))
        elif role == "assistant":
            wire.append(_answer_message(message))
        else:
            wire.append(message)
    flush()
    if tools is not None:
        add_to_system(wire, instructions(tools, max_answer=max_answer))
    return wire


def parse_reply(
    text: str, *, taken_ids: Collection[str] = (), final_only: bool = False
) -> tuple[str, str | None, list[ToolCall]]:
    """``(content, thought, calls)`` read from one JSON-mode reply.

    ``final_answer`` gives the report as content and the thought apart (it becomes the reasoning);
    a tool action gives one call (id ``call_<n>`` unused in ``taken_ids``, arguments compact JSON)
    with the thought as content, or with no content when ``final_only`` (the agent will not run
    the call and must not mistake the thought for the report). Fenced JSON, a sentence before the
    object, a bare ``{"name", "arguments"}`` and broken JSON (repaired) are accepted; prose with an
    ``<answer>`` is taken as the answer; an empty reply stays empty; anything else becomes an
    ``invalid_tool_call`` whose arguments are the raw text, for the agent to send back as an error.
    """
    body = text.strip()
    if not body:
        return "", None, []
    action = _read_action(body)
    if action is None:
        if "<answer>" in body.lower():
            return body, None, []
        return "", None, [ToolCall(id=_new_id(taken_ids), name=INVALID_TOOL_CALL, arguments=body)]
    name, arguments, thought = action
    if name == FINAL_ANSWER:
        return _answer_text(arguments), thought or None, []
    call = ToolCall(id=_new_id(taken_ids), name=name, arguments=_compact(arguments))
    if final_only:
        return "", thought or None, [call]
    return thought, None, [call]


# --- the schema


def _closed_object(properties: dict[str, Any], *, required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _branch(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return _closed_object({"name": {"const": name}, "arguments": arguments}, required=["name", "arguments"])


def _tool_branch(tool: Mapping[str, Any], max_string: int) -> dict[str, Any] | None:
    spec = tool.get("function", tool)
    name = spec.get("name")
    if not isinstance(name, str) or not name or name == FINAL_ANSWER:
        return None
    parameters = spec.get("parameters") or {}
    bounder = _Bounder(parameters.get("$defs") or parameters.get("definitions") or {}, max_string)
    properties = parameters.get("properties")
    if not isinstance(properties, dict) or not properties:  # no declared arguments: a small map at most
        return _branch(name, bounder.bound({**parameters, "type": "object"}))
    shapes = spec.get(CONSTRAINED_ARGUMENTS) or {}
    bounded = {
        key: copy.deepcopy(shapes[key]) if key in shapes and _is_open(value) else bounder.bound(value)
        for key, value in properties.items()
    }
    required = [key for key in parameters.get("required") or () if key in bounded]
    return _branch(name, _closed_object(bounded, required=required))


def _is_open(node: Any) -> bool:
    """A free-form object: no declared properties, any keys."""
    return isinstance(node, dict) and node.get("type") == "object" and not node.get("properties")


class _Bounder:
    """Rewrites one tool's parameter schema into a bounded one that grammar engines compile."""

    def __init__(self, definitions: Mapping[str, Any], max_string: int) -> None:
        self.definitions = definitions
        self.max_string = max_string

    def bound(self, node: Any, *, depth: int = 0, in_array: bool = False) -> dict[str, Any]:
        if not isinstance(node, dict) or depth > 8:
            return _any_value()
        node = self._resolve(node, depth)
        alternatives = node.get("anyOf") or node.get("oneOf")
        if isinstance(alternatives, list) and alternatives:
            options = [self.bound(option, depth=depth + 1, in_array=in_array) for option in alternatives]
            return options[0] if len(options) == 1 else {"anyOf": options}
        if "const" in node:
            return {"const": node["const"]}
        if isinstance(node.get("enum"), list) and node["enum"]:
            return {"enum": list(node["enum"])}
        kind = node.get("type")
        if isinstance(kind, list):
            options = [self.bound({**node, "type": t}, depth=depth + 1, in_array=in_array) for t in kind]
            return options[0] if len(options) == 1 else {"anyOf": options}
        if kind == "string":
            cap = ITEM_MAX_CHARS if in_array else self.max_string
            return _string(min(_int_or(node.get("maxLength"), cap), cap), node.get("minLength"))
        if kind in ("integer", "number"):
            return _number(kind, node)
        if kind in ("boolean", "null"):
            return {"type": kind}
        if kind == "array" or (kind is None and ("items" in node or "prefixItems" in node)):
            return self._array(node, depth)
        if kind == "object" or (kind is None and ("properties" in node or "additionalProperties" in node)):
            return self._object(node, depth)
        return _any_value()

    def _resolve(self, node: dict[str, Any], depth: int) -> dict[str, Any]:
        """``$ref`` inlined and a one-element ``allOf`` (pydantic's wrapper) merged, annotations dropped."""
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = self.definitions.get(ref.rsplit("/", 1)[-1], {})
            siblings = {k: v for k, v in node.items() if k != "$ref" and k not in _ANNOTATIONS}
            return self._resolve({**target, **siblings}, depth + 1) if depth < 8 else {}
        parts = node.get("allOf")
        if isinstance(parts, list) and len(parts) == 1 and isinstance(parts[0], dict):
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return self._resolve({**self._resolve(parts[0], depth + 1), **rest}, depth + 1)
        return node

    def _array(self, node: dict[str, Any], depth: int) -> dict[str, Any]:
        items = node.get("items")
        if not isinstance(items, dict):  # tuples and untyped arrays: any scalar
            items = {}
        cap = min(_int_or(node.get("maxItems"), ITEMS_MAX), ITEMS_MAX)
        bounded = {
            "type": "array",
            "items": self.bound(items, depth=depth + 1, in_array=True) if items else _scalar(),
            "maxItems": cap,
        }
        minimum = _int_or(node.get("minItems"), 0)
        if 0 < minimum <= cap:
            bounded["minItems"] = minimum
        return bounded

    def _object(self, node: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if isinstance(properties, dict) and properties:
            bounded = {key: self.bound(value, depth=depth + 1) for key, value in properties.items()}
            required = [key for key in node.get("required") or () if key in bounded]
            return _closed_object(bounded, required=required)
        value = self.bound(extra, depth=depth + 1) if isinstance(extra, dict) and extra else _flat_value()
        return {"type": "object", "additionalProperties": value, "maxProperties": KEYS_MAX}


def _string(cap: int, minimum: Any = None) -> dict[str, Any]:
    bounded: dict[str, Any] = {"type": "string", "maxLength": cap}
    low = _int_or(minimum, 0)
    if 0 < low <= cap:
        bounded["minLength"] = low
    return bounded


def _number(kind: str, node: Mapping[str, Any]) -> dict[str, Any]:
    """Bounds from the schema, else from a range the description documents, else ±``INTEGER_BOUND``."""
    low, high = node.get("minimum"), node.get("maximum")
    if "exclusiveMinimum" in node and low is None and kind == "integer":
        low = node["exclusiveMinimum"] + 1
    if "exclusiveMaximum" in node and high is None and kind == "integer":
        high = node["exclusiveMaximum"] - 1
    documented_low, documented_high = _documented_range(str(node.get("description") or ""))
    low = low if isinstance(low, int | float) else documented_low
    high = high if isinstance(high, int | float) else documented_high
    low = -INTEGER_BOUND if low is None else low
    high = INTEGER_BOUND if high is None else high
    if low > high:
        low, high = -INTEGER_BOUND, INTEGER_BOUND
    return {"type": kind, "minimum": low, "maximum": high}


def _documented_range(description: str) -> tuple[int | None, int | None]:
    """``(low, high)`` from ``1-200``/``1 to 200`` or ``at most 50000`` in a parameter description."""
    match = _RANGE.search(description)
    if match and int(match.group(1)) < int(match.group(2)):
        return int(match.group(1)), int(match.group(2))
    match = _AT_MOST.search(description)
    if match:
        return None, int(re.sub(r"[,_]", "", match.group(1)))
    return None, None


def _scalar() -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "maxLength": ITEM_MAX_CHARS},
            {"type": "number", "minimum": -INTEGER_BOUND, "maximum": INTEGER_BOUND},
            {"type": "boolean"},
            {"type": "null"},
        ]
    }


def _flat_value() -> dict[str, Any]:
    """A scalar or a short list of scalars: a free-form value that cannot nest without end."""
    return {"anyOf": [*_scalar()["anyOf"], {"type": "array", "items": _scalar(), "maxItems": ITEMS_MAX}]}


def _any_value() -> dict[str, Any]:
    """What an untyped parameter may hold: a flat value or a map of flat values."""
    flat = _flat_value()
    return {
        "anyOf": [
            *flat["anyOf"],
            {"type": "object", "additionalProperties": flat, "maxProperties": KEYS_MAX},
        ]
    }


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --- the history


def _thought_of(message: Message) -> str:
    text = content_text(message.get("content")).strip()
    if text:
        return text
    reasoning = message.get("reasoning_content")
    return reasoning.strip() if isinstance(reasoning, str) else ""


def _action_message(message: Message, call: Mapping[str, Any], thought: str) -> Message:
    function = call.get("function") or {}
    name = function.get("name") or ""
    raw = function.get("arguments")
    if name == INVALID_TOOL_CALL:  # show the model exactly what it wrote
        text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
    else:
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else (raw or {})
        except ValueError:
            arguments = raw
        text = _dumps({"thought": thought, "action": {"name": name, "arguments": arguments}})
    return _rewritten(message, text)


def _answer_message(message: Message) -> Message:
    answer = content_text(message.get("content"))
    reasoning = message.get("reasoning_content")
    thought = reasoning.strip() if isinstance(reasoning, str) else ""
    action = {"name": FINAL_ANSWER, "arguments": {"answer": answer}}
    return _rewritten(message, _dumps({"thought": thought, "action": action}))


def _rewritten(message: Message, content: str) -> Message:
    rewritten = {key: value for key, value in message.items() if key != "tool_calls"}
    rewritten["content"] = content
    return rewritten


def _tool_response(message: Message, call: Mapping[str, Any] | None) -> str:
    name = message.get("name") or ((call or {}).get("function") or {}).get("name") or "unknown"
    return tool_response_block(name, content_text(message.get("content")))


def _user(text: str) -> Message:
    return {"role": "user", "content": text}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- the reply


def _read_action(body: str) -> tuple[str, Any, str] | None:
    """``(name, arguments, thought)`` from the first readable candidate in ``body``, else ``None``."""
    candidates = [body]
    candidates += [fenced.strip() for fenced in _FENCE.findall(body)]
    start = _OBJECT_START.search(body)
    if start and start.start() > 0:
        candidates.append(body[start.start() :])
    for candidate in candidates:
        action = _action_of(_load(candidate))
        if action is not None:
            return action
    return None


def _load(text: str) -> Any:
    """The first JSON value in ``text`` (trailing prose ignored), else ``text`` repaired."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return json.JSONDecoder().raw_decode(stripped)[0]
    except ValueError:
        return json_repair.loads(stripped)


def _action_of(data: Any) -> tuple[str, Any, str] | None:
    if not isinstance(data, dict):
        return None
    thought = data.get("thought")
    thought = thought.strip() if isinstance(thought, str) else ""
    action = data.get("action")
    if isinstance(action, dict):
        source: dict[str, Any] = action
    elif isinstance(action, str):  # {"thought", "action": "<tool>", "arguments": {…}}
        source = {"name": action, **{k: v for k, v in data.items() if k != "action"}}
    elif "name" in data:  # a bare {"name", "arguments"}
        source = data
    elif isinstance(data.get("answer"), str):  # a bare {"answer": …}
        source = {"name": FINAL_ANSWER, "arguments": {"answer": data["answer"]}}
    else:
        return None
    name = source.get("name") or source.get("tool")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments: Any = next(
        (source[key] for key in ("arguments", "parameters", "args", "action_input") if key in source), {}
    )
    if isinstance(arguments, str) and name.strip() != FINAL_ANSWER:  # arguments encoded twice
        decoded = _load(arguments)
        arguments = decoded if isinstance(decoded, dict) else arguments
    return name.strip(), {} if arguments is None else arguments, thought


def _answer_text(arguments: Any) -> str:
    """The report: ``answer``, else the only text the model put in the arguments."""
    if isinstance(arguments, dict):
        texts = [value for value in arguments.values() if isinstance(value, str)]
        answer = arguments.get("answer", texts[0] if len(texts) == 1 else "")
    else:
        answer = arguments
    return answer if isinstance(answer, str) else _dumps(answer)


def _new_id(taken: Collection[str]) -> str:
    number = len(taken)
    while True:
        number += 1
        if f"call_{number}" not in taken:
            return f"call_{number}"
