"""End to end: a scripted model over real HTTP, the real tools, the local index, a fake website."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.events import parse_event
from deepresearch.research import research, resume
from deepresearch.runs import read_info
from tests.agent.scripts import INVENTED_KEY, cited_keys, endless_search_script, research_script, turn
from tests.fakes.openai_server import FakeOpenAI, Reply

CORPUS = Path(__file__).parent / "data" / "corpus"


@pytest.fixture
def make_settings(fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path):
    def make(**overrides: Any):
        flags = {
            "base_url": fake_llm.base_url,
            "model": "fake-model",
            "api_key": "sk-test-secret-777",
            "index": corpus_index,
            "out": tmp_path / "run",
            "allow_private_urls": True,
            "retry_base_delay": 0.001,
            "retry_max_delay": 0.01,
            "max_retries": 3,
            "request_timeout": 30,
        }
        flags.update(overrides)
        return load_settings(flags, env={})

    return make


def events_of(run_dir: Path) -> list[Any]:
    return [parse_event(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def check_messages_shape(messages: list[dict[str, Any]]) -> None:
    """Every tool message answers a call of the assistant message right before its group."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "assistant":
            assert not open_calls, f"unanswered tool calls {open_calls}"
            open_calls = {c["id"] for c in message.get("tool_calls") or []}
        elif message["role"] == "tool":
            open_calls.remove(message["tool_call_id"])
        else:
            assert not open_calls
    assert not open_calls


@pytest.mark.parametrize("stream", [True, False])
def test_full_research_run(fake_llm, fake_web_server, make_settings, stream):
    page = fake_web_server.url("/articles/bloom-filters.html")
    fake_llm.script = research_script
    seen: list[str] = []
    settings = make_settings(stream=stream)
    result = asyncio.run(
        research(
            f"How does BM25 rank documents? Also see {page}", settings, on_event=lambda e: seen.append(e.type)
        )
    )
    run = settings.out
    assert result.status == "done" and result.origin == "answer" and result.steps == 6

    # the report: citations numbered by first use, resolving to the pages the agent read
    report = (run / "report.md").read_text()
    assert report == result.report
    assert "saturation parameter [1]" in report and "FTS5 extension [2, 1]" in report
    assert "false-positive rate [3]" in report
    assert INVENTED_KEY not in report and "\\cite" not in report
    refs = report.split("## References", 1)[1]
    assert f"[1] Okapi BM25 — {(CORPUS / 'search' / 'bm25-ranking.md').resolve().as_uri()}" in refs
    assert f"[3] Bloom filters explained | Data Structure Notes — {page}" in refs
    assert result.citations == {"cited": 4, "resolved": 3, "unresolved": 1}

    # run.json, sources.json, todo.json, messages.json, the workspace
    info = read_info(run)
    assert info.status == "done" and info.citations["unresolved"] == 1 and info.steps == 6
    assert info.usage["total_tokens"] > 0 and info.sandbox in ("bwrap", "unshare", "none")
    sources = json.loads((run / "sources.json").read_text())
    numbered = {s["n"]: s for s in sources if s["n"] is not None}
    assert sorted(numbered) == [1, 2, 3] and numbered[3]["url"] == page and numbered[3]["fetched"]
    todo = json.loads((run / "todo.json").read_text())
    assert todo["1"]["status"] == "completed" and todo["2"]["status"] == "in_progress"
    messages = json.loads((run / "messages.json").read_text())
    assert messages[0]["role"] == "system" and "Today's date is" in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": f"How does BM25 rank documents? Also see {page}"}
    assert messages[2]["reasoning_content"] == "I should plan before searching."
    check_messages_shape(messages)
    assert (run / "workspace" / "notes" / "draft.md").read_text() == "# Draft\n\nBM25 saturates.\n"
    shell_result = next(
        m for m in messages if m["role"] == "tool" and "<exit_code>0</exit_code>" in m["content"]
    )
    assert "42" in shell_result["content"]
    html = (run / "report.html").read_text()
    assert 'href="#ref-3"' in html and f'href="{page}"' in html

    # the event log tells the whole story and the live view saw it
    types = [e.type for e in events_of(run)]
    assert types[0] == "run_started" and types[-2:] == ["report", "run_finished"]
    assert types.count("llm_call") == 6 and types.count("tool_call") == types.count("tool_result") == 7
    assert seen == types
    # the secret never reaches the run directory
    for path in run.rglob("*"):
        if path.is_file():
            assert "sk-test-secret-777" not in path.read_text(errors="replace"), path
    # usage was requested in streaming mode, and tools were sent natively
    assert all(("stream_options" in r) == stream for r in fake_llm.requests)
    assert {t["function"]["name"] for t in fake_llm.requests[0]["tools"]} == {
        "batch_web_surfer",
        "file",
        "todo",
        "shell",
    }


