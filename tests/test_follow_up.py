"""``research.follow_up``: a finished run takes one more user turn and goes on with its history and
sources (data synthesis uses it for reflection), against the fake OpenAI server and a local index."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.errors import ConfigError, RunStoreError
from deepresearch.events import FollowUp
from deepresearch.research import follow_up, research
from deepresearch.runs import RunDir
from tests.agent.scripts import cited_keys, turn
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.test_research import check_messages_shape

QUESTION = "Which ranking function does the corpus describe?"
FEEDBACK = "That answer is not right. Look again at what you read and correct it."


def script(request: dict[str, Any]) -> Reply:
    """Search once and answer; after a follow-up turn, answer again (citing what it read before)."""
    messages = request["messages"]
    followed = any(m.get("role") == "user" and m.get("content") == FEEDBACK for m in messages)
    if turn(request) == 0:
        return Reply(
            content="Searching.",
            tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": ["BM25"], "topk": 3})],
        )
    key = next(iter(cited_keys(request).values()))
    if followed:
        return Reply(content=f"<answer>\nCorrected: the corpus describes BM25 \\cite{{{key}}}.\n</answer>")
    return Reply(content=f"<answer>\nFirst try: TF-IDF \\cite{{{key}}}.\n</answer>")


def settings_for(fake: FakeOpenAI, index: Path, out: Path) -> Any:
    return load_settings(
        {"base_url": fake.base_url, "model": "fake-model", "index": index, "out": out}, env={}
    )


def test_a_finished_run_takes_a_follow_up_turn_and_keeps_its_sources(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = script
    out = tmp_path / "run"
    first = asyncio.run(research(QUESTION, settings_for(fake_llm, corpus_index, out)))
    assert first.status == "done" and "First try" in first.report

    second = asyncio.run(follow_up(out, FEEDBACK))
    assert second.status == "done" and "Corrected" in second.report
    assert second.citations.get("unresolved", 0) == 0  # the key read before the follow-up still resolves
    run = RunDir.open(out)
    assert "Corrected" in (run.report() or "")
    messages = run.messages()
    check_messages_shape(messages)
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert users == [QUESTION, FEEDBACK]
    answers = [m["content"] for m in messages if m["role"] == "assistant" and "<answer>" in m["content"]]
    assert len(answers) == 2  # the wrong answer stays in the history before the correction
    assert sum(isinstance(e, FollowUp) for e in run.events()) == 1
    assert run.finished and second.steps > first.steps


def test_only_a_finished_run_can_be_followed_up(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    with pytest.raises(RunStoreError):
        asyncio.run(follow_up(tmp_path / "nothing-here", FEEDBACK))
    fake_llm.script = script
    out = tmp_path / "run"
    asyncio.run(research(QUESTION, settings_for(fake_llm, corpus_index, out)))
    with pytest.raises(ConfigError, match="empty"):
        asyncio.run(follow_up(out, "  "))


def test_a_follow_up_that_fails_is_resumed_not_followed_up_again(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    from deepresearch.research import resume

    fake_llm.script = script
    out = tmp_path / "run"
    asyncio.run(research(QUESTION, settings_for(fake_llm, corpus_index, out)))
    fake_llm.script = lambda request: Reply(status=400, body='{"error": {"message": "bad request"}}')
    with pytest.raises(Exception, match="bad request"):
        asyncio.run(follow_up(out, FEEDBACK))
    with pytest.raises(RunStoreError, match="has not finished"):
        asyncio.run(follow_up(out, FEEDBACK))
    fake_llm.script = script
    resumed = asyncio.run(resume(out))
    assert resumed.status == "done" and "Corrected" in resumed.report
    with pytest.raises(RunStoreError, match="already finished"):
        asyncio.run(resume(out))
