"""Text-mode tool calling: instructions, history rewriting, reply parsing, and a round trip."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.messages import Completion, Encoded, Message
from deepresearch.llm.textmode import (
    INVALID_TOOL_CALL,
    instructions,
    parse_tool_calls,
    to_wire,
    used_call_ids,
)
from tests.fakes.openai_server import FakeOpenAI, Reply

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "batch_web_surfer",
            "description": "Search the web or open pages.",
            "parameters": {
                "type": "object",
                "properties": {
                    "action": {"enum": ["batch_search", "batch_open"]},
                    "queries": {"type": "array"},
                },
            },
        },
    },
    {"type": "function", "function": {"name": "todo", "description": "Keep the plan.", "parameters": {}}},
]


def call(call_id: str, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


HISTORY: list[Message] = [
    {"role": "system", "content": "You are a researcher."},
    {"role": "user", "content": "Population of Lyon?"},
    {
        "role": "assistant",
        "content": "Searching.",
        "tool_calls": [call("call_1", "batch_web_surfer", {"action": "batch_search", "queries": ["Lyon"]})],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "<result>Lyon: 522,000</result>"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [call("call_2", "todo", {"updates": {}}), call("call_3", INVALID_TOOL_CALL, "{oops")],
    },
    {"role": "tool", "tool_call_id": "call_2", "content": "plan: empty"},
    {"role": "tool", "tool_call_id": "call_3", "name": INVALID_TOOL_CALL, "content": "Error: not JSON"},
    {"role": "user", "content": "Go on."},
]


def test_instructions_list_every_tool_with_its_schema() -> None:
    text = instructions(TOOLS)

    assert "<tool_call>" in text and "</tool_call>" in text and '"arguments"' in text
    assert "## batch_web_surfer" in text and "Search the web or open pages." in text
    assert json.dumps(TOOLS[0]["function"]["parameters"]) in text
    assert "## todo" in text


def test_history_for_the_wire() -> None:
    original = json.dumps(HISTORY)

    wire = to_wire(HISTORY, TOOLS)

    assert json.dumps(HISTORY) == original  # the agent's history is not touched
    assert [m["role"] for m in wire] == ["system", "user", "assistant", "user", "assistant", "user", "user"]
    assert wire[0]["content"].startswith("You are a researcher.\n\n")
    assert "## batch_web_surfer" in wire[0]["content"]
    assert all("tool_calls" not in m for m in wire)
    first = wire[2]["content"]
    assert first.startswith("Searching.\n\n<tool_call>\n")
    block = first.split("<tool_call>\n", 1)[1].split("\n</tool_call>", 1)[0]
    assert json.loads(block) == {
        "name": "batch_web_surfer",
        "arguments": {"action": "batch_search", "queries": ["Lyon"]},
    }
    assert (
        wire[3]["content"]
        == '<tool_response name="batch_web_surfer">\n<result>Lyon: 522,000</result>\n</tool_response>'
    )
    assert wire[4]["content"].count("<tool_call>") == 2
    assert "<tool_call>\n{oops\n</tool_call>" in wire[4]["content"]  # the model sees what it wrote
    merged = wire[5]["content"]  # two consecutive results, one message
    assert merged.count("<tool_response") == 2
    assert '<tool_response name="todo">\nplan: empty\n</tool_response>' in merged
    assert f'<tool_response name="{INVALID_TOOL_CALL}">' in merged
    assert wire[6] == {"role": "user", "content": "Go on."}


def test_history_without_system_message_or_tools() -> None:
    wire = to_wire([{"role": "user", "content": "hi"}], TOOLS)
    assert wire[0]["role"] == "system" and "## todo" in wire[0]["content"]
    assert to_wire([{"role": "user", "content": "hi"}]) == [{"role": "user", "content": "hi"}]


def test_encoded_messages_are_refused() -> None:
    with pytest.raises(TypeError, match="Encoded"):
        to_wire([Encoded('{"role":"user","content":"hi"}')], TOOLS)


def test_parse_several_blocks_in_every_shape() -> None:
    text = (
        "I will look this up.\n"
        '<tool_call>\n{"name": "batch_web_surfer", '
        '"arguments": {"action": "batch_search", "queries": ["a"]}}\n</tool_call>\n'
        '<tool_call>\n```json\n{"name": "todo", "parameters": {"updates": {"1": "x"}}}\n```\n</tool_call>\n'
        "<tool_call>I am not JSON at all</tool_call>\n"
        '<tool_call>{"name": "todo", "arguments": "{\\"updates\\": {}}"}</tool_call>\n'
        '<tool_call>{"name": "batch_web_surfer", "arguments": {"action": "batch_open", "urls": ["https://x.org/é"]'
    )

    content, calls = parse_tool_calls(text, taken_ids={"call_1", "call_3"})

    assert content == "I will look this up."
    assert [c.id for c in calls] == ["call_4", "call_5", "call_6", "call_7", "call_8"]
    assert [c.name for c in calls] == [
        "batch_web_surfer",
        "todo",
        INVALID_TOOL_CALL,
        "todo",
        "batch_web_surfer",
    ]
    assert calls[0].arguments == '{"action":"batch_search","queries":["a"]}'
    assert calls[1].arguments == '{"updates":{"1":"x"}}'
    assert calls[2].arguments == "I am not JSON at all"
    assert calls[3].arguments == '{"updates":{}}'  # arguments encoded twice
    assert json.loads(calls[4].arguments) == {"action": "batch_open", "urls": ["https://x.org/é"]}  # repaired


def test_parse_edge_cases() -> None:
    assert parse_tool_calls("no calls here") == ("no calls here", [])
    content, [only] = parse_tool_calls('Text <tool_call>{"name": "todo"}</tool_call> more', taken_ids=())
    assert (content, only.id, only.name, only.arguments) == ("Text  more", "call_1", "todo", "{}")
    _, [empty] = parse_tool_calls("<tool_call></tool_call>")
    assert (empty.name, empty.arguments) == (INVALID_TOOL_CALL, "")
    _, [nameless] = parse_tool_calls('<tool_call>{"arguments": {}}</tool_call>')
    assert nameless.name == INVALID_TOOL_CALL
    _, calls = parse_tool_calls('<tool_call>{"name": "a"}<tool_call>{"name": "b"}</tool_call>')
    assert [c.name for c in calls] == ["a", "b"]  # an unclosed block ends where the next one starts
    _, [raw] = parse_tool_calls('<tool_call>{"name": "a", "arguments": "not json"}</tool_call>')
    assert raw.arguments == "not json"


def test_used_call_ids() -> None:
    assert used_call_ids(HISTORY) == {"call_1", "call_2", "call_3"}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_round_trip_through_the_client(fake_llm: FakeOpenAI, stream: bool) -> None:
    reply = (
        "<think>The user wants Lyon; search again.</think>"
        "One more search.\n"
        '<tool_call>{"name": "batch_web_surfer", '
        '"arguments": {"action": "batch_search", "queries": ["Lyon 2024"]}}</tool_call>\n'
        '<tool_call>{"name": "todo", "arguments": {"updates": {}}'
    )
    fake_llm.enqueue(Reply(content=reply))
    config = LLMConfig(base_url=fake_llm.base_url, model="m", tool_mode="text", stream=stream, max_retries=0)

    async def run() -> Completion:
        async with ChatClient(config) as client:
            return await client.complete(HISTORY, tools=TOOLS, tool_choice="auto")

    completion = asyncio.run(run())

    [request] = fake_llm.requests
    assert "tools" not in request and "tool_choice" not in request
    assert request["messages"] == to_wire(HISTORY, TOOLS)
    assert completion.reasoning == "The user wants Lyon; search again."
    assert completion.content == "One more search."
    assert [(c.id, c.name) for c in completion.tool_calls] == [
        ("call_4", "batch_web_surfer"),
        ("call_5", "todo"),
    ]
    assert json.loads(completion.tool_calls[1].arguments) == {"updates": {}}
    # The reply goes back into the history in native shape and is rewritten again next turn.
    again = to_wire([*HISTORY, completion.to_message()], TOOLS)
    assert again[-1]["content"].count("<tool_call>") == 2


def test_text_mode_final_answer_turn_has_no_instructions(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="<answer>Lyon has about 522,000 inhabitants.</answer>"))
    config = LLMConfig(base_url=fake_llm.base_url, model="m", tool_mode="text", max_retries=0)

    async def run() -> Completion:
        async with ChatClient(config) as client:
            return await client.complete(HISTORY, tools=TOOLS, tool_choice="none")

    completion = asyncio.run(run())

    assert completion.tool_calls == []
    assert fake_llm.requests[0]["messages"][0] == {"role": "system", "content": "You are a researcher."}
