"""End to end in JSON action mode: a scripted model that only ever writes one JSON action per reply,
over real HTTP, with the real tools and the local index.

What must hold whatever the mode: the report resolves the citations, and ``messages.json`` records
ordinary OpenAI ``tool_calls`` and tool messages, never the JSON text the model wrote.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import Settings, load_settings
from deepresearch.research import research
from tests.agent.scripts import turn
from tests.fakes.openai_server import FakeOpenAI, Reply

_KEY = re.compile(r"<cite_index>(web_[0-9a-f]+)</cite_index>")
PLAN = {"1": {"task": "Find how BM25 weighs term frequency", "priority": "high"}, "2": {"task": "Report"}}
SEARCH = {"action": "batch_search", "queries": ["BM25 term frequency saturation"], "topk": 5}


@pytest.fixture
def json_settings(fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path):
    def make(**overrides: Any) -> Settings:
        flags: dict[str, Any] = {
            "base_url": fake_llm.base_url,
            "model": "small-local-model",
            "tool_mode": "json",
            "index": corpus_index,
            "out": tmp_path / "run",
            "max_retries": 0,
            "request_timeout": 30,
            **overrides,
        }
        return load_settings(flags, env={})

    return make


def act(name: str, arguments: dict[str, Any], thought: str) -> Reply:
    return Reply(content=json.dumps({"thought": thought, "action": {"name": name, "arguments": arguments}}))


def keys_seen(request: dict[str, Any]) -> list[str]:
    """Citation keys in the tool responses the model was shown, in order."""
    text = "".join(
        m["content"] for m in request["messages"] if m["role"] == "user" and "<tool_response" in m["content"]
    )
    return list(dict.fromkeys(_KEY.findall(text)))


def answer(request: dict[str, Any]) -> Reply:
    key = keys_seen(request)[0]
    report = f"# BM25\n\nBM25 saturates the weight of repeated terms \\cite{{{key}}}."
    return act("final_answer", {"answer": report}, "The search covered the question.")


def research_in_json(request: dict[str, Any]) -> Reply:
    """plan → search → answer citing the first key the search returned."""
    n = turn(request)
    if n == 0:
        return act("todo", {"updates": PLAN}, "Plan first.")
    if n == 1:
        return act("batch_web_surfer", SEARCH, "Search the index.")
    return answer(request)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_research_in_json_mode(fake_llm: FakeOpenAI, json_settings) -> None:
    fake_llm.script = research_in_json
    settings = json_settings()

    result = asyncio.run(research("How does BM25 treat repeated terms?", settings))

    assert result.status == "done" and result.origin == "answer" and result.steps == 3
    assert result.citations == {"cited": 1, "resolved": 1, "unresolved": 0}
    report = (settings.out / "report.md").read_text()
    assert "repeated terms [1]" in report and "\\cite" not in report
    assert "[1] " in report.split("## References", 1)[1]

    # messages.json: the same shape as a native run — tool_calls and tool messages, no JSON actions
    messages = read_json(settings.out / "messages.json")
    assert [m["role"] for m in messages] == ["system", "user", *["assistant", "tool"] * 2, "assistant"]
    calls = [m["tool_calls"] for m in messages if m.get("tool_calls")]
    assert [[c["function"]["name"] for c in group] for group in calls] == [["todo"], ["batch_web_surfer"]]
    for message, group in zip((messages[2], messages[4]), calls, strict=True):
        [made] = group
        assert set(made) == {"id", "type", "function"} and made["type"] == "function"
        assert message["content"] in ("Plan first.", "Search the index.")
    assert json.loads(calls[0][0]["function"]["arguments"]) == {"updates": PLAN}
    assert json.loads(calls[1][0]["function"]["arguments"]) == SEARCH
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == [g[0]["id"] for g in calls]
    assert len({g[0]["id"] for g in calls}) == 2
    final = messages[-1]
    assert final["content"].startswith("# BM25") and "tool_calls" not in final
    assert final["reasoning_content"] == "The search covered the question."
    assert read_json(settings.out / "todo.json")["1"]["priority"] == "high"

    # the wire: a schema instead of tools, instructions in the system message, actions as JSON text
    requests = fake_llm.requests
    assert len(requests) == 3
    for request in requests:
        assert "tools" not in request and "tool_choice" not in request
        assert request["response_format"]["type"] == "json_schema"
        assert "# How to act" in request["messages"][0]["content"]
    *_, action, response = requests[1]["messages"]
    assert action["role"] == "assistant" and json.loads(action["content"])["action"]["name"] == "todo"
    assert response["role"] == "user" and response["content"].startswith('<tool_response name="todo">')
    assert all(m["role"] != "tool" for r in requests for m in r["messages"])


def test_garbage_once_then_recovery(fake_llm: FakeOpenAI, json_settings) -> None:
    garbage = "Hmm, BM25... I think I should maybe search for it now."

    def script(request: dict[str, Any]) -> Reply:
        n = turn(request)
        if n == 0:
            return Reply(content=garbage)
        if n == 1:  # fenced and with a sentence before: still read
            body = json.dumps(
                {"thought": "Sorry.", "action": {"name": "batch_web_surfer", "arguments": SEARCH}}
            )
            return Reply(content=f"Here is the action:\n```json\n{body}\n```")
        return answer(request)

    fake_llm.script = script
    settings = json_settings()

    result = asyncio.run(research("How does BM25 treat repeated terms?", settings))

    assert result.status == "done" and result.steps == 3 and result.citations["resolved"] == 1
    messages = read_json(settings.out / "messages.json")
    [invalid] = messages[2]["tool_calls"]
    assert invalid["function"] == {"name": "invalid_tool_call", "arguments": garbage}
    assert messages[3]["role"] == "tool"
    assert messages[3]["content"].startswith("Error: your reply could not be read as a tool call")
    assert messages[4]["tool_calls"][0]["function"]["name"] == "batch_web_surfer"
    # the model saw its own words and the error, and corrected itself
    *_, said, told = fake_llm.requests[1]["messages"]
    assert said == {"role": "assistant", "content": garbage}
    assert told["content"].startswith('<tool_response name="invalid_tool_call">\nError:')


def test_forced_final_answer_gets_the_answer_only_schema(fake_llm: FakeOpenAI, json_settings) -> None:
    def script(request: dict[str, Any]) -> Reply:
        if "Do not call any more tools" in request["messages"][-1]["content"]:
            return answer(request)
        return act("batch_web_surfer", SEARCH, "Search again.")

    fake_llm.script = script
    settings = json_settings(max_steps=1)

    result = asyncio.run(research("How does BM25 treat repeated terms?", settings))

    assert result.status == "done" and result.origin == "forced" and result.citations["resolved"] == 1
    first, forced = fake_llm.requests
    assert "anyOf" in first["response_format"]["json_schema"]["schema"]["properties"]["action"]
    final_only = forced["response_format"]["json_schema"]["schema"]["properties"]["action"]
    assert final_only["properties"]["name"] == {"const": "final_answer"}
