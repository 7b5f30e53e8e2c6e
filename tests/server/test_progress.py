"""Progress lines for people following a run from a chat client or an MCP host."""

from __future__ import annotations

import json

from deepresearch.events import (
    ErrorEvent,
    FinalAnswerForced,
    LLMCall,
    ReportWritten,
    RunFinished,
    ToolCallEvent,
    ToolResultEvent,
)
from deepresearch.server.progress import LINE_MAX_CHARS, progress_line


def call(name: str, arguments: dict[str, object], step: int = 2) -> ToolCallEvent:
    return ToolCallEvent(step=step, call_id="c1", name=name, arguments=json.dumps(arguments))


def test_searches_and_pages_read_as_what_the_agent_does():
    search = call("batch_web_surfer", {"action": "batch_search", "queries": ["bm25", "fts5"]})
    assert progress_line(search) == "step 2: searching: bm25; fts5"
    opening = call("batch_web_surfer", {"action": "batch_open", "urls": ["https://a", "https://b"]})
    assert progress_line(opening) == "step 2: opening 2 page(s): https://a, https://b"
    found = ToolResultEvent(
        step=2,
        call_id="c1",
        name="batch_web_surfer",
        content="…",
        data={"action": "batch_search", "results": 7},
    )
    assert progress_line(found) == "found 7 result(s)"
    opened = ToolResultEvent(
        step=3,
        call_id="c2",
        name="batch_web_surfer",
        content="…",
        data={"action": "batch_open", "opened": [{"ok": True}, {"ok": False}]},
    )
    assert progress_line(opened) == "opened 1 page(s), 1 failed"
    refused = ToolResultEvent(
        step=3, call_id="c3", name="todo", content="Error: …", is_error=True, error_type="RepeatedCall"
    )
    assert progress_line(refused) == "todo failed"  # a tool without a summary: only failures get a line
    done = ToolResultEvent(step=3, call_id="c4", name="todo", content="<todo_result>…", data={"steps": 2})
    assert progress_line(done) is None
    unknown = call("remote__lookup", {"id": 7})  # a tool the built-in registry does not know: its name
    assert progress_line(unknown) == "step 2: remote__lookup"


def test_the_answer_the_budget_the_report_and_errors():
    answer = LLMCall(step=4, message={"role": "assistant", "content": "<answer>…"}, usage={})
    assert progress_line(answer) == "step 4: writing the report"
    thinking = LLMCall(step=4, message={"role": "assistant", "tool_calls": [{}]}, usage={})
    assert progress_line(thinking) is None
    forced = FinalAnswerForced(step=9, reason="max steps", message={"role": "user", "content": "stop"})
    assert progress_line(forced) == "step 9: budget reached (max steps); writing the report"
    report = ReportWritten(step=9, path="report.md", chars=12345, origin="answer", citations={"resolved": 4})
    assert progress_line(report) == "report written (12,345 characters, 4 source(s) cited)"
    error = ErrorEvent(step=3, error_type="LLMError", message="x" * 500 + "\n\nmore")
    line = progress_line(error)
    assert line is not None and line.startswith("error: LLMError: xxx") and len(line) == LINE_MAX_CHARS
    assert progress_line(RunFinished(step=9, status="done", usage={}, steps=9)) is None
