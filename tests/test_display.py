import io
import re

from rich.console import Console

from deepresearch.display import LineView, LiveView, Progress
from deepresearch.events import (
    FinalAnswerForced,
    LLMCall,
    ReportWritten,
    RunFinished,
    RunStarted,
    ToolCallEvent,
    ToolResultEvent,
)


def story():
    call = {"id": "c1", "type": "function", "function": {"name": "batch_web_surfer", "arguments": "{}"}}
    return [
        RunStarted(
            run_id="r",
            question="q",
            model="m",
            search="local",
            language="en",
            tool_mode="native",
            tools=[],
            messages=[],
        ),
        LLMCall(
            step=1,
            message={"role": "assistant", "content": "", "tool_calls": [call]},
            usage={"total_tokens": 1200, "cost_usd": 0.0123},
            duration_s=0.4,
            finish_reason="tool_calls",
        ),
        ToolCallEvent(
            step=1,
            call_id="c1",
            name="batch_web_surfer",
            arguments='{"action": "batch_open", "urls": ["https://a.example/x"]}',
        ),
        ToolResultEvent(
            step=1,
            call_id="c1",
            name="batch_web_surfer",
            content="x" * 10,
            sources=[{"key": "web_1", "url": "u", "fetched": True}, {"key": "web_2", "url": "v"}],
        ),
        FinalAnswerForced(step=2, reason="max_steps", message={"role": "user", "content": "stop"}),
        ReportWritten(
            step=2,
            path="report.md",
            chars=10,
            origin="forced",
            citations={"cited": 2, "resolved": 1, "unresolved": 1},
        ),
        RunFinished(step=2, status="done", usage={"total_tokens": 1200, "cost_usd": 0.0123}, steps=2),
    ]


def test_line_view_prints_one_line_per_event():
    out = io.StringIO()
    view = LineView(Progress(30), stream=out)
    for event in story():
        view(event)
    text = out.getvalue()
    assert "[step 1] model: 1 tool call(s) · 1200 tokens" in text
    assert "[step 1] opening 1 page(s): https://a.example/x" in text
    assert "final answer forced: max_steps" in text and "1 unresolved citations removed" in text
    assert view.progress.sources_read == {"web_1"} and view.progress.sources_seen == {"web_1", "web_2"}


def test_live_view_renders_counters():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    view = LiveView(Progress(30), console=console)
    for event in story():
        view(event)
    text = buffer.getvalue()
    assert "2/30" in text and "1 read · 2 seen" in text and "$0.0123" in text and "1,200" in text


def test_calls_read_as_their_tools_describe_them():
    out = io.StringIO()
    view = LineView(Progress(30), stream=out)
    calls = [
        ("shell", '{"cmd": "python3 -c 1"}'),
        ("todo", '{"updates": {}}'),
        ("file", "not json"),
        ("batch_web_surfer", '{"action": "batch_search", "queries": ["a","b","c","d"]}'),
        ("remote__lookup", '{"id": 7}'),  # a tool the views do not know (an MCP tool): its name
    ]
    for index, (name, arguments) in enumerate(calls):
        view(ToolCallEvent(step=1, call_id=f"c{index}", name=name, arguments=arguments))
    assert out.getvalue().splitlines() == [
        "[step 1] shell: python3 -c 1",
        "[step 1] todo read",
        "[step 1] file (unparsable arguments)",
        "[step 1] searching: a; b; c …",
        "[step 1] remote__lookup",
    ]
    assert view.progress.action == "remote__lookup"


def test_the_views_describe_with_the_tools_they_are_given():
    from pydantic import BaseModel

    from deepresearch.tools.base import Tool

    async def never(args, ctx):
        raise AssertionError("not run")

    lookup = Tool("remote__lookup", BaseModel, never, describer=lambda args: f"looking up {args['id']}")
    out = io.StringIO()
    view = LineView(Progress(30, tools={"remote__lookup": lookup}), stream=out)
    view(ToolCallEvent(step=1, call_id="c", name="remote__lookup", arguments='{"id": 7}'))
    view(ToolCallEvent(step=1, call_id="d", name="shell", arguments='{"cmd": "ls"}'))  # not given: generic
    assert out.getvalue().splitlines() == ["[step 1] looking up 7", "[step 1] shell"]


