"""The official ``openai`` SDK talks to the fake server: proof that the fake speaks the real protocol."""

from __future__ import annotations

import json

import openai

from tests.fakes.openai_server import FakeOpenAI, Reply


def test_sdk_non_streaming(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="Paris.", reasoning="Easy.", tool_calls=[("search", {"q": "Paris"})]))

    with openai.OpenAI(base_url=fake_llm.base_url, api_key="test-key", max_retries=0) as client:
        response = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "Capital of France?"}]
        )

    [choice] = response.choices
    assert choice.message.content == "Paris."
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("search", {"q": "Paris"})
    assert (choice.message.model_extra or {})["reasoning_content"] == "Easy."
    assert response.usage is not None and response.usage.total_tokens > 0
    assert response.model == "fake-model"


def test_sdk_streaming(fake_llm: FakeOpenAI) -> None:
    content = "Paris is the capital and largest city of France."
    fake_llm.enqueue(Reply(content=content, tool_calls=[("search", {"q": "Paris population"})]))

    with openai.OpenAI(base_url=fake_llm.base_url, api_key="test-key", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "Tell me about Paris."}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    arguments = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function is not None
    )
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == content
    assert json.loads(arguments) == {"q": "Paris population"}
    assert finish == ["tool_calls"]
    assert len(chunks) > 4  # really streamed in pieces
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert fake_llm.requests[0]["stream_options"] == {"include_usage": True}
