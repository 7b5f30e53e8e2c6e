"""JSON action mode: the bounded schema, the history for the wire, reply parsing, and the client
round trip including the fallback for servers that refuse ``response_format``.

``jsonschema`` is not a dependency, so a small validator for exactly the keywords the action schema
may use checks sample actions; the keyword allow-list is itself part of the contract (what both
llguidance and llama.cpp's schema converter compile).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from deepresearch.errors import LLMError
from deepresearch.llm import jsonmode
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.jsonmode import (
    FINAL_ANSWER,
    action_schema,
    answer_cap,
    instructions,
    parse_reply,
    to_wire,
)
from deepresearch.llm.messages import Completion, Encoded, Message
from deepresearch.llm.textmode import INVALID_TOOL_CALL
from deepresearch.tools.registry import default_tools
from tests.fakes.openai_server import FakeOpenAI, Reply

ALLOWED_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "enum",
    "const",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "minimum",
    "maximum",
    "maxProperties",
}


def registry_tools() -> list[dict[str, Any]]:
    """The entries the agent hands the client in JSON mode (the tools' constrained shapes included)."""
    return [tool.schema(constrained=True) for tool in default_tools().values()]


def errors(instance: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Violations of ``schema`` by ``instance``, for the keywords in ``ALLOWED_KEYWORDS``."""
    if "anyOf" in schema:
        if all(errors(instance, option, where) for option in schema["anyOf"]):
            return [f"{where}: matches no anyOf branch"]
        return []
    if "const" in schema:
        return [] if instance == schema["const"] else [f"{where}: {instance!r} != {schema['const']!r}"]
    if "enum" in schema:
        return [] if instance in schema["enum"] else [f"{where}: {instance!r} not in enum"]
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if kind is not None and not checks[kind](instance):
        return [f"{where}: not {kind}"]
    found: list[str] = []
    if isinstance(instance, str):
        if len(instance) > schema.get("maxLength", len(instance)):
            found.append(f"{where}: longer than {schema['maxLength']}")
        if len(instance) < schema.get("minLength", 0):
            found.append(f"{where}: shorter than {schema['minLength']}")
    is_number = isinstance(instance, int | float) and not isinstance(instance, bool)
    if is_number and not schema.get("minimum", instance) <= instance <= schema.get("maximum", instance):
        found.append(f"{where}: {instance} out of range")
    if isinstance(instance, list):
        if len(instance) > schema.get("maxItems", len(instance)):
            found.append(f"{where}: more than {schema['maxItems']} items")
        for index, item in enumerate(instance):
            found += errors(item, schema.get("items", {}), f"{where}[{index}]")
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        found += [f"{where}: missing {key}" for key in schema.get("required", []) if key not in instance]
        if len(instance) > schema.get("maxProperties", len(instance)):
            found.append(f"{where}: more than {schema['maxProperties']} keys")
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in properties:
                found += errors(value, properties[key], f"{where}.{key}")
            elif extra is False:
                found.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                found += errors(value, extra, f"{where}.{key}")
    return found


def walk(node: Any, path: str = "$"):
    """Every sub-schema of ``node`` with its path."""
    if isinstance(node, dict):
        yield path, node
        for key in ("properties",):
            for name, child in (node.get(key) or {}).items():
                yield from walk(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from walk(node[key], f"{path}.{key}")
        for index, child in enumerate(node.get("anyOf") or ()):
            yield from walk(child, f"{path}|{index}")


def action(name: str, arguments: Any, thought: str = "Because.") -> dict[str, Any]:
    return {"thought": thought, "action": {"name": name, "arguments": arguments}}


# --- the schema


def test_schema_from_the_real_registry_is_bounded_everywhere() -> None:
    tools = registry_tools()
    schema = action_schema(tools)

    assert schema["required"] == ["thought", "action"] and schema["additionalProperties"] is False
    assert list(schema["properties"]) == ["thought", "action"]  # the thought is generated first
    assert schema.pop("x-guidance") == {"whitespace_pattern": jsonmode.WHITESPACE_PATTERN}
    branches = schema["properties"]["action"]["anyOf"]
    names = [b["properties"]["name"]["const"] for b in branches]
    assert names == [*default_tools(), FINAL_ANSWER]
    for path, node in walk(schema):
        assert set(node) <= ALLOWED_KEYWORDS, (path, set(node) - ALLOWED_KEYWORDS)
        kind = node.get("type")
        if kind == "string":
            assert 0 < node["maxLength"] < 2000 or path.endswith(".answer"), path
        if kind == "array":
            assert node["maxItems"] <= jsonmode.ITEMS_MAX, path
        if kind in ("integer", "number"):
            assert "minimum" in node and "maximum" in node, path
        if kind == "object":
            assert node.get("properties") or "maxProperties" in node, path
            if node.get("properties"):
                assert node["additionalProperties"] is False, path
    arguments = {b["properties"]["name"]["const"]: b["properties"]["arguments"] for b in branches}
    web = arguments["batch_web_surfer"]["properties"]
    assert web["topk"] == {"type": "integer", "minimum": 1, "maximum": 200}  # documented "1-200"
    assert arguments["file"]["properties"]["limit"]["maximum"] == 50_000  # documented "at most 50000"
    assert arguments["file"]["properties"]["offset"]["minimum"] == 0  # from the model's ge=0
    assert arguments["shell"]["required"] == ["cmd"]
    step = arguments["todo"]["properties"]["updates"]["additionalProperties"]["anyOf"][0]
    assert list(step["properties"]) == ["task", "status", "priority", "details", "dependencies", "tags"]
    assert "completed" in step["properties"]["status"]["enum"]
    assert arguments[FINAL_ANSWER]["properties"]["answer"]["maxLength"] == jsonmode.ANSWER_MAX_CHARS
    assert json.dumps(schema)  # plain JSON, no references left


def test_a_tool_brings_its_own_constrained_arguments() -> None:
    """The plan's shape comes from the todo tool's spec, not from a name this module knows: the same
    spec without it (as sent in native mode, where the key is not OpenAI's) gets the generic map."""
    todo = default_tools()["todo"]
    native = todo.schema()
    assert jsonmode.CONSTRAINED_ARGUMENTS not in native["function"]
    generic = action_schema([native])["properties"]["action"]["anyOf"][0]["properties"]["arguments"]
    assert '"task"' not in json.dumps(generic["properties"]["updates"])  # a map of flat values, no steps
    shaped = action_schema([todo.schema(constrained=True)])["properties"]["action"]["anyOf"][0]
    updates = shaped["properties"]["arguments"]["properties"]["updates"]
    assert updates == todo.constrained["updates"] and updates is not todo.constrained["updates"]
    renamed = {**todo.schema(constrained=True)["function"], "name": "plan"}  # any tool may carry a shape
    branch = action_schema([renamed])["properties"]["action"]["anyOf"][0]
    assert branch["properties"]["arguments"]["properties"]["updates"] == updates
    assert instructions([todo.schema(constrained=True)]) == instructions([native])  # the prompt is unchanged


def test_sample_actions_validate() -> None:
    schema = action_schema(registry_tools())
    plan = {"1": {"task": "Find the 2024 figures", "priority": "high"}, "2": {"task": "Compare"}, "3": None}
    good = [
        action("batch_web_surfer", {"action": "batch_search", "queries": ["bm25", "fts5"], "topk": 20}),
        action("batch_web_surfer", {"action": "batch_open", "urls": ["https://example.org/a"]}),
        action("file", {"action": "append", "path": "notes/a.md", "content": "Notes.\n"}),
        action("todo", {"updates": plan}),
        action("todo", {"updates": {"1": {"status": "completed"}}}),
        action("todo", {}),
        action("shell", {"cmd": "python3 -c 'print(6*7)'", "timeout": 30}),
        action(FINAL_ANSWER, {"answer": "# Report\n\nBM25 saturates \\cite{web_1a2b3c4d}."}, thought=""),
    ]
    for sample in good:
        assert errors(sample, schema) == [], sample

    bad = [
        action("browse", {"url": "x"}),  # no such tool
        action("shell", {"cmd": "ls", "sudo": True}),  # undeclared argument
        action("shell", {"timeout": 3}),  # missing the required command
        action("shell", {"cmd": "x" * (jsonmode.STRING_MAX_CHARS + 1)}),
        action("batch_web_surfer", {"action": "batch_search", "queries": ["q"] * 11}),
        action("batch_web_surfer", {"action": "batch_search", "queries": ["q" * 501]}),
        action("batch_web_surfer", {"action": "crawl"}),
        action("batch_web_surfer", {"action": "batch_search", "topk": 500}),
        action("todo", {"updates": {"1": {"task": "a", "status": "someday"}}}),
        action("todo", {"updates": {"1": {"task": "a", "colour": "red"}}}),
        action("todo", {"updates": {str(i): None for i in range(jsonmode.KEYS_MAX + 1)}}),
        action(FINAL_ANSWER, {"report": "…"}),
        {"action": {"name": FINAL_ANSWER, "arguments": {"answer": "no thought"}}},
        {**action("shell", {"cmd": "ls"}), "mood": "happy"},
        action("file", {"action": "read"}, thought="t" * (jsonmode.THOUGHT_MAX_CHARS + 1)),
    ]
    for sample in bad:
        assert errors(sample, schema), sample


def test_forced_final_schema_has_only_the_answer() -> None:
    schema = action_schema(registry_tools(), final_only=True, max_answer=3000)

    final = schema["properties"]["action"]
    assert final["properties"]["name"] == {"const": FINAL_ANSWER}
    assert final["properties"]["arguments"]["properties"]["answer"]["maxLength"] == 3000
    assert errors(action(FINAL_ANSWER, {"answer": "Done."}), schema) == []
    assert errors(action("shell", {"cmd": "ls"}), schema)
    assert errors(action(FINAL_ANSWER, {"answer": "x" * 3001}), schema)


def test_answer_cap_follows_the_output_limit() -> None:
    assert answer_cap(None) == answer_cap(16384) == jsonmode.ANSWER_MAX_CHARS
    assert answer_cap(4096) == 6144  # 1.5 characters per token
    assert answer_cap(100) == jsonmode.STRING_MAX_CHARS  # never shorter than a tool argument
    assert all(answer_cap(n) != 2000 for n in range(1, 20_000))  # llama.cpp's off-by-one threshold


def test_any_tool_schema_is_rewritten_into_supported_keywords() -> None:
    parameters = {
        "$defs": {
            "Window": {
                "type": "object",
                "properties": {"start": {"type": "string", "format": "date"}, "days": {"type": "integer"}},
                "required": ["start"],
            },
            "Kind": {"enum": ["a", "b"], "type": "string"},
        },
        "type": "object",
        "properties": {
            "window": {"$ref": "#/$defs/Window", "description": "when"},
            "kind": {"allOf": [{"$ref": "#/$defs/Kind"}], "default": "a"},
            "pick": {"oneOf": [{"type": "string", "pattern": "^x+$"}, {"type": "integer", "maximum": 9}]},
            "flag": {"type": ["boolean", "null"]},
            "meta": {"type": "object", "additionalProperties": True},
            "anything": {},
            "pairs": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
            "limited": {"type": "string", "maxLength": 20, "minLength": 2},
            "ratio": {"type": "number", "description": "a share, 0 to 1"},
        },
        "required": ["window", "missing"],
    }
    schema = action_schema([{"name": "custom", "description": "d", "parameters": parameters}])

    custom = schema["properties"]["action"]["anyOf"][0]["properties"]["arguments"]
    for path, node in walk(custom):
        assert set(node) <= ALLOWED_KEYWORDS, (path, set(node) - ALLOWED_KEYWORDS)
    properties = custom["properties"]
    assert custom["required"] == ["window"]  # a required name that is not declared is dropped
    assert properties["window"]["properties"]["start"] == {"type": "string", "maxLength": 1500}
    assert properties["window"]["additionalProperties"] is False
    assert properties["kind"] == {"enum": ["a", "b"]}
    assert properties["pick"]["anyOf"][1]["maximum"] == 9
    assert properties["flag"] == {"anyOf": [{"type": "boolean"}, {"type": "null"}]}
    assert properties["meta"]["maxProperties"] == jsonmode.KEYS_MAX
    assert properties["limited"] == {"type": "string", "maxLength": 20, "minLength": 2}
    assert (properties["ratio"]["minimum"], properties["ratio"]["maximum"]) == (0, 1)
    sample = action(
        "custom",
        {"window": {"start": "2024-01-01", "days": 3}, "kind": "b", "meta": {"k": [1, "x"]}, "anything": 5},
    )
    assert errors(sample, schema) == []
    assert errors(action("custom", {"window": {"start": "s"}, "meta": {"k": {"deep": 1}}}), schema)


def test_a_tool_without_arguments_and_a_reserved_name() -> None:
    tools = [
        {"type": "function", "function": {"name": "now", "parameters": {}}},
        {"type": "function", "function": {"name": FINAL_ANSWER, "parameters": {}}},
    ]
    schema = action_schema(tools)

    names = [b["properties"]["name"]["const"] for b in schema["properties"]["action"]["anyOf"]]
    assert names == ["now", FINAL_ANSWER]  # a tool cannot take the final answer's name
    assert errors(action("now", {}), schema) == []


def test_response_format_and_refusal_detection() -> None:
    schema = action_schema([])
    assert jsonmode.response_format(schema) == {
        "type": "json_schema",
        "json_schema": {"name": "action", "schema": schema, "strict": True},
    }
    assert schema["properties"]["action"]["properties"]["name"] == {"const": FINAL_ANSWER}
    refused = LLMError("m at http://h/v1: HTTP 400: Failed to parse grammar (not retried)", status=400)
    assert jsonmode.rejects_response_format(refused)
    assert not jsonmode.rejects_response_format(LLMError("HTTP 400: context too long", status=400))
    assert not jsonmode.rejects_response_format(LLMError("HTTP 500: response_format", status=500))
    model_named_schema = LLMError("schema-7b at http://h/v1: HTTP 400: bad request", status=400)
    assert not jsonmode.rejects_response_format(model_named_schema)


def test_llguidance_compiles_and_enforces_the_schema() -> None:
    """The real grammar engine, where installed (it is not a dependency): samples in, violations out."""
    llguidance = pytest.importorskip("llguidance")

    class ByteTokenizer:  # one token per byte, so any text can be fed
        eos_token_id = 256
        bos_token_id = None
        tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]

        def __call__(self, text: bytes) -> list[int]:
            return list(text)

    tokenizer = llguidance.LLTokenizer(llguidance.TokenizerWrapper(ByteTokenizer()))
    schema = action_schema(registry_tools())
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema)
    assert llguidance.LLMatcher.validate_grammar_with_warnings(grammar) == (False, [])

    def accepted(value: dict[str, Any], indent: int | None = None) -> bool:
        matcher = llguidance.LLMatcher(tokenizer, grammar)
        text = json.dumps(value, ensure_ascii=False, indent=indent).encode()
        return matcher.consume_tokens(list(text)) and matcher.is_accepting()

    plan = {"1": {"task": "Find figures", "priority": "high"}, "2": None}
    assert accepted(action("todo", {"updates": plan}), indent=2)
    assert accepted(action("batch_web_surfer", {"action": "batch_search", "queries": ["a", "b"], "topk": 9}))
    assert accepted(action(FINAL_ANSWER, {"answer": "BM25 \\cite{web_1a2b3c4d} — 中文."}))
    assert not accepted(action("shell", {"cmd": "x" * (jsonmode.STRING_MAX_CHARS + 1)}))
    assert not accepted(action("todo", {"updates": {"1": {"status": "someday"}}}))
    assert not accepted(action("file", {"action": "read"}, thought="t" * (jsonmode.THOUGHT_MAX_CHARS + 1)))
    looping = llguidance.LLMatcher(tokenizer, grammar)
    assert not looping.consume_tokens(list(b"{" + b"\n" * 40))  # whitespace is bounded too


# --- instructions and history


def test_instructions_describe_the_format_and_every_tool() -> None:
    text = instructions(registry_tools())

    assert '{"thought": ' in text and '"action": {"name": ' in text
    assert "one action per reply" in text.lower()
    for name in [*default_tools(), FINAL_ANSWER]:
        assert f"## {name}\n" in text
    assert "\\\\cite{web_1a2b3c4d}" in text and "<answer>" in text
    assert "{{" not in text and "{%" not in text


def call(call_id: str, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


SEARCH = {"action": "batch_search", "queries": ["Lyon"]}
HISTORY: list[Message] = [
    {"role": "system", "content": "You are a researcher."},
    {"role": "user", "content": "Population of Lyon?"},
    {
        "role": "assistant",
        "content": "Searching.",
        "tool_calls": [call("call_1", "batch_web_surfer", SEARCH)],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "<result>Lyon: 522,000</result>"},
    {  # several calls at once, as native mode writes them (a run resumed in another mode)
        "role": "assistant",
        "content": None,
        "reasoning_content": "Plan, then check.",
        "tool_calls": [call("call_2", "todo", {"updates": {}}), call("call_3", INVALID_TOOL_CALL, "{oops")],
    },
    {"role": "tool", "tool_call_id": "call_3", "name": INVALID_TOOL_CALL, "content": "Error: not JSON"},
    {"role": "tool", "tool_call_id": "call_2", "content": "plan: empty"},
    {"role": "assistant", "content": ""},  # an empty reply, then the agent's nudge
    {"role": "user", "content": "Your last reply was empty."},
]


def test_history_for_the_wire() -> None:
    original = json.dumps(HISTORY)

    wire = to_wire(HISTORY, registry_tools())

    assert json.dumps(HISTORY) == original  # the agent's history is not touched
    roles = [m["role"] for m in wire]
    assert roles == ["system", "user", *["assistant", "user"] * 4]
    assert wire[0]["content"].startswith("You are a researcher.\n\n# How to act")
    assert all("tool_calls" not in m for m in wire)
    assert json.loads(wire[2]["content"]) == action("batch_web_surfer", SEARCH, thought="Searching.")
    assert wire[3]["content"] == (
        '<tool_response name="batch_web_surfer">\n<result>Lyon: 522,000</result>\n</tool_response>'
    )
    # one action per call, each followed by its own result, in call order
    assert json.loads(wire[4]["content"]) == action("todo", {"updates": {}}, thought="Plan, then check.")
    assert wire[4]["reasoning_content"] == "Plan, then check."  # other keys are kept
    assert wire[5]["content"] == '<tool_response name="todo">\nplan: empty\n</tool_response>'
    assert wire[6]["content"] == "{oops"  # the model sees exactly what it wrote
    assert wire[7]["content"].startswith(f'<tool_response name="{INVALID_TOOL_CALL}">\nError: not JSON')
    assert json.loads(wire[8]["content"]) == action(FINAL_ANSWER, {"answer": ""}, thought="")
    assert wire[9] == {"role": "user", "content": "Your last reply was empty."}


def test_history_edge_cases() -> None:
    encoded = [Encoded('{"role":"user","content":"hi"}')]
    assert to_wire(encoded) == [{"role": "user", "content": "hi"}]  # pre-encoded messages are read
    wire = to_wire([{"role": "user", "content": "hi"}], [])
    assert wire[0]["role"] == "system" and f"## {FINAL_ANSWER}" in wire[0]["content"]
    pending = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "x", "tool_calls": [call("c1", "todo", {}), call("c2", "todo", {})]},
        {"role": "tool", "tool_call_id": "c2", "content": "second"},
        {"role": "tool", "tool_call_id": "stray", "name": "shell", "content": "who?"},
    ]
    wire = to_wire(pending)
    assert [m["role"] for m in wire] == ["user", "assistant", "assistant", "user", "user"]
    assert json.loads(wire[1]["content"]) == action("todo", {}, thought="x")
    assert json.loads(wire[2]["content"]) == action("todo", {}, thought="")  # c1 has no result yet
    assert wire[3]["content"] == '<tool_response name="todo">\nsecond\n</tool_response>'
    assert wire[4]["content"] == '<tool_response name="shell">\nwho?\n</tool_response>'  # a stray result