def test_messages_can_be_rebuilt_from_events(fake_llm, fake_web_server, make_settings):
    from deepresearch.agent.history import History
    from deepresearch.agent.state import replay
    from deepresearch.llm.tokens import count_tokens

    fake_llm.script = research_script
    settings = make_settings()
    asyncio.run(research("How does BM25 rank documents?", settings))
    state = replay(events_of(settings.out), History(count_tokens), path=settings.out / "events.jsonl")
    assert state.history.messages() == json.loads((settings.out / "messages.json").read_text())


def test_model_mistakes_go_back_to_the_model(fake_llm, make_settings):
    replies = [
        Reply(tool_calls=[("todo", "{{{{ not json")]),
        Reply(tool_calls=[("browse_the_web", {"url": "x"})]),
        Reply(tool_calls=[("file", {"action": "read", "path": "../../etc/passwd"})]),
        Reply(tool_calls=[("batch_web_surfer", {"action": "batch_search"})]),
        Reply(content=""),  # empty reply: nudged, not an answer
        Reply(content="<answer>Done despite the errors.</answer>"),
    ]
    fake_llm.enqueue(*replies)
    settings = make_settings()
    result = asyncio.run(research("q", settings))
    assert result.status == "done" and "Done despite the errors." in result.report
    events = events_of(settings.out)
    # by step 3 the run had seen no source: the loop took that step itself, a search of the question
    guard = [e for e in events if e.type == "llm_call" and e.phase == "guard_search"]
    assert [e.step for e in guard] == [3]
    results = [e for e in events if e.type == "tool_result"]
    assert results[2].content.startswith("<batch_search_results>")
    tool_texts = [e.content for i, e in enumerate(results) if i != 2]
    assert len(tool_texts) == 4 and all(t.startswith("Error:") for t in tool_texts)
    assert "not valid JSON" in tool_texts[0]
    assert "no tool named 'browse_the_web'" in tool_texts[1]
    assert "workspace" in tool_texts[2]
    assert "needs `queries`" in tool_texts[3]
    nudges = [e for e in events_of(settings.out) if e.type == "nudge"]
    assert [n.reason for n in nudges] == ["empty_reply"]
    assert fake_llm.requests[-1]["messages"][-1]["content"].startswith("Your last reply was empty")


def test_a_raising_tool_does_not_end_the_run(fake_llm, make_settings):
    from pydantic import BaseModel

    from deepresearch.tools.base import Tool
    from deepresearch.tools.registry import default_tools, register

    class NoArgs(BaseModel):
        pass

    async def explode(args: NoArgs, ctx: Any) -> Any:
        raise RuntimeError("disk on fire")

    tools = default_tools()
    register(tools, Tool(name="explode", args=NoArgs, run=explode, description="always fails"))
    fake_llm.enqueue(
        Reply(tool_calls=[("explode", {}), ("todo", {"updates": {}})]),
        Reply(content="<answer>Recovered.</answer>"),
    )
    settings = make_settings()
    result = asyncio.run(research("q", settings, tools=tools))
    assert result.report.startswith("Recovered.")
    results = [e for e in events_of(settings.out) if e.type == "tool_result"]
    boom = next(e for e in results if e.name == "explode")
    assert boom.is_error and boom.error_type == "RuntimeError" and "disk on fire" in boom.content
    assert "Traceback" in boom.data["traceback"]
    assert next(e for e in results if e.name == "todo").is_error is False


