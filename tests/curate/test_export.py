"""``sft.jsonl`` round-trips: each sample validates as OpenAI chat messages with tools, and a Qwen-style
chat template renders it with tool calls that parse back to the very calls that were made."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from deepresearch.curate.export import chat_messages, validate_chat
from deepresearch.curate.pipeline import SFT, curate
from tests.agent.scripts import cited_keys, turn
from tests.curate.test_pipeline import build_run, build_runs
from tests.fakes.openai_server import FakeOpenAI, Reply

CHAT_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}{% endif %}

# Tools you may call
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Call a tool by writing <tool_call>{"name": …, "arguments": {…}}</tool_call>.<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' and tools %}
{%- elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.reasoning_content %}<think>
{{ message.reasoning_content }}
</think>
{% endif %}{{ message.content }}
{%- for call in message.tool_calls or [] %}
<tool_call>
{"name": {{ call.function.name | tojson }}, "arguments": {{ call.function.arguments }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}"""
"""Our own template in the shape Qwen's use: tools in the system turn, calls as <tool_call>{json}."""

_CALL = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.S)


def render(sample: dict[str, Any]) -> str:
    environment = ImmutableSandboxedEnvironment(trim_blocks=False, lstrip_blocks=False)
    return environment.from_string(CHAT_TEMPLATE).render(messages=sample["messages"], tools=sample["tools"])


def parallel(request: dict[str, Any]) -> Reply:
    """Two calls in one reply (a plan and a search), then an answer with its reasoning."""
    if turn(request) == 0:
        plan = {"1": {"task": "Find the ranking function", "priority": "high"}}
        return Reply(
            reasoning="Plan, then search.",
            content="",
            tool_calls=[
                ("todo", {"updates": plan}),
                (
                    "batch_web_surfer",
                    {"action": "batch_search", "queries": ['BM25 "quoted" ranking'], "topk": 3},
                ),
            ],
        )
    key = next(iter(cited_keys(request).values()))
    return Reply(
        reasoning="Done.", content=f"<answer>\nThe corpus describes BM25 \\cite{{{key}}}.\n</answer>"
    )


def test_sft_samples_render_with_a_chat_template_and_give_back_the_same_tool_calls(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    runs = build_runs(fake_llm, corpus_index, tmp_path / "runs", ["short", "recovered", "zh"])
    build_run(
        fake_llm,
        corpus_index,
        tmp_path / "runs" / "parallel",
        "Which ranking function is described?",
        parallel,
    )
    report = curate([tmp_path / "runs"], out=tmp_path / "out", error_quota=1.0)
    assert report.kept == len(runs) + 1

    samples = [json.loads(line) for line in (tmp_path / "out" / SFT).read_text().splitlines()]
    calls_seen = 0
    for sample in samples:
        assert validate_chat(sample) == []
        rendered = render(sample)
        made = [
            {"name": call["function"]["name"], "arguments": json.loads(call["function"]["arguments"])}
            for message in sample["messages"]
            for call in message.get("tool_calls") or []
        ]
        assert [json.loads(found) for found in _CALL.findall(rendered)] == made
        calls_seen += len(made)
        for message in sample["messages"]:
            if message.get("reasoning_content"):
                assert f"<think>\n{message['reasoning_content']}\n</think>" in rendered
                assert message["reasoning_content"] not in message["content"]
    assert calls_seen == 1 + 2 + 1 + 2  # short, recovered, zh, parallel (two calls in one reply)
    two = next(s for s in samples if s["meta"]["question"] == "Which ranking function is described?")
    assert [c["function"]["name"] for c in two["messages"][2]["tool_calls"]] == ["todo", "batch_web_surfer"]
    assert two["messages"][2]["reasoning_content"] == "Plan, then search."


def sample(*messages: dict[str, Any]) -> dict[str, Any]:
    tool = {
        "type": "function",
        "function": {"name": "todo", "description": "", "parameters": {"type": "object"}},
    }
    return {"messages": list(messages), "tools": [tool], "meta": {}}


CALL = {"id": "c1", "type": "function", "function": {"name": "todo", "arguments": '{"updates": {}}'}}
USER = {"role": "user", "content": "q"}
ANSWER = {"role": "assistant", "content": "a"}


def test_the_validator_names_every_way_a_sample_breaks_the_format() -> None:
    good = sample(
        USER,
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ANSWER,
    )
    assert validate_chat(good) == []

    def problems(*messages: dict[str, Any]) -> str:
        return "; ".join(validate_chat(sample(*messages)))

    dict_args = {**CALL, "function": {"name": "todo", "arguments": {"updates": {}}}}
    assert "arguments are not a JSON object in a string" in problems(
        USER,
        {"role": "assistant", "content": "", "tool_calls": [dict_args]},
        {"role": "tool", "tool_call_id": "c1", "content": ""},
        ANSWER,
    )
    assert "never answered" in problems(
        USER, {"role": "assistant", "content": "", "tool_calls": [CALL]}, ANSWER
    )
    assert "answers no open tool call ('c9')" in problems(
        USER, {"role": "tool", "tool_call_id": "c9", "content": ""}, ANSWER
    )
    unknown = {**CALL, "function": {"name": "shell", "arguments": "{}"}}
    assert "which the tools do not offer" in problems(
        USER,
        {"role": "assistant", "content": "", "tool_calls": [unknown]},
        {"role": "tool", "tool_call_id": "c1", "content": ""},
        ANSWER,
    )
    untyped = {"id": "c1", "function": CALL["function"]}
    assert "type is not 'function'" in problems(
        USER,
        {"role": "assistant", "content": "", "tool_calls": [untyped]},
        {"role": "tool", "tool_call_id": "c1", "content": ""},
        ANSWER,
    )
    assert "reasoning_content belongs to assistant" in problems({**USER, "reasoning_content": "x"}, ANSWER)
    assert "not the assistant's answer" in problems(USER)
    assert "no known role" in problems({"role": "developer", "content": "x"}, ANSWER)
    assert validate_chat({"messages": [], "tools": {}}) == [
        "tools: not a list",
        "messages: not a non-empty list",
    ]


def test_chat_messages_keep_the_openai_fields_and_reasoning_apart() -> None:
    raw: list[dict[str, Any]] = [
        USER,
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "think",
            "tool_calls": [{"id": "c1", "function": {"name": "todo", "arguments": {"updates": {}}}}],
            "phase": "internal",
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok", "compact": "short"},
        {"role": "assistant", "content": "a", "reasoning_content": "", "tool_calls": []},
    ]
    assert chat_messages(raw) == [
        USER,
        {"role": "assistant", "content": "", "reasoning_content": "think", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ANSWER,
    ]