# --- parsing


def test_parse_a_tool_action_and_the_final_answer() -> None:
    reply = json.dumps(action("todo", {"updates": {"1": {"task": "a"}}}, thought="Plan first."))
    content, thought, [only] = parse_reply(reply, taken_ids={"call_1", "call_2"})
    assert (content, thought) == ("Plan first.", None)
    assert (only.id, only.name, only.arguments) == ("call_3", "todo", '{"updates":{"1":{"task":"a"}}}')

    answer = json.dumps(action(FINAL_ANSWER, {"answer": "BM25 \\cite{web_1}."}, thought="Enough."))
    assert parse_reply(answer) == ("BM25 \\cite{web_1}.", "Enough.", [])
    assert parse_reply(json.dumps(action(FINAL_ANSWER, {"answer": "A"}, thought=""))) == ("A", None, [])


@pytest.mark.parametrize(
    "reply",
    [
        '```json\n{"thought": "t", "action": {"name": "shell", "arguments": {"cmd": "ls"}}}\n```',
        'Sure, here it is: {"thought": "t", "action": {"name": "shell", "arguments": {"cmd": "ls"}}} Done.',
        '{"thought": "t", "action": {"name": "shell", "arguments": {"cmd": "ls"',  # cut: repaired
        "{'thought': 't', 'action': {'name': 'shell', 'arguments': {'cmd': 'ls'}}}",  # repaired quotes
        '{"thought": "t", "action": {"name": "shell", "arguments": "{\\"cmd\\": \\"ls\\"}"}}',  # twice
        '{"thought": "t", "action": "shell", "arguments": {"cmd": "ls"}}',
        '{"name": "shell", "arguments": {"cmd": "ls"}}',
        '{"name": "shell", "parameters": {"cmd": "ls"}}',
    ],
    ids=["fenced", "prose", "cut", "quotes", "double-encoded", "flat", "bare", "parameters"],
)
def test_parse_forgives_sloppy_json(reply: str) -> None:
    _, _, [only] = parse_reply(reply, taken_ids=())
    assert (only.id, only.name, json.loads(only.arguments)) == ("call_1", "shell", {"cmd": "ls"})