def test_transient_endpoint_failures_are_retried(fake_llm, make_settings):
    fake_llm.enqueue(
        Reply(status=429, headers={"Retry-After": "0"}, body='{"error": {"message": "slow down"}}'),
        Reply(status=500, body='{"error": {"message": "boom"}}'),
        Reply(content="<answer>partial", cut_after_chunks=1),
        Reply(content="<answer>Complete answer.</answer>"),
    )
    result = asyncio.run(research("q", make_settings()))
    assert result.report.startswith("Complete answer.")
    assert "partial" not in result.report and len(fake_llm.requests) == 4


def test_endpoint_down_marks_the_run_failed_and_resumable(fake_llm, make_settings):
    from deepresearch.errors import LLMError

    fake_llm.script = lambda request: Reply(status=500, body='{"error": {"message": "down"}}')
    settings = make_settings(max_retries=1)
    with pytest.raises(LLMError) as raised:
        asyncio.run(research("q", settings))
    assert f"deepresearch resume {settings.out}" in raised.value.__notes__[0]
    info = read_info(settings.out)
    assert info.status == "failed" and "down" in (info.error or "")
    assert [e.type for e in events_of(settings.out)][-2:] == ["error", "run_finished"]
    fake_llm.script = lambda request: Reply(content="<answer>Back up.</answer>")
    assert asyncio.run(resume(settings.out, make_settings())).report.startswith("Back up.")


def test_answer_cut_by_length_is_continued(fake_llm, make_settings):
    fake_llm.enqueue(
        Reply(content="<answer>The first half of a long report", finish_reason="length"),
        Reply(content=" and the second half.</answer>"),
    )
    settings = make_settings()
    result = asyncio.run(research("q", settings))
    assert result.report.startswith("The first half of a long report and the second half.")
    assert fake_llm.requests[1]["messages"][-1]["content"].startswith("Your reply was cut off")


def test_step_budget_forces_one_final_answer(fake_llm, make_settings):
    fake_llm.script = endless_search_script
    settings = make_settings(max_steps=3)
    result = asyncio.run(research("What is BM25?", settings))
    assert result.origin == "forced" and result.steps == 4
    assert result.report.startswith("Forced summary [1].")
    forced = [e for e in events_of(settings.out) if e.type == "final_answer_forced"]
    assert [f.reason for f in forced] == ["max_steps"]
    last = fake_llm.requests[-1]
    assert last["tool_choice"] == "none" and "Do not call any more tools" in last["messages"][-1]["content"]


def test_model_that_never_answers_still_gets_a_report(fake_llm, make_settings):
    fake_llm.script = lambda request: Reply(
        tool_calls=[
            ("batch_web_surfer", {"action": "batch_search", "queries": [f"BM25 {turn(request)}"], "topk": 2})
        ]
    )
    settings = make_settings(max_steps=2)
    result = asyncio.run(research("What is BM25?", settings))
    assert result.origin == "fallback" and result.status == "done"
    assert "No final report was written" in result.report and "## References" in result.report
    events = events_of(settings.out)
    llm_calls = [e for e in events if e.type == "llm_call"]
    assert len(llm_calls) == 5  # 2 steps, the forced turn, 2 nudges
    assert all(getattr(e, "ignored_tool_calls", None) for e in llm_calls[2:])
    check_messages_shape(json.loads((settings.out / "messages.json").read_text()))


def test_cost_budget(fake_llm, make_settings):
    fake_llm.script = endless_search_script
    settings = make_settings(model="gpt-4o", max_cost=0.000001, max_steps=30)
    result = asyncio.run(research("What is BM25?", settings))
    assert result.origin == "forced" and result.steps == 2 and result.usage["cost_usd"] > 0
    assert [e.reason for e in events_of(settings.out) if e.type == "final_answer_forced"] == ["max_cost"]


