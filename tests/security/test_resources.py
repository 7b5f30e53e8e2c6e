"""Resource breaks (issue 11): what a model or a tool sends must cost bounded time, and no tool call may
stall a run past its budget.

* Token counting was quadratic in the length of one pre-token: 16k characters without a space took
  seconds, 8 MB and 60 MB tool arguments never finished, on the event loop, and ``resume`` hung again
  on the same recorded message. The counter's byte-pair merge is instrumented here (the work it does,
  not the time it takes), and whole runs carry oversized arguments through the fake model server.
* A tool that never returned (an await that never ends, a thread that never finishes) held the run
  forever, whatever its wall-time budget. Runs here register such tools next to the real ones.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from deepresearch.config import load_settings
from deepresearch.events import parse_event
from deepresearch.llm.messages import ToolCall
from deepresearch.llm.tokens import O200kCounter, _rank_file, load_ranks
from deepresearch.research import research, resume
from deepresearch.runs import read_info
from deepresearch.sources import SourceRegistry
from deepresearch.tools import execute as execute_module
from deepresearch.tools.base import ShellConfig, Tool, ToolContext, ToolResult
from deepresearch.tools.registry import default_tools, register
from tests.fakes.openai_server import FakeOpenAI, Reply

MIB = 1024 * 1024
LONGEST_MERGE = 1024
"""Bytes one byte-pair merge may be given: the merge is quadratic in this, so it must not grow with input."""
MOST_MERGED = MIB
"""Bytes one count may merge in all: the merge loop runs in Python, about a microsecond per byte."""


@pytest.fixture
def make_settings(fake_llm: FakeOpenAI, tmp_path: Path, corpus_index: Path):
    def make(**overrides: Any) -> Any:
        flags = {
            "base_url": fake_llm.base_url,
            "model": "fake-model",
            "index": corpus_index,
            "out": tmp_path / "run",
            "retry_base_delay": 0.001,
            "retry_max_delay": 0.01,
            "max_retries": 1,
            "request_timeout": 30,
        }
        return load_settings({**flags, **overrides}, env={})

    return make


def events_of(run_dir: Path) -> list[Any]:
    return [parse_event(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


# --- token counting


class MeteredCounter(O200kCounter):
    """The real counter, recording the size of every byte-pair merge it performs."""

    def __init__(self) -> None:
        super().__init__(load_ranks(_rank_file()))
        self.merged: list[int] = []

    def _merge_count(self, data: bytes) -> int:
        self.merged.append(len(data))
        if len(data) > LONGEST_MERGE:  # fail now rather than spend minutes proving the point
            raise AssertionError(f"a {len(data)}-byte piece was merged whole")
        return super()._merge_count(data)


def random_letters(n: int, seed: int = 11) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=n))


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("16k without a space", lambda: "a" * 16_000),
        ("16k random letters", lambda: random_letters(16_000)),
        ("1 MB random letters", lambda: random_letters(MIB)),
        ("60 MB without a space", lambda: "b" * 60_000_000),
        ("8 MB argument", lambda: json.dumps({"action": "write", "path": "x", "content": "x" * 8_000_000})),
    ],
)
def test_counting_work_is_bounded_whatever_the_text(name: str, make: Any) -> None:
    counter = MeteredCounter()
    text = make()
    tokens = counter(text)
    assert max(counter.merged, default=0) <= LONGEST_MERGE, name
    assert sum(counter.merged) <= MOST_MERGED, name
    assert len(text) // 64 <= tokens <= len(text), name  # still a plausible count


def _tool(name: str, run: Any, args: type[BaseModel]) -> Tool:
    return Tool(name=name, args=args, run=run, description=f"the {name} test tool")


class NoArgs(BaseModel):
    pass


class Payload(BaseModel):
    data: str = ""


def test_oversized_arguments_are_refused_and_never_resent(fake_llm: FakeOpenAI, make_settings: Any) -> None:
    huge = "x" * (17 * MIB)  # over the executor's limit: refused unread
    large = "y" * (2 * MIB)  # within it, and within the file tool's: written, but not kept in the context
    written_args = [("huge.txt", huge), ("large.txt", large)]
    fake_llm.enqueue(
        Reply(tool_calls=[("file", {"action": "write", "path": p, "content": c}) for p, c in written_args]),
        Reply(content="<answer>Done despite the giant arguments.</answer>"),
    )
    settings = make_settings()
    result = asyncio.run(research("q", settings))
    assert result.status == "done" and result.report.startswith("Done despite the giant arguments.")

    events = events_of(settings.out)
    results = {e.call_id: e for e in events if e.type == "tool_result"}
    call_ids = [c["id"] for c in next(e for e in events if e.type == "llm_call").message["tool_calls"]]
    refused, written = (results[i] for i in call_ids)
    assert refused.is_error and refused.error_type == "ArgumentsTooLarge"
    assert refused.content.startswith("Error:") and "over the limit" in refused.content
    assert not written.is_error and (settings.out / "workspace" / "large.txt").read_text() == large
    assert not (settings.out / "workspace" / "huge.txt").exists()

    # what is kept (and replayed by resume) and what is sent again: a stand-in for each, not megabytes
    messages = json.loads((settings.out / "messages.json").read_text())
    calls = next(m for m in messages if m.get("tool_calls"))["tool_calls"]
    sizes = [len(json.dumps({"action": "write", "path": p, "content": c})) for p, c in written_args]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"arguments_omitted": f"{size} characters, not kept"} for size in sizes
    ]
    assert (settings.out / "events.jsonl").stat().st_size < 200_000
    assert len(json.dumps(fake_llm.requests[-1])) < 200_000


def test_resume_does_not_rerun_or_resend_a_call_whose_arguments_were_not_kept(
    fake_llm: FakeOpenAI, make_settings: Any
) -> None:
    started = asyncio.Event()

    async def hold(args: Payload, ctx: ToolContext) -> ToolResult:
        started.set()
        await asyncio.Event().wait()  # until the run is cancelled
        raise AssertionError("unreachable")

    tools = default_tools()
    register(tools, _tool("sink", hold, Payload))
    fake_llm.enqueue(Reply(tool_calls=[("sink", {"data": "z" * (2 * MIB)})]))
    settings = make_settings()

    async def interrupted() -> None:
        run = asyncio.create_task(research("q", settings, tools=tools))
        waiter = asyncio.create_task(started.wait())
        try:  # bounded: a run that never gets to the call fails here instead of hanging
            await asyncio.wait({run, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            assert waiter.done(), "the run ended or stalled before its tool call started"
        finally:
            waiter.cancel()
            run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(interrupted())
    assert read_info(settings.out).status == "cancelled"

    fake_llm.enqueue(Reply(content="<answer>Resumed without the giant call.</answer>"))
    resumed = asyncio.run(resume(settings.out, make_settings(), tools=tools))
    assert resumed.status == "done" and resumed.report.startswith("Resumed without the giant call.")
    sink = next(e for e in events_of(settings.out) if e.type == "tool_result" and e.name == "sink")
    assert sink.is_error and sink.error_type == "ArgumentsTooLarge" and "too long to keep" in sink.content
    assert len(json.dumps(fake_llm.requests[-1])) < 200_000


# --- a time limit around every tool call


def test_a_tool_that_never_returns_cannot_stall_the_run(fake_llm: FakeOpenAI, make_settings: Any) -> None:
    release = threading.Event()

    async def await_forever(args: NoArgs, ctx: ToolContext) -> ToolResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def block_a_thread(args: NoArgs, ctx: ToolContext) -> ToolResult:
        await asyncio.to_thread(release.wait)
        return ToolResult(text="released")

    tools = default_tools()
    register(tools, _tool("await_forever", await_forever, NoArgs))
    register(tools, _tool("block_a_thread", block_a_thread, NoArgs))
    fake_llm.enqueue(
        Reply(tool_calls=[("await_forever", {}), ("block_a_thread", {}), ("todo", {"updates": {}})]),
        Reply(content="<answer>Answered without the stuck tools.</answer>"),
    )
    settings = make_settings(max_wall_time=1.5)

    async def main() -> Any:
        try:  # bounded: on a run that cannot time its tools out, this fails instead of hanging
            return await asyncio.wait_for(research("q", settings, tools=tools), timeout=60)
        finally:
            release.set()  # the abandoned thread may end now

    result = asyncio.run(main())
    assert result.status == "done" and result.report.startswith("Answered without the stuck tools.")
    assert result.origin == "forced"

    events = events_of(settings.out)
    results = {e.name: e for e in events if e.type == "tool_result"}
    for name in ("await_forever", "block_a_thread"):
        stuck = results[name]
        assert stuck.is_error and stuck.error_type == "ToolTimeout", name
        assert stuck.content.startswith(f"Error: {name} did not finish and was stopped after"), name
        assert 0 < stuck.data["timeout_s"] <= 1.5, name
    assert results["todo"].is_error is False
    assert [e.reason for e in events if e.type == "final_answer_forced"] == ["max_wall_time"]
    sent = FakeOpenAI.tool_results(fake_llm.requests[-1])
    assert sum("did not finish and was stopped" in text for text in sent.values()) == 2


def test_the_limit_covers_the_longest_command_and_yields_to_the_budget(tmp_path: Path) -> None:
    def ctx(max_timeout: int = 600) -> ToolContext:
        return ToolContext(
            workspace=tmp_path, sources=SourceRegistry(), state={}, shell=ShellConfig(max_timeout=max_timeout)
        )

    limit = execute_module.call_time_limit
    assert limit(ctx()) == execute_module.DEFAULT_TOOL_TIMEOUT_S
    assert limit(ctx(3600)) == 3600 + execute_module.TOOL_TIMEOUT_GRACE_S  # a long shell command runs out
    assert limit(ctx(3600), deadline_s=42.0) == 42.0
    assert limit(ctx(), deadline_s=-5.0) == execute_module.MIN_TOOL_TIMEOUT_S


def test_a_tool_that_ignores_cancellation_is_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execute_module, "ABANDON_AFTER_S", 0.05)
    cancellations: list[int] = []
    finished: list[bool] = []

    async def stubborn(args: NoArgs, ctx: ToolContext) -> ToolResult:
        for _ in range(150):  # about 3 s of work, whatever it is told
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                cancellations.append(1)
        finished.append(True)
        return ToolResult(text="finally")

    tools = {"stubborn": _tool("stubborn", stubborn, NoArgs)}
    ctx = ToolContext(workspace=tmp_path, sources=SourceRegistry(), state={})

    async def main() -> tuple[ToolResult, bool]:
        call = ToolCall("call_1", "stubborn", "{}")
        result = await asyncio.wait_for(execute_module.execute(call, tools, ctx, deadline_s=0.0), timeout=30)
        return result, bool(finished)

    result, finished_first = asyncio.run(main())
    assert result.is_error and result.data["error_type"] == "ToolTimeout"
    assert result.data["timeout_s"] == execute_module.MIN_TOOL_TIMEOUT_S
    assert cancellations and not finished_first  # asked to stop, ignored it, and was not waited for