def test_parse_what_is_not_an_action() -> None:
    assert parse_reply("   ") == ("", None, [])  # empty: the agent nudges
    content, thought, [invalid] = parse_reply("I think I will search now.", taken_ids={"call_1"})
    assert (content, thought) == ("", None)
    assert (invalid.id, invalid.name, invalid.arguments) == (
        "call_2",
        INVALID_TOOL_CALL,
        "I think I will search now.",
    )
    _, _, [nameless] = parse_reply('{"thought": "only a thought"}')
    assert nameless.name == INVALID_TOOL_CALL and nameless.arguments == '{"thought": "only a thought"}'
    prose = "Here is my report.\n<answer>BM25 ranks well \\cite{web_1}.</answer>"
    assert parse_reply(prose) == (prose, None, [])  # prompt-only mode: a model that ignored the format
    assert parse_reply('{"answer": "Short."}') == ("Short.", None, [])
    cut_answer = '{"thought": "ok", "action": {"name": "final_answer", "arguments": {"answer": "Long rep'
    assert parse_reply(cut_answer) == ("Long rep", "ok", [])


def test_parse_a_tool_action_on_the_forced_turn() -> None:
    reply = json.dumps(action("shell", {"cmd": "ls"}, thought="One more check."))
    content, thought, [ignored] = parse_reply(reply, final_only=True)
    assert (content, thought, ignored.name) == ("", "One more check.", "shell")  # the thought is no report


