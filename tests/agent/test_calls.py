"""``ToolRunner``: what the tools return (sources, state) is recorded with their results and replays to
the same run; the guards take their steps with whichever tool can search, and speak the run's language.

The tools here are small real ``Tool``s (no mocks): a searcher under a name the loop has never heard
of, and the built-in ``todo``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pydantic import BaseModel

from deepresearch.agent.calls import ToolRunner
from deepresearch.agent.history import History
from deepresearch.agent.prompts import render
from deepresearch.agent.state import RunState, replay
from deepresearch.events import Event, LLMCall, RunStarted, ToolResultEvent
from deepresearch.llm.messages import ToolCall
from deepresearch.tools.base import Tool, ToolContext, ToolResult
from deepresearch.tools.todo import todo_tool


class FindArgs(BaseModel):
    terms: list[str]


async def find(args: FindArgs, ctx: ToolContext) -> ToolResult:
    sources = [ctx.cite(f"https://example.org/{term}", title=term.title()) for term in args.terms]
    text = "\n".join(f"<cite_index>{s.key}</cite_index> {s.title}" for s in sources)
    return ToolResult(text=text, data={"hits": len(sources)}, sources=sources)


FINDER = Tool("lookup", FindArgs, find, search_arguments=lambda query: {"terms": [query.replace(" ", "-")]})
TOOLS = {"lookup": FINDER, "todo": todo_tool()}


class Run:
    """A run's state and the events recorded into it, with a runner over ``TOOLS``."""

    def __init__(self, workspace: Path, language: str = "en") -> None:
        self.state = RunState(history=History(len))
        self.events: list[Event] = []
        self.record(
            RunStarted(
                run_id="r",
                question="tea leaves",
                model="m",
                search="local",
                language=language,
                tool_mode="native",
                tools=list(TOOLS),
                messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "tea leaves"}],
            )
        )
        self.runner = ToolRunner(TOOLS, self.state, self.record, self.context, lambda: None, 20_000)
        self.workspace = workspace

    def record(self, event: Event) -> None:
        self.events.append(event)
        self.state.apply(event)

    def context(self, step: int, call_id: str) -> ToolContext:
        return ToolContext(self.workspace, self.state.sources, self.state.tool_state, step, call_id)

    def reply(self, *calls: tuple[str, dict], length_cut: bool = False) -> list[ToolResultEvent]:
        """The model asks for ``calls`` as its next step; returns their recorded results in call order."""
        n = self.state.step + 1
        wired = [ToolCall(f"c{n}_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(calls)]
        message = {"role": "assistant", "content": "", "tool_calls": [c.to_wire() for c in wired]}
        self.record(LLMCall(step=n, message=message, usage={}, finish_reason="tool_calls"))
        asyncio.run(self.runner.run(n, wired, length_cut=length_cut))
        results = {e.call_id: e for e in self.events if isinstance(e, ToolResultEvent)}
        return [results[c.id] for c in wired]


def test_results_carry_the_sources_and_the_state_their_tools_returned(tmp_path):
    run = Run(tmp_path)
    plan = {"updates": {"1": {"task": "read"}, "2": {"task": "write"}}}
    found, planned = run.reply(("lookup", {"terms": ["green", "black"]}), ("todo", plan))
    keys = [source["key"] for source in found.sources]
    assert [f"<cite_index>{key}</cite_index>" in found.content for key in keys] == [True, True]
    assert [s["url"] for s in found.sources] == ["https://example.org/green", "https://example.org/black"]
    assert found.state is None and found.data == {"hits": 2}
    assert planned.sources == [] and list(planned.state["todo"]) == ["1", "2"]
    assert [s.key for s in run.state.sources] == keys and list(run.state.tool_state["todo"]) == ["1", "2"]
    tool_messages = [e.message for e in run.state.history.entries if e.message["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["c1_0", "c1_1"]  # call order

    read, again = run.reply(("todo", {}), ("lookup", {"terms": ["green"]}))
    assert read.state is None and "Step 2: write" in read.content  # read only: no state recorded
    assert again.sources[0]["key"] == keys[0]  # a page seen before keeps its key

    resumed = replay(run.events, History(len), path=tmp_path / "events.jsonl")
    assert [s.key for s in resumed.sources] == keys and resumed.tool_state == run.state.tool_state


def test_the_repeat_guard_refuses_then_searches_with_the_tool_that_can(tmp_path):
    run = Run(tmp_path, language="zh")
    same = ("todo", {"updates": {"9": {"status": "done"}}})
    first = run.reply(same)[0]
    assert first.error_type == "ToolError"  # its own error: step 9 does not exist
    refused = run.reply(same)[0]
    assert refused.error_type == "RepeatedCall" and refused.data["repeat"] == 2
    assert refused.content == "Error: " + render("tool_repeated_call_zh.j2", name="todo")
    assert "完全相同" in refused.content
    searched = run.reply(same)[0]  # third time, nothing seen yet: the loop searches the question
    note = render("tool_repeat_searched_zh.j2", repeat=3)
    assert searched.content.startswith(note + "\n<cite_index>web_") and searched.data["repeat"] == 3
    assert [s["url"] for s in searched.sources] == ["https://example.org/tea-leaves"]
    assert not run.runner.stuck
    assert run.reply(same)[0].error_type == "RepeatedCall" and run.runner.stuck  # sources in hand: stuck
    assert run.state.audit["repeated_calls"] == 3


def test_the_search_guard_takes_a_step_with_the_searcher(tmp_path):
    run = Run(tmp_path)
    assert not run.runner.needs_search(2) and run.runner.needs_search(3)
    asyncio.run(run.runner.take_search(3, "guard_search"))
    step = [e for e in run.events if isinstance(e, LLMCall)][-1]
    assert step.phase == "guard_search" and step.message["tool_calls"][0]["function"]["name"] == "lookup"
    assert [s.url for s in run.state.sources] == ["https://example.org/tea-leaves"]
    assert not run.runner.needs_search(4)  # a source is known now
    nothing = ToolRunner({"todo": todo_tool()}, run.state, run.record, run.context, lambda: None, 100)
    assert nothing.searcher is None and not nothing.needs_search(9)


def test_a_call_cut_by_the_output_limit_is_told_so_in_the_run_language(tmp_path):
    for language in ("en", "zh"):
        run = Run(tmp_path, language=language)
        result = run.reply(("lookup", {"terms": "not a list"}), length_cut=True)[0]
        assert result.error_type == "InvalidArguments"
        assert result.content.endswith(" " + render(f"tool_length_cut_{language}.j2"))


def test_every_tool_prompt_of_the_loop_has_both_languages():
    for name, variables in [
        ("tool_repeated_call", {"name": "todo"}),
        ("tool_repeat_searched", {"repeat": 3}),
        ("tool_length_cut", {}),
    ]:
        en, zh = render(f"{name}_en.j2", **variables), render(f"{name}_zh.j2", **variables)
        assert en and zh and en != zh
        assert all(str(value) in en and str(value) in zh for value in variables.values())