def render(view: LiveView) -> str:
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=False, width=120).print(view.__rich__())
    return buffer.getvalue()


def test_the_panel_shows_the_prompt_being_loaded_instead_of_starting():
    """The embedded server reports prompt processing between events; the panel shows it."""
    view = LiveView(Progress(30), console=Console(file=io.StringIO(), force_terminal=True))
    view.prompt_progress(0, 3600)  # before the run starts: counted, nothing drawn, nothing raised
    view(story()[0])
    assert "loading prompt 0/3,600 tokens" in render(view) and "starting" not in render(view)
    view.prompt_progress(1200, 3600)
    assert "loading prompt 1,200/3,600 tokens" in render(view)
    view.prompt_progress(3600, 3600)
    assert "generating (prompt of 3,600 tokens loaded)" in render(view)
    view(story()[2])  # the tool call the reply asked for takes over the line
    assert "opening 1 page(s)" in render(view) and "prompt" not in render(view)
    view.stop()


def test_the_header_names_the_run_directory():
    named = LiveView(Progress(30, run_dir="runs/20260101-abc"), console=Console(file=io.StringIO()))
    assert "deepresearch · runs/20260101-abc" in render(named)
    unnamed = LiveView(Progress(30), console=Console(file=io.StringIO()))
    unnamed.progress.update(story()[0])
    assert "deepresearch · r\n" in render(unnamed)  # the run's id when no directory was given
    hostile = Progress(30, run_dir="runs/\x1b]0;owned\x07x")
    assert "\x1b" not in hostile.run_dir and "\x07" not in hostile.run_dir


def test_the_step_counter_never_reads_past_the_maximum():
    """The forced final answer is recorded one step past the budget (31 of 30)."""
    out = io.StringIO()
    line = LineView(Progress(2), stream=out)
    live = LiveView(Progress(2), console=Console(file=io.StringIO(), force_terminal=True))
    past = [
        *story()[:-2],
        FinalAnswerForced(step=3, reason="max_steps", message={"role": "user", "content": "x"}),
    ]
    for event in past:
        line(event)
        live(event)
    assert live.progress.step == 3 and live.progress.shown_step == 2
    assert re.search(r"^step +2/2 ", render(live), re.MULTILINE) and "3/2" not in render(live)
    assert "[step 2] final answer forced: max_steps" in out.getvalue() and "[step 3]" not in out.getvalue()
    live.stop()
    line.prompt_progress(10, 20)  # counters only: no line for a prompt batch
    assert line.progress.action == "loading prompt 10/20 tokens" and "loading" not in out.getvalue()


def test_a_guided_run_reads_as_plan_sections_and_outcome():
    from deepresearch.events import GuidedCall

    out = io.StringIO()
    view = LineView(Progress(30), stream=out)
    view(LLMCall(step=1, phase="search", message={"role": "assistant", "content": ""}, usage={}))
    plan = {"sections": [{"heading": "Concurrent builds", "query": "q"}], "why": None}
    view(GuidedCall(step=3, purpose="plan", result=plan, usage={"total_tokens": 300}))
    section = {
        "heading": "Overview",
        "kept": "quoted",
        "why": "not grounded in the passages (20% of its words)",
    }
    view(GuidedCall(step=3, purpose="section", index=0, result=section, usage={"total_tokens": 500}))
    view(
        ReportWritten(step=4, path="report.md", chars=9, origin="guided", citations={}, outcome="extractive")
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "[step 1] search: a step the code took for the model"
    assert lines[1] == "[step 3] plan: Concurrent builds"
    why = "not grounded in the passages (20% of its words)"
    assert lines[2] == f"[step 3] section 1 Overview: quoted from the sources ({why})"
    assert lines[3].endswith("· outcome extractive")
    assert view.progress.tokens == 800 and view.progress.action == "report written (extractive)"