# --- through the client


def client_config(fake_llm: FakeOpenAI, **overrides: Any) -> LLMConfig:
    return LLMConfig(base_url=fake_llm.base_url, model="m", tool_mode="json", max_retries=0, **overrides)


def complete(config: LLMConfig, calls: list[tuple[list[Message], str | None]]) -> list[Completion]:
    async def run() -> list[Completion]:
        async with ChatClient(config) as client:
            return [
                await client.complete(messages, tools=registry_tools(), tool_choice=choice)
                for messages, choice in calls
            ]

    return asyncio.run(run())


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_round_trip_through_the_client(fake_llm: FakeOpenAI, stream: bool) -> None:
    reply = json.dumps(
        action(
            "batch_web_surfer", {"action": "batch_search", "queries": ["Lyon 2024"]}, thought="Newer data."
        )
    )
    fake_llm.enqueue(Reply(content=f"<think>Check the year.</think>{reply}"))

    [completion] = complete(client_config(fake_llm, stream=stream), [(HISTORY, None)])

    [request] = fake_llm.requests
    assert "tools" not in request and "tool_choice" not in request
    assert request["response_format"] == jsonmode.response_format(action_schema(registry_tools()))
    assert request["messages"] == to_wire(HISTORY, registry_tools())
    assert completion.content == "Newer data." and completion.reasoning == "Check the year."
    [made] = completion.tool_calls
    assert (made.id, made.name) == ("call_4", "batch_web_surfer")
    assert json.loads(made.arguments) == {"action": "batch_search", "queries": ["Lyon 2024"]}
    assert completion.finish_reason == "stop"
    # the reply goes back into the history in native shape and is rewritten again next turn
    again = to_wire([*HISTORY, completion.to_message()], registry_tools())
    assert json.loads(again[-1]["content"])["action"]["name"] == "batch_web_surfer"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_forced_final_turn(fake_llm: FakeOpenAI, stream: bool) -> None:
    answer = action(FINAL_ANSWER, {"answer": "Lyon has about 522,000 inhabitants \\cite{web_1}."}, "Enough.")
    fake_llm.enqueue(Reply(content=json.dumps(answer)))

    [completion] = complete(
        client_config(fake_llm, stream=stream, max_output_tokens=2048), [(HISTORY, "none")]
    )

    [request] = fake_llm.requests
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["action"]["properties"]["name"] == {"const": FINAL_ANSWER}
    answer_schema = schema["properties"]["action"]["properties"]["arguments"]["properties"]["answer"]
    assert answer_schema["maxLength"] == answer_cap(2048) == 3072
    assert "# Available tools" in request["messages"][0]["content"]  # same prefix as every other turn
    assert completion.tool_calls == []
    assert completion.content == "Lyon has about 522,000 inhabitants \\cite{web_1}."
    assert completion.reasoning == "Enough."