def test_context_over_the_limit_is_compacted_then_forced(fake_llm, make_settings):
    calls = iter(range(1000))

    def script(request: dict[str, Any]) -> Reply:
        n = next(calls)  # the model's own view shrinks, so count requests rather than visible turns
        last = request["messages"][-1]
        if last["role"] == "user" and "Do not call any more tools" in last["content"]:
            keys = list(cited_keys(request).values()) or ["web_00000000"]
            return Reply(content=f"<answer>Short on room \\cite{{{keys[0]}}}.</answer>")
        if n < 4:
            return Reply(
                tool_calls=[
                    (
                        "batch_web_surfer",
                        {
                            "action": "batch_search",
                            "queries": [f"BM25 ranking {n}", "FTS5 tokenizer"],
                            "topk": 8,
                        },
                    )
                ]
            )
        return Reply(tool_calls=[("shell", {"cmd": f"python3 -c \"print('evidence {n} ' * 900)\""})])

    fake_llm.script = script
    settings = make_settings(context_upper=6000, context_lower=5000, max_steps=30)
    result = asyncio.run(research("What is BM25?", settings))
    events = events_of(settings.out)
    compactions = [e for e in events if e.type == "context_compacted"]
    assert (
        compactions
        and compactions[0].compressed
        and compactions[0].tokens_after < compactions[0].tokens_before
    )
    assert any(c.dropped for c in compactions)
    forced = [e for e in events if e.type == "final_answer_forced"]
    assert [f.reason for f in forced] == ["context"]
    assert result.origin == "forced" and result.report.startswith("Short on room")
    for event in events:
        if event.type == "llm_call":
            assert event.context_tokens <= 6000 + 2000  # the reply and the force prompt ride on top
    full = json.loads((settings.out / "messages.json").read_text())
    assert sum(1 for m in full if m["role"] == "tool") == result.steps - 1  # nothing lost from the record


def test_chinese_question_gets_chinese_prompt_and_report(fake_llm, make_settings):
    fake_llm.enqueue(Reply(content="<answer>结论。</answer>"))
    settings = make_settings()
    result = asyncio.run(research("中文分词有哪些方法？", settings))
    assert "今天的日期是" in fake_llm.requests[0]["messages"][0]["content"]
    assert result.report.startswith("结论。")


def test_text_tool_mode_keeps_trajectories_in_openai_shape(fake_llm, make_settings):
    fake_llm.enqueue(
        Reply(
            content='Planning.\n<tool_call>{"name": "todo", "arguments": {"updates": {"1": {"task": "a"}}}}'
            "</tool_call>"
        ),
        Reply(content="<answer>Text mode works.</answer>"),
    )
    settings = make_settings(tool_mode="text")
    result = asyncio.run(research("q", settings))
    assert result.report.startswith("Text mode works.")
    assert "tools" not in fake_llm.requests[0]
    messages = json.loads((settings.out / "messages.json").read_text())
    assert messages[2]["tool_calls"][0]["function"]["name"] == "todo" and messages[3]["role"] == "tool"
    assert "<tool_response" in json.dumps(fake_llm.requests[1]["messages"])


def test_missing_endpoint_is_a_clear_error_and_creates_nothing(tmp_path):
    from deepresearch.errors import ConfigError

    settings = load_settings({"out": tmp_path / "run"}, env={})
    with pytest.raises(ConfigError, match="--base-url"):
        asyncio.run(research("q", settings))
    assert not (tmp_path / "run").exists()


