import io

from rich.console import Console

from deepresearch.agent.events import (
    FinalAnswerForced,
    LLMCall,
    ReportWritten,
    RunFinished,
    RunStarted,
    ToolCallEvent,
    ToolResultEvent,
)
from deepresearch.display import LineView, LiveView, Progress, describe_call


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
    assert '[step 1] batch_open "https://a.example/x"' in text
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


def test_describe_call_is_short_and_safe():
    assert describe_call("shell", '{"cmd": "python3 -c 1"}') == "shell: python3 -c 1"
    assert describe_call("todo", '{"updates": {}}') == "todo read"
    assert describe_call("file", "not json") == "file (unparsable arguments)"
    many = describe_call("batch_web_surfer", '{"action": "batch_search", "queries": ["a","b","c","d"]}')
    assert many.endswith("…")