def test_a_server_that_refuses_the_schema_is_asked_in_the_prompt(
    fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    refusal = {"error": {"code": 400, "message": "Unsupported response_format type: json_schema"}}
    fake_llm.enqueue(
        Reply(status=400, body=json.dumps(refusal)),
        Reply(content='Here:\n```json\n{"thought": "t", "action": {"name": "todo", "arguments": {}}}\n```'),
        Reply(
            content='{"thought": "t", "action": {"name": "final_answer", "arguments": {"answer": "Done."}}}'
        ),
    )
    turn = [{"role": "user", "content": "q"}]

    with caplog.at_level(logging.WARNING, logger="deepresearch.llm.client"):
        first, second = complete(client_config(fake_llm), [(turn, None), (turn, None)])

    assert len(fake_llm.requests) == 3
    assert "response_format" in fake_llm.requests[0]
    assert all("response_format" not in r for r in fake_llm.requests[1:])  # remembered for the client
    assert fake_llm.requests[1]["messages"] == fake_llm.requests[0]["messages"]
    assert [c.name for c in first.tool_calls] == ["todo"] and second.content == "Done."
    warnings = [r for r in caplog.records if "refused the response_format" in r.getMessage()]
    assert len(warnings) == 1


def test_other_client_errors_are_not_mistaken_for_a_refusal(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(status=400, body='{"error": {"message": "context length exceeded"}}'))

    with pytest.raises(LLMError, match="context length exceeded"):
        complete(client_config(fake_llm), [([{"role": "user", "content": "q"}], None)])
    assert len(fake_llm.requests) == 1


def test_native_calls_from_the_server_are_kept(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="Checking.", tool_calls=[("shell", {"cmd": "date"})]))

    [completion] = complete(client_config(fake_llm), [([{"role": "user", "content": "q"}], None)])

    assert [c.name for c in completion.tool_calls] == ["shell"] and completion.content == "Checking."