def test_research_over_a_web_provider_with_authority_ranking(fake_llm, search_fake, make_settings):
    from tests.fakes.search_providers import API_KEY

    def script(request: dict[str, Any]) -> Reply:
        if turn(request) == 0:
            return Reply(
                tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": ["bloom filter"]})]
            )
        keys = cited_keys(request)
        first_key = next(iter(keys.values()))
        return Reply(
            content=f"<answer>Bloom filters may give false positives \\cite{{{first_key}}}.</answer>"
        )

    fake_llm.script = script
    settings = make_settings(
        search="tavily", tavily_api_key=API_KEY, search_endpoint=search_fake.endpoint("tavily")
    )
    result = asyncio.run(research("What is a Bloom filter?", settings))
    assert result.status == "done" and result.citations["resolved"] == 1
    sent = search_fake.sent("tavily")
    assert len(sent) == 1 and sent[0].json["query"] == "bloom filter"
    tool_text = next(
        m["content"] for m in json.loads((settings.out / "messages.json").read_text()) if m["role"] == "tool"
    )
    assert "<cite_index>web_" in tool_text and "wikipedia.org" in tool_text
    # close scores: the university paper and the official docs overtake the personal tutorial page
    position = tool_text.index
    assert position("harvard.edu") < position("redis.io") < position("llimllib.github.io")
    assert "[1] " in result.report and "https://" in result.report.split("## References")[1]


def test_a_search_backend_without_its_key_fails_before_creating_a_run(make_settings):
    from deepresearch.errors import ConfigError

    settings = make_settings(search="brave")
    with pytest.raises(ConfigError, match="BRAVE_API_KEY"):
        asyncio.run(research("q", settings))
    assert not settings.out.exists()


def test_a_repeated_call_is_refused_then_the_loop_takes_the_step(fake_llm, make_settings):
    same = ("todo", {"updates": {"x": {"status": "done"}}})
    fake_llm.enqueue(*[Reply(tool_calls=[same]) for _ in range(3)], Reply(content="<answer>ok</answer>"))
    settings = make_settings()
    result = asyncio.run(research("BM25 ranking", settings))
    events = events_of(settings.out)
    results = [e for e in events if e.type == "tool_result"]
    assert "you already made this exact call" not in results[0].content
    assert results[1].error_type == "RepeatedCall" and "Do not repeat it" in results[1].content
    assert results[2].content.startswith("<batch_search_results>")  # step 3, nothing seen: the guard searched
    # the third identical call, with sources in hand: refused, and the next turn is the forced answer
    assert results[3].error_type == "RepeatedCall"
    assert [e.reason for e in events if e.type == "final_answer_forced"] == ["repeated_call"]
    assert result.report.startswith("ok") and result.origin == "forced"
    info = read_info(settings.out)
    assert info.guards == {"repeated_calls": 2, "guard_steps": 1}


def test_a_repeated_call_with_nothing_found_is_replaced_by_a_search(fake_llm, make_settings):
    same = ("todo", {"updates": {"x": {"status": "done"}}})
    fake_llm.enqueue(*[Reply(tool_calls=[same]) for _ in range(3)], Reply(content="<answer>ok</answer>"))
    settings = make_settings()
    asyncio.run(research("zqxv wplk", settings))  # nothing in the index matches
    results = [e for e in events_of(settings.out) if e.type == "tool_result"]
    assert "0 results" in results[2].content  # the guard's search at step 3 found nothing
    assert results[3].content.startswith("(You made this exact call 3 times; the loop searched the question")
    assert "<batch_search_results>" in results[3].content


def test_a_model_that_repeats_one_call_forever_ends_within_its_budget(fake_llm, make_settings):
    fake_llm.script = lambda request: Reply(
        tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": ["BM25"]})]
    )
    settings = make_settings(max_steps=30)
    result = asyncio.run(research("How does BM25 rank documents?", settings))
    events = events_of(settings.out)
    calls = [e for e in events if e.type == "tool_call"]
    # once sources exist, the third identical call ends tool use: the next turn is the forced answer
    assert len(calls) == 3 and result.steps == 6  # the forced turn, nudged twice, then the fallback
    assert [e.reason for e in events if e.type == "final_answer_forced"] == ["repeated_call"]
    assert result.status == "done" and result.outcome == "empty"  # the script never writes an answer
    info = read_info(settings.out)
    assert info.outcome == "empty" and info.guards["repeated_calls"] == 2
